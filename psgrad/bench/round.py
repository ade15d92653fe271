"""Where a round's time goes: ``mpirun -n 9 python -m psgrad.bench round`` (rank 0 server, 8 workers).

For an ``mlp`` on digits with ``task.hidden`` chosen to give ``d`` parameters
(d = 75 h + 10), one agent per worker, fp32 (direct) and TPC with a
QSGD-compressed residual are trained for a few rounds with the real MPI transport;
the per-phase timers the runtime keeps (``psgrad.runtime.phases``) give the
median over the rounds after the first four (numba compilation, TPC's memory filling up) of every phase on
the server (wall and CPU time) and on worker rank 1, and the server's hot path is replayed with the workers
idle. In the same run:

- floors: an MPI Gather of the same bytes (each worker's message-sized
  buffer to rank 0; the faster of blocking ``Gatherv`` and ``Igatherv``
  polled like psgrad polls), and summing N float32 vectors of length d with
  numpy on rank 0 while the other ranks sleep;
- the alternative: ``torch.distributed`` DDP with the gloo backend on the 8
  worker ranks (rank 0 idles), the same model and shards, timed per round
  (forward, backward with the gradient allreduce, SGD step), and a bare
  allreduce of d float32.

Writes results/bench/round.csv (one row per measured quantity) and round.md
(the breakdown and the target ratios).
"""
import argparse
import csv
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES, N_CLASSES = 64, 10  # digits


def hidden_for(d):
    """The hidden width of a digits mlp with at least ``d`` parameters: d = (64 + 1) h + (h + 1) 10."""
    return -(-(int(d) - N_CLASSES) // (N_FEATURES + 1 + N_CLASSES))


# label -> config overrides of the uplink
SCHEMES = {
    "fp32": ["scheme.name=direct", "scheme.codec=fp32"],
    "tpc+qsgd": ["scheme.name=tpc", "scheme.codec=qsgd"],  # p = 3 (the default),
}
# Rounds not measured: the first compiles numba kernels, and TPC's memory fills up during the first p = 3
WARMUP = 4
SERVER_PHASES = ("broadcast", "wait", "receive", "check", "decode", "digest", "aggregate", "step", "record",
                 "other", "round")
CPU_PHASES = ("receive", "check", "decode", "aggregate")  # the server's CPU time in these, in the run
WORKER_PHASES = ("wait", "check", "model", "compute", "encode", "decode", "digest", "pack", "send", "other",
                 "round")


def median_ms(values):
    return 1e3 * statistics.median(values) if values else 0.0


def phase_medians(rounds, names):
    """Median milliseconds per phase over ``rounds`` (dicts of seconds); absent phases count as 0."""
    return {k: median_ms([r.get(k, 0.0) for r in rounds]) for k in names}


def poll_wait(request, timeout=600.0):
    from ..transport.mpi import wait

    wait(request, timeout, "in the round benchmark")


def train_rounds(comm, d_target, label, rounds, out_dir):
    """Run psgrad for ``rounds`` rounds; rank 0 returns (server rows, worker-1 rows, summary)."""
    from .. import config
    from ..runtime.loop import build, resolve_workers, run_mpi

    h = hidden_for(d_target)
    cfg = config.load(None, [
        "task.name=mlp", "task.dataset=digits", "task.partition=iid", f"task.hidden={h}", "optim.lr=0.1",
        *SCHEMES[label], f"run.rounds={rounds}", f"run.eval_every={rounds}", "run.log_every=100000",
        "run.digest_every=100000", f"run.results_dir={out_dir}", f"run.name=round-{label}-{h}"])
    resolve_workers(cfg, comm.Get_size())
    task, sc = build(cfg)
    poll_wait(comm.Ibarrier())
    summary, obj = run_mpi(cfg, task, sc, comm, log=lambda line: None)
    rows = obj.phases.rounds[WARMUP:]
    everyone = comm.gather(rows if comm.Get_rank() == 1 else None, root=0)
    if comm.Get_rank() != 0:
        poll_wait(comm.Ibarrier())
        return None
    quiet = replay(obj, task, sc, rounds)
    poll_wait(comm.Ibarrier())
    return rows, obj.phases.cpu_rounds[WARMUP:], everyone[1], summary, task.d, quiet


def replay(server, task, sc, t, reps=3):
    """Median ms of the server's check, decode and aggregate of one round's N messages, the workers idle;
    of the frame check of those N messages computed as a pass of its own; and, for a scheme with a
    predictor memory (TPC), of the N predictions ``M a`` alone, the part of decode no residual codec avoids.

    The messages are encoded here from the server's own mirrors (equal to the agents' states) and real
    gradients; each repetition starts from the same mirrors. On an oversubscribed machine this is the
    server's hot path without the 8 workers competing for its core.
    """
    from .. import wire
    from ..schemes import Context, kernels

    frames = []
    for a in range(server.n_agents):
        _, g = task.local_grad(a, server.params, t)
        private = sc.init(task.d)[1]
        enc = sc.encode(server.mirrors[a], private, g, Context(server.key(a, t), task.d, server.model_delta_sq))
        frames.append(wire.pack(wire.Kind.UPDATE, t, a, enc.data, enc.nbits))
    mirrors = server.mirrors.values(range(server.n_agents))
    memories = [getattr(m, "memory", ()) for m in mirrors]
    out = {k: [] for k in ("check", "decode", "aggregate", "check pass alone", "prediction alone")}
    for _ in range(reps):
        t0 = time.perf_counter()
        for frame in frames:  # what the frame check costs as a pass of its own (fp32 rows do it while summing)
            wire.frame_check(frame)
        out["check pass alone"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for mem in memories:
            if mem:
                kernels.predict(mem, np.ones(len(mem), np.float32))
        out["prediction alone"].append(time.perf_counter() - t0)
        before = dict(server.phases.current)
        server.begin_round(t)
        for a, frame in enumerate(frames):
            buf = server.inbox.take(len(frame))  # as the MPI transport receives it
            buf[:] = frame
            server.receive(t, buf, server.agent_rank[a])
        for k in ("check", "decode", "aggregate"):
            out[k].append(server.phases.current.get(k, 0.0) - before.get(k, 0.0))
        server.mirrors.replace(dict(enumerate(mirrors)))
        server.pending, server.messages, server.heard = {}, [], set()
        server.acc[:] = 0
    return {k: median_ms(v) for k, v in out.items()}


def gather_floor(comm, nbytes, reps):
    """Median seconds to gather ``nbytes`` from every worker rank to rank 0 (faster of blocking and polled)."""
    from mpi4py import MPI

    size, rank = comm.Get_size(), comm.Get_rank()
    counts = [0] + [nbytes] * (size - 1)
    displs = [0] + [nbytes * i for i in range(size - 1)]
    recv = np.empty(nbytes * (size - 1), np.uint8) if rank == 0 else None
    send = np.full(nbytes if rank else 0, rank, np.uint8)
    spec = [recv, counts, displs, MPI.BYTE] if rank == 0 else None
    best = []
    for blocking in (True, False):
        times = []
        for _ in range(reps + 1):
            poll_wait(comm.Ibarrier())
            t0 = time.perf_counter()
            if blocking:
                comm.Gatherv(send, spec, root=0)
            else:
                poll_wait(comm.Igatherv(send, spec, root=0))
            times.append(time.perf_counter() - t0)
        best.append(statistics.median(times[1:]))
    if rank == 0 and not all((recv[displs[i]:displs[i] + 1] == i).all() for i in range(1, size)):
        raise AssertionError("the gather floor moved the wrong bytes")
    return min(best)


def sum_floor(d, n, reps):
    """Median seconds to sum ``n`` float32 vectors of length ``d`` into one (numpy, one core)."""
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(d, dtype=np.float32) for _ in range(n)]
    acc = np.empty(d, np.float32)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        np.copyto(acc, vectors[0])
        for v in vectors[1:]:
            np.add(acc, v, out=acc)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def ddp_rounds(comm, d_target, rounds):
    """DDP/gloo on the worker ranks: rank 1 returns (median round seconds, median allreduce seconds)."""
    import torch
    import torch.distributed as dist

    from .. import config
    from ..tasks import make_task

    rank, size = comm.Get_rank(), comm.Get_size()
    path = comm.bcast(tempfile.mktemp(prefix="psgrad-gloo-") if rank == 0 else None, root=0)
    if rank == 0:
        poll_wait(comm.Ibarrier())
        os.path.exists(path) and os.unlink(path)
        return None
    h = hidden_for(d_target)
    cfg = config.load(None, ["task.name=mlp", "task.dataset=digits", "task.partition=iid", f"task.hidden={h}"])
    task = make_task(cfg.task, size - 1, 0)
    dist.init_process_group("gloo", init_method=f"file://{path}", world_size=size - 1, rank=rank - 1)
    module = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, h), torch.nn.ReLU(), torch.nn.Linear(h, N_CLASSES))
    model = torch.nn.parallel.DistributedDataParallel(module)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = task.local_data(rank - 1)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        opt.zero_grad()
        task.objective.loss(model(x), y).backward()  # the allreduce of the gradients runs inside backward
        opt.step()
        times.append(time.perf_counter() - t0)
    flat = torch.zeros(task.d)
    reduce_times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        dist.all_reduce(flat)
        reduce_times.append(time.perf_counter() - t0)
    dist.barrier()
    dist.destroy_process_group()
    poll_wait(comm.Ibarrier())
    return statistics.median(times[WARMUP:]), statistics.median(reduce_times[1:])


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(comm, sizes, rounds, reps):
    rank = comm.Get_rank()
    n = comm.Get_size() - 1
    rows, runs = [], []
    out_dir = comm.bcast(tempfile.mkdtemp(prefix="psgrad-round-") if rank == 0 else None, root=0)
    for d_target in sizes:
        for label in SCHEMES:
            got = train_rounds(comm, d_target, label, rounds, out_dir)
            msg_bytes = None
            if rank == 0:
                server_rows, cpu_rows, worker_rows, summary, d, quiet = got
                msg_bytes = int(round(summary["uplink_wire_bytes"] / (summary["rounds"] * n)))
                runs.append(dict(d=d, label=label, server=phase_medians(server_rows, SERVER_PHASES), quiet=quiet,
                                 server_cpu=phase_medians(cpu_rows, CPU_PHASES),
                                 worker=phase_medians(worker_rows, WORKER_PHASES), msg_bytes=msg_bytes,
                                 triggered=summary.get("mean_triggered")))
            msg_bytes = comm.bcast(msg_bytes, root=0)
            floor = gather_floor(comm, msg_bytes, reps)
            if rank == 0:
                runs[-1]["gather_ms"] = 1e3 * floor
        ddp = ddp_rounds(comm, d_target, rounds)
        ddp = comm.gather(ddp, root=0)
        if rank == 0:  # the other ranks sleep in the barrier below meanwhile
            s = 1e3 * sum_floor(runs[-1]["d"], n, reps)
            for r in runs[-len(SCHEMES):]:
                r["sum_ms"], r["ddp_ms"], r["allreduce_ms"] = s, 1e3 * ddp[1][0], 1e3 * ddp[1][1]
        poll_wait(comm.Ibarrier())
    rss = comm.gather(peak_rss_mb(), root=0)
    if rank == 0:
        for r in runs:
            for side, names in (("server", SERVER_PHASES), ("server_cpu", CPU_PHASES), ("worker", WORKER_PHASES)):
                for k in names:
                    rows.append((r["d"], r["label"], side, k, r[side][k]))
            for k in ("gather_ms", "sum_ms", "ddp_ms", "allreduce_ms"):
                rows.append((r["d"], r["label"], "floor", k.removesuffix("_ms"), r[k]))
            rows.append((r["d"], r["label"], "message", "bytes", r["msg_bytes"]))
            for k, v in r["quiet"].items():
                rows.append((r["d"], r["label"], "server, workers idle", k, v))
    return runs, rows, rss


def ratios(r):
    """The target ratios of one run (see the module docstring)."""
    s, c, q = r["server"], r["server_cpu"], r["quiet"]
    return {
        "decode+aggregate / sum floor (in the run, CPU time)": (c["decode"] + c["aggregate"]) / r["sum_ms"],
        "decode+aggregate / sum floor (in the run, wall time)": (s["decode"] + s["aggregate"]) / r["sum_ms"],
        "decode+aggregate / sum floor (workers idle)": (q["decode"] + q["aggregate"]) / r["sum_ms"],
        "exchange / gather floor": (s["receive"] + s["check"]) / r["gather_ms"],
        "round / DDP-gloo round": s["round"] / r["ddp_ms"],
    }


def targets(runs):
    """Every target as ``(what, ratio, limit)``: met when ``ratio <= limit`` (TPC vs DDP: ``< 1``)."""
    top = max(r["d"] for r in runs)
    out = []
    for r in runs:
        q, where = ratios(r), f"d = {r['d']:.0e}, {r['label']}"
        out.append((f"{where}: server decode + aggregate (in the run, CPU time) / sum of N float32 vectors",
                    q["decode+aggregate / sum floor (in the run, CPU time)"], 3.0))
        if r["label"] == "fp32":
            out.append((f"{where}: exchange (receive + check) / MPI Gather", q["exchange / gather floor"], 1.5))
            out.append((f"{where}: round / DDP-gloo round", q["round / DDP-gloo round"], 1.5))
        elif r["d"] == top:
            out.append((f"{where}: round / DDP-gloo round (faster than DDP)", q["round / DDP-gloo round"], 1.0))
    return out


def write(out, runs, rows, rss, rounds, reps, seconds):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "round.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("d", "scheme", "side", "quantity", "median_ms"))
        w.writerows(rows)
    lines = [
        "# Where the time goes: one round, N = 8 workers",
        "",
        f"`mpirun -n 9 python -m psgrad.bench round` — mlp on digits (one hidden layer, width chosen for d), "
        f"one agent per worker rank, {rounds} rounds per setting, medians over the rounds after the first {WARMUP} "
        f"(numba compilation, TPC's memory filling up); floors over {reps} repetitions. Milliseconds per round.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other users' jobs, Python "
        f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}. **9 ranks on "
        f"{os.cpu_count()} cores: heavily oversubscribed**; absolute times mostly measure the scheduler, the "
        f"ratios (same run, same load) are what to read. Whole benchmark: {seconds:.0f} s.",
        "",
        "## Server (rank 0)",
        "",
        "| d | scheme | " + " | ".join(SERVER_PHASES) + " |",
        "|---|---|" + "---|" * len(SERVER_PHASES),
    ]
    for r in runs:
        lines.append(f"| {r['d']:.3g} | {r['label']} | " + " | ".join(f"{r['server'][k]:.1f}" for k in SERVER_PHASES)
                     + " |")
    lines += ["", "## Server CPU time (rank 0's own, in the same rounds)", "",
              "| d | scheme | " + " | ".join(CPU_PHASES) + " |",
              "|---|---|" + "---|" * len(CPU_PHASES)]
    for r in runs:
        lines.append(f"| {r['d']:.3g} | {r['label']} | "
                     + " | ".join(f"{r['server_cpu'][k]:.1f}" for k in CPU_PHASES) + " |")
    lines += ["", "## Worker (rank 1)", "",
              "| d | scheme | " + " | ".join(WORKER_PHASES) + " |",
              "|---|---|" + "---|" * len(WORKER_PHASES)]
    for r in runs:
        lines.append(f"| {r['d']:.3g} | {r['label']} | " + " | ".join(f"{r['worker'][k]:.1f}" for k in WORKER_PHASES)
                     + " |")
    lines += ["", "## Server hot path replayed with the workers idle (same messages, same server)", "",
              "| d | scheme | check | decode | aggregate | frame check as a pass of its own | "
              "prediction alone |",
              "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['d']:.3g} | {r['label']} | " + " | ".join(
            f"{r['quiet'][k]:.1f}" for k in ("check", "decode", "aggregate", "check pass alone",
                                              "prediction alone")) + " |")
    lines += ["", "## Floors and the alternative", "",
              "| d | scheme | message bytes | MPI Gather of them | sum of 8 vectors | DDP-gloo round | gloo allreduce |",
              "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['d']:.3g} | {r['label']} | {r['msg_bytes']:,} | {r['gather_ms']:.1f} | "
                     f"{r['sum_ms']:.1f} | {r['ddp_ms']:.1f} | {r['allreduce_ms']:.1f} |")
    lines += ["", "## Ratios (targets: decode+aggregate <= 3x the sum; fp32 exchange <= 1.5x the gather; "
              "fp32 round <= 1.5x DDP-gloo; TPC faster than DDP-gloo at d = 1e7 where the codec is cheaper "
              "than the bytes it saves)", "",
              "| d | scheme | " + " | ".join(ratios(runs[0])) + " | TPC trigger rate |",
              "|---|---|" + "---|" * (len(ratios(runs[0])) + 1)]
    for r in runs:
        q = ratios(r)
        trig = "" if r["triggered"] is None else f"{r['triggered']:.2f}"
        lines.append(f"| {r['d']:.3g} | {r['label']} | " + " | ".join(f"{v:.2f}" for v in q.values()) + f" | {trig} |")
    lines += ["", "## Targets", ""]
    for what, ratio, limit in targets(runs):
        met = ratio < limit if limit == 1.0 else ratio <= limit
        lines.append(f"- {what}: {ratio:.2f} (target {'<' if limit == 1.0 else '<='} {limit:g}): "
                     f"**{'met' if met else 'missed'}**")
    lines += ["", "Phases: *broadcast* packs the model frame and completes the broadcast; *wait* is the time "
              "blocked for a message (on the server: for the workers' gradients; on a worker: for the model); "
              "*receive* moves a message's bytes; *check* parses its header and verifies its 64-bit frame check "
              "(docs/wire-format.md), except for fp32 payloads, whose check is done by the pass that adds "
              "the payload to the agent-ordered sum when its turn comes (a message that arrives earlier waits "
              "in the buffer it was received in): for fp32 rows the check is in *aggregate*, not in *check* "
              "nor in the exchange; *decode* is the scheme's reconstruct (fp32: none); *aggregate* the "
              "weighted sum; *step* the optimizer; *record* the metrics "
              "row; *digest* the SHA-256 of mirrored state (only in digest rounds); *model* the worker's "
              "model-delta and copy; *encode* the scheme's encode and compensate; *decode* on a worker is the "
              "agent's reconstruct (skipped for direct schemes, which keep no mirrored state); *pack* builds the "
              "frame and computes its check in the same pass; "
              "*send* posts and completes the sends. Exchange = receive + check on the server. The idle table's "
              "last column times the frame check of the same N messages as a pass of its own: what the fp32 "
              "exchange would add if the check were a pass of its own; *prediction alone* times TPC's N "
              "predictions M a (p memory vectors read, one written, per agent), which every TPC decode does "
              "whatever codec carries the residual. The sum floor is measured on rank 0 "
              "while the other ranks sleep. *CPU time* is the server thread's own CPU time in a phase: with "
              "9 ranks on 2 cores, a phase's wall time also counts the time the server waited for a core. "
              "The model goes to "
              "each worker by a point-to-point send that completes while the server waits for gradients, so "
              "its transfer time is inside the server's *wait* and the worker's *wait*.",
              "", f"Peak RSS per rank (MB, rank 0 first): {', '.join(f'{m:.0f}' for m in rss)}", ""]
    (out / "round.md").write_text("\n".join(lines))


def main(argv=()):
    p = argparse.ArgumentParser(prog="mpirun -n 9 python -m psgrad.bench round", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1e6,1e7", help="comma-separated target parameter counts")
    p.add_argument("--rounds", type=int, default=9, help=f"rounds per setting (the first {WARMUP} are not counted)")
    p.add_argument("--reps", type=int, default=5, help="repetitions of each floor")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from mpi4py import MPI

    torch.set_num_threads(1)
    from ..runtime.phases import Phases

    Phases.cpu = True
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        print("run it under MPI: mpirun -n 9 python -m psgrad.bench round")
        return 2
    t0 = time.perf_counter()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    runs, rows, rss = run(comm, sizes, args.rounds, args.reps)
    if comm.Get_rank() == 0:
        write(Path(args.out), runs, rows, rss, args.rounds, args.reps, time.perf_counter() - t0)
        print((Path(args.out) / "round.md").read_text())
    return 0
