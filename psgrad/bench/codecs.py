"""``python -m psgrad.bench codecs``: every registered codec against the bits-versus-error lower bound.

For each codec and each point of its parameter grid (``GRIDS``; a codec not
listed runs with its defaults) and each input class, measure

- rate ``r``: payload bits per coordinate, everything included;
- error: for unbiased codecs the empirical ``omega = E||C(x) - x||^2 / ||x||^2``,
  for biased ones the relative error after the best scaling,
  ``min_c ||c C(x) - x||^2 / ||x||^2 = 1 - <C(x), x>^2 / (||C(x)||^2 ||x||^2)``,
  averaged over independent keys;
- the ratio of the error to the lower bound at that rate (unbiased:
  ``omega >= 1 / (4^r - 1)``; biased: ``error >= 4^(-r)``);

and for each codec with its default parameters, encode and decode time at
``d = 10^6`` and ``10^7`` as ratios to a memcpy of the same float32 array
(``np.copyto`` into a warm buffer) timed in the same run (median of a few
repetitions, after a warm-up call that compiles the numba kernels).

Writes ``codecs_rate_error.csv``, ``codecs_speed.csv``, ``codecs_rate_error.png``
and ``codecs.md`` to ``results/bench/`` (or ``--out``). ``--quick`` runs a small
``d`` and few repetitions, for smoke tests.
"""
import argparse
import csv
import math
import os
import time
from pathlib import Path

import numpy as np

import psgrad

# name -> list of parameter dicts; codecs not listed run with their defaults
GRIDS = {
    "qsgd": [dict(levels=1, bucket=512), dict(levels=4, bucket=512), dict(levels=16, bucket=512),
             dict(levels=4, bucket=0)],
    "natural_dither": [dict(levels=3), dict(levels=7), dict(levels=7, bucket=512), dict(levels=15)],
    "terngrad": [dict(bucket=0), dict(bucket=512)],
    "topk": [dict(ratio=0.001), dict(ratio=0.01), dict(ratio=0.1)],
    "randk": [dict(ratio=0.01), dict(ratio=0.1), dict(ratio=0.5)],
    "rotated_sign": [dict(block=1 << 10), dict(block=1 << 14)],
}

INPUTS = ("gaussian", "onehot", "student_t", "flat", "sphere", "real")

# speed targets at d = 10^7, one core, as multiples of a memcpy of the input
TARGETS = {name: 5.0 for name in ("fp16", "sign", "scaled_sign", "natural", "qsgd", "terngrad", "randk")}
TARGETS.update(topk=15.0, rotated_sign=15.0)

# why a codec misses its speed target, where it does (shown in the table)
WHY = {
    "qsgd": "Elias-omega stream: variable-length fields written one by one through a serial bit cursor, "
            "plus one 32-bit random draw per coordinate for stochastic rounding",
    "terngrad": "one 32-bit random draw and one division per coordinate, and a base-3 digit loop that "
                "does not vectorise",
    "natural": "one 23-bit random draw per coordinate; decode writes a fresh 4d-byte output",
    "natural_dither": "float64 division per coordinate and a random draw, then a separate packing pass",
    "topk": "three passes over d (two histograms for the radix select, one gather)",
    "rotated_sign": "the rotation alone is log2(block) butterfly stages over d, about 10 memcpys",
    "randk": "Floyd sampling of k positions needs a d-bit bitmap scan on both sides",
    "fp16": "per-coordinate round-to-nearest-even with subnormal handling",
    "sign": "", "scaled_sign": "",
}

REAL_NOTE = ""


def _real_gradients(d, seed):
    """Gradients recorded from the ``mlp``/``digits`` task during plain gradient descent.

    The model has fewer than ``d`` parameters, so successive rounds' gradients
    (agent ``round % 8``, step size 0.5) are concatenated and the result cut to ``d``.
    """
    global REAL_NOTE
    from psgrad.config import TaskConfig
    from psgrad.tasks import make_task

    task = make_task(TaskConfig(name="mlp", dataset="digits"), n_agents=8, seed=seed)
    params = task.init_params()
    parts, total, rnd = [], 0, 0
    while total < d:
        _, g = task.local_grad(rnd % 8, params, rnd)
        g = np.asarray(g, np.float32).copy()
        parts.append(g)
        total += g.size
        params = (params - 0.5 * g).astype(np.float32)
        rnd += 1
    REAL_NOTE = (f"real: mlp on digits ({parts[0].size} parameters); {rnd} gradients from successive "
                 f"gradient-descent rounds (agents cycling 0..7) concatenated and cut to d = {d}")
    return np.concatenate(parts)[:d]


def make_input(kind, d, seed=0):
    """One input vector of class ``kind`` (see ``INPUTS``)."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        x = rng.standard_normal(d)
    elif kind == "onehot":
        x = np.zeros(d)
        x[rng.integers(d)] = 1.0
    elif kind == "student_t":
        x = rng.standard_t(2, d)
    elif kind == "flat":
        x = np.where(rng.random(d) < 0.5, -1.0, 1.0)
    elif kind == "sphere":
        x = rng.standard_normal(d)
        x /= np.linalg.norm(x)
    elif kind == "real":
        return _real_gradients(d, seed)
    else:
        raise ValueError(f"unknown input class {kind!r}; valid: {', '.join(INPUTS)}")
    return x.astype(np.float32)


def lower_bound(rate, unbiased):
    """The bits-versus-error lower bound at ``rate`` bits per coordinate."""
    if unbiased:
        return 1.0 / (4.0 ** rate - 1.0) if rate > 0 else math.inf
    return 4.0 ** (-rate)


def measure_error(c, x, reps):
    """Mean rate and error of codec ``c`` on ``x`` over ``reps`` keys."""
    x64 = x.astype(np.float64)
    nx = float(x64 @ x64)
    bits, errs = [], []
    for r in range(reps):
        key = psgrad.Key(seed=1, agent=0, round=r)
        enc = c.encode(x, key)
        y = c.decode(enc.data, enc.nbits, len(x), key).astype(np.float64)
        bits.append(enc.nbits)
        if c.unbiased:
            errs.append(float((y - x64) @ (y - x64)) / nx)
        else:
            ny = float(y @ y)
            errs.append(1.0 - float(y @ x64) ** 2 / (ny * nx) if ny > 0 else 1.0)
    return float(np.mean(bits)) / len(x), float(np.mean(errs))


def _median_time(fn, reps):
    fn()  # warm-up: numba compilation, page faults of first allocations
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def measure_speed(c, d, reps):
    """(memcpy, encode, decode) median seconds at length ``d``, same run."""
    x = make_input("gaussian", d, seed=5)
    dst = np.empty_like(x)
    key = psgrad.Key(seed=1, agent=0, round=0)
    enc = c.encode(x, key)
    t_copy = _median_time(lambda: np.copyto(dst, x), reps)
    t_enc = _median_time(lambda: c.encode(x, key), reps)
    t_dec = _median_time(lambda: c.decode(enc.data, enc.nbits, d, key), reps)
    return t_copy, t_enc, t_dec


def _label(name, params):
    return name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")


def run(out, d, reps, speed_sizes, speed_reps):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {kind: make_input(kind, d) for kind in INPUTS}
    rows = []
    for name in psgrad.codecs():
        for params in GRIDS.get(name, [{}]):
            c = psgrad.codec(name, **params)
            for kind, x in inputs.items():
                rate, err = measure_error(c, x, reps if name not in ("fp32",) else 1)
                bound = lower_bound(rate, c.unbiased)
                rows.append(dict(codec=name, params=_label(name, params), input=kind, d=d,
                                 unbiased=c.unbiased, rate=rate, error=err, bound=bound,
                                 ratio=(err / bound) if bound > 0 else math.nan))
    _write_csv(out / "codecs_rate_error.csv", rows)
    speed = []
    for name in psgrad.codecs():
        c = psgrad.codec(name)
        for n in speed_sizes:
            t_copy, t_enc, t_dec = measure_speed(c, n, speed_reps)
            speed.append(dict(codec=name, d=n, memcpy_s=t_copy, encode_s=t_enc, decode_s=t_dec,
                              encode_ratio=t_enc / t_copy, decode_ratio=t_dec / t_copy,
                              target=TARGETS.get(name, math.nan)))
    _write_csv(out / "codecs_speed.csv", speed)
    _plot(out / "codecs_rate_error.png", rows)
    _table(out / "codecs.md", rows, speed, d)
    return rows, speed


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _plot(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    names = sorted({r["codec"] for r in rows})
    colors = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
    r_grid = np.logspace(-3.5, 1.6, 200)
    for ax, kind in zip(axes.flat, INPUTS):
        ax.plot(r_grid, 1 / (4 ** r_grid - 1), "k-", lw=1, label="unbiased bound 1/(4^r-1)")
        ax.plot(r_grid, 4.0 ** -r_grid, "k--", lw=1, label="biased bound 4^-r")
        for name in names:
            pts = [r for r in rows if r["codec"] == name and r["input"] == kind and r["error"] > 0]
            if pts:
                ax.plot([p["rate"] for p in pts], [p["error"] for p in pts],
                        "o" if pts[0]["unbiased"] else "s", color=colors[name], label=name, ms=5,
                        mfc=colors[name] if pts[0]["unbiased"] else "none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-9, 1e4)
        ax.set_title(kind)
        ax.set_xlabel("rate r (bits per coordinate)")
        ax.set_ylabel("omega (filled) / scaled error (open)")
        ax.grid(True, which="major", alpha=0.3)
    seen = {}
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        for h, lab in zip(handles, labels):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", ncol=8, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(path, rows, speed, d):
    lines = [f"# Codecs against the bits-versus-error lower bound (d = {d})", "",
             "Rate r = payload bits per coordinate. Error: empirical omega (unbiased codecs) or relative "
             "error after the best scaling (biased). Ratio = error / bound at the same rate, with "
             "omega >= 1/(4^r - 1) (unbiased) and error >= 4^-r (biased); 1 is optimal. "
             "Each cell: r / ratio. The bounds hold for the worst input (and, for the unbiased one, "
             "for inputs uniform on the sphere), so a ratio below 1 on a compressible input (one-hot, "
             "heavy tails, real gradients) is possible and not a contradiction.", ""]
    if REAL_NOTE:
        lines += [f"Input `{REAL_NOTE}`.", ""]
    lines += ["| codec | kind | " + " | ".join(INPUTS) + " |", "|---|---|" + "---|" * len(INPUTS)]
    labels = list(dict.fromkeys(r["params"] for r in rows))
    for lab in labels:
        cells = {r["input"]: r for r in rows if r["params"] == lab}
        kind = "unbiased" if next(iter(cells.values()))["unbiased"] else "biased"
        vals = []
        for inp in INPUTS:
            r = cells.get(inp)
            vals.append("" if r is None else
                        ("lossless" if r["error"] == 0 else f"{r['rate']:.3g} / {r['ratio']:.3g}"))
        lines.append(f"| {lab} | {kind} | " + " | ".join(vals) + " |")
    sizes = sorted({s["d"] for s in speed})
    lines += ["", f"## Speed (default parameters, one core, Gaussian input), ratios to memcpy", "",
              "memcpy = `np.copyto` of the float32 input into a warm buffer, timed in the same run; "
              "median of repetitions after a warm-up call.", "",
              "| codec | " + " | ".join(f"encode d={n:.0e} | decode d={n:.0e}" for n in sizes)
              + " | target (d=1e7) | meets | why not |",
              "|---|" + "---|---|" * len(sizes) + "---|---|---|"]
    for name in sorted({s["codec"] for s in speed}):
        cells = []
        big = None
        for n in sizes:
            s = next(s for s in speed if s["codec"] == name and s["d"] == n)
            cells += [f"{s['encode_ratio']:.1f}x", f"{s['decode_ratio']:.1f}x"]
            big = s
        target = TARGETS.get(name)
        if target is None:
            meets, why = "", ""
        else:
            ok = big["encode_ratio"] <= target and big["decode_ratio"] <= target
            meets = "yes" if ok else "no"
            why = "" if ok else WHY.get(name, "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if target is None else f'{target:g}x'} | "
                     f"{meets} | {why} |")
    memcpy = {s["d"]: s["memcpy_s"] for s in speed if s["codec"] == speed[0]["codec"]}
    lines += ["", "memcpy times: " + ", ".join(f"d={n:.0e}: {t * 1e3:.2f} ms" for n, t in memcpy.items()), ""]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m psgrad.bench codecs", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small d and few repetitions (smoke test)")
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.quick:
        run(args.out, d=1 << 12, reps=2, speed_sizes=[10 ** 5], speed_reps=2)
    else:
        run(args.out, d=1 << 16, reps=8, speed_sizes=[10 ** 6, 10 ** 7], speed_reps=5)
    print(f"wrote {args.out}/codecs.md, codecs_rate_error.csv, codecs_speed.csv, codecs_rate_error.png")
    return 0
