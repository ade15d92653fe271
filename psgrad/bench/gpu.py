"""Where an agent's round goes when gradients come from a GPU: ``python -m psgrad.bench gpu``.

A short training run in one process (local transport, one worker, one agent)
of a digits ``mlp`` with ``task.hidden`` chosen for about ``--d`` parameters,
minibatches of ``--batch`` samples, on ``task.device`` (``--device``, default
``cuda``). The worker's own phase timers give the median per round, after the
first (numba compilation, CUDA start-up), of: ``compute`` (forward and backward
on the device, synchronized), ``copy`` (the flat gradient into the reused
pinned host buffer), ``encode`` (the codec, on one CPU core) and ``pack``
(the wire frame). Writes results/bench/gpu.md and gpu.csv.
"""
import argparse
import csv
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from .round import hidden_for

PHASES = ("compute", "copy", "encode", "decode", "digest", "pack")


def main(argv=()):
    p = argparse.ArgumentParser(prog="python -m psgrad.bench gpu", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="task.device: cuda, cpu or auto")
    p.add_argument("--d", type=float, default=11.4e6, help="target parameter count")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--codecs", default="fp32,qsgd,sign", help="comma-separated codecs (scheme direct)")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from .. import config
    from ..runtime.loop import build, run
    from ..transport.local import LocalTransport

    h = hidden_for(args.d)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in args.codecs.split(","):
            cfg = config.load(None, [
                "task.name=mlp", "task.dataset=digits", "task.partition=iid", f"task.hidden={h}",
                f"task.batch_size={args.batch}", f"task.device={args.device}", "scheme.name=direct",
                f"scheme.codec={codec}", f"run.rounds={args.rounds}", "run.workers=1",
                f"run.eval_every={args.rounds}", "run.log_every=1000000", f"run.results_dir={tmp}",
                f"run.name={codec}"])
            transport = LocalTransport(1)
            summary, _ = run(cfg, *build(cfg), transport, log=lambda line: None)
            rows.append(measure(transport.workers[0].phases.rounds[1:], codec, summary["d"]))
    write(Path(args.out), rows, args, h)
    print((Path(args.out) / "gpu.md").read_text())
    return 0


def measure(rounds, codec, d):
    """Median milliseconds per phase over the worker's ``rounds``."""
    row = {"codec": codec, "d": d}
    for k in (*PHASES, "round"):
        row[k] = 1e3 * statistics.median(r.get(k, 0.0) for r in rounds)
    return row


def write(out, rows, args, h):
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    device = torch.cuda.get_device_name(0) if args.device != "cpu" and torch.cuda.is_available() else "CPU"
    lines = [
        "# An agent's round with gradients on a GPU", "",
        f"`python -m psgrad.bench gpu --device {args.device}` — mlp on digits, hidden {h}, "
        f"d = {rows[0]['d']:,}, batch {args.batch}, one agent, {args.rounds} rounds; medians over the rounds "
        f"after the first, in ms. Device: {device}; host: {platform.machine()}, {os.cpu_count()} CPUs, codecs "
        f"on one core (OMP_NUM_THREADS=1). Written {time.strftime('%Y-%m-%d')}.", "",
        "| codec | " + " | ".join(PHASES) + " | round | encode / compute |",
        "|---|" + "---:|" * (len(PHASES) + 2),
    ]
    for r in rows:
        ratio = r["encode"] / r["compute"] if r["compute"] else float("nan")
        lines.append(f"| {r['codec']} | " + " | ".join(f"{r[k]:.2f}" for k in PHASES)
                     + f" | {r['round']:.2f} | {ratio:.1f}x |")
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
