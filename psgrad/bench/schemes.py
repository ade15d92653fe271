"""Scheme speed: ``python -m psgrad.bench schemes [--dims 1000000,10000000] [--reps 7]``.

For each scheme, per round and per agent:

- agent time: ``encode`` + ``reconstruct`` + ``compensate`` (what a worker does
  for one agent, gradient computation excluded);
- server time: ``reconstruct`` (what rank 0 does for one agent's message);

each as a ratio to a memcpy of ``g`` timed in the same run: ``g.copy()``,
which allocates its output as every scheme does (at d = 10^7 a fresh 40 MB
array costs page faults that a copy into a preallocated buffer does not);
the preallocated ``np.copyto`` time is reported too. Every figure is the minimum over ``reps``
rounds after warm-up rounds that fill the scheme's state (a full predictor
memory), the usual estimate of the undisturbed cost on a shared machine.
Writes ``results/bench/schemes.csv`` and ``results/bench/schemes.md``.
"""
import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

from .. import Context, Key, scheme

SKIP = 1e9  # a relative threshold no residual reaches: the trigger never fires

CASES = [
    # label, scheme name, codec, parameters
    ("direct", "direct", "fp32", {}),
    ("ef", "ef", "fp32", {}),
    ("ef21", "ef21", "fp32", {}),
    ("diana", "diana", "fp32", {}),
    ("lag, skipped", "lag", "fp32", {"eps": SKIP}),
    ("lag, sent", "lag", "fp32", {"eps": 0.0}),
    ("tpc p=1, skipped", "tpc", "fp32", {"p": 1, "eps": SKIP}),
    ("tpc p=3, skipped", "tpc", "fp32", {"p": 3, "eps": SKIP}),
    ("tpc p=3, sent fp32", "tpc", "fp32", {"p": 3, "eps": 0.0}),
    ("tpc p=3, sent fp16", "tpc", "fp16", {"p": 3, "eps": 0.0}),
]
TARGETS = {"tpc p=3, skipped": (8.0, 4.0)}  # (agent, server) ceilings in memcpy units


def best(f, reps):
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def measure(sc, d, reps, warmup=4):
    """``(agent_s, server_s)`` for one scheme at length ``d``."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal(d).astype(np.float32)
    state, private = sc.init(d)
    t = 0

    def agent_round():
        nonlocal state, private, t
        ctx = Context(Key(0, 0, t), d, 1.0)
        payload = sc.encode(state, private, g, ctx)
        g_hat, state = sc.reconstruct(state, payload, ctx)
        private = sc.compensate(private, g, g_hat)
        t += 1
        return payload, ctx

    for _ in range(warmup):
        agent_round()
    agent = best(agent_round, reps)
    frozen_state = state
    payload, ctx = agent_round()
    server = best(lambda: sc.reconstruct(frozen_state, payload, ctx), reps)
    return agent, server


def run(dims, reps):
    rows = []
    for d in dims:
        g = np.random.default_rng(1).standard_normal(d).astype(np.float32)
        dst = np.empty_like(g)
        memcpy = best(g.copy, 3 * reps)
        copyto = best(lambda: np.copyto(dst, g), 3 * reps)
        for label, name, codec, params in CASES:
            agent, server = measure(scheme(name, codec, **params), d, reps)
            memcpy = min(memcpy, best(g.copy, reps))  # the floor, re-sampled as we go
            copyto = min(copyto, best(lambda: np.copyto(dst, g), reps))
            rows.append({"scheme": label, "d": d, "agent_s": agent, "server_s": server})
        for r in rows:
            if r["d"] == d:
                r["memcpy_s"] = memcpy
                r["copyto_s"] = copyto
                r["agent_x_memcpy"] = r["agent_s"] / memcpy
                r["server_x_memcpy"] = r["server_s"] / memcpy
    return rows


def write(rows, out):
    out.mkdir(parents=True, exist_ok=True)
    fields = ["scheme", "d", "memcpy_s", "copyto_s", "agent_s", "server_s", "agent_x_memcpy", "server_x_memcpy"]
    with open(out / "schemes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in fields})
    lines = ["# Scheme speed", "",
             "Per round and per agent, as multiples of a memcpy of `g` (`g.copy()`, allocating like the "
             "schemes do) timed in the same run (minimum over repetitions; `python -m psgrad.bench schemes`); "
             "`copyto` is a copy into a preallocated array. Agent: encode + reconstruct "
             "+ compensate. Server: reconstruct.", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.", "",
             "| scheme | d | memcpy ms | copyto ms | agent x memcpy | server x memcpy | target (agent / server) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        target = TARGETS.get(r["scheme"])
        verdict = ""
        if target:
            ok = r["agent_x_memcpy"] <= target[0] and r["server_x_memcpy"] <= target[1]
            verdict = f"<= {target[0]:g} / <= {target[1]:g}: {'met' if ok else 'MISSED'}"
        lines.append(f"| {r['scheme']} | {r['d']:.0e} | {1e3 * r['memcpy_s']:.3f} | {1e3 * r['copyto_s']:.3f} | {r['agent_x_memcpy']:.2f} "
                     f"| {r['server_x_memcpy']:.2f} | {verdict} |")
    (out / "schemes.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m psgrad.bench schemes")
    ap.add_argument("--dims", default="1000000,10000000", help="comma-separated gradient lengths")
    ap.add_argument("--reps", type=int, default=30, help="rounds timed per case (the minimum is reported)")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(list(argv))
    dims = [int(float(x)) for x in args.dims.split(",")]
    print(write(run(dims, args.reps), Path(args.out)))
