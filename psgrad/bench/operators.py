"""Error and speed of the seed operators against the lower bound: ``python -m psgrad.bench operators``.

For every input class and every (codec, parameters) point, the mean relative
squared error over ``--trials`` keys, the exact payload rate ``r`` in bits per
coordinate, and the ratio to the bound at that rate: ``omega * (4^r - 1)`` for
unbiased codecs, ``error * 4^r`` for biased ones (1.0 is optimal). Speed at
``--speed-d`` coordinates on one core, as ratios to a memcpy of the same input
measured in the same run. Writes results/bench/operators.csv and .md.
"""
import argparse
import csv
import os
import time

import numpy as np

import psgrad
from psgrad.codecs import rotated_ternary

# (codec, parameters): spherical points hit rates 0.1, 0.25, 0.5, 1, 2 (all side information included)
POINTS = [
    ("spherical", dict(m=100, bits=8, gain_bits=2)),
    ("spherical", dict(m=40, bits=8, gain_bits=2)),
    ("spherical", dict(m=20, bits=8, gain_bits=2)),
    ("spherical", dict(m=8, bits=6, gain_bits=2)),
    ("spherical", dict(m=12, bits=9, gain_bits=3)),
    ("spherical", dict(m=16, bits=12, gain_bits=4)),
    ("spherical", dict(m=4, bits=6, gain_bits=2)),
    ("spherical", dict(m=6, bits=9, gain_bits=3)),
    ("spherical", dict(code="trellis", m=128, bits=128, gain_bits=3, states=8)),
    ("spherical", dict(code="trellis", m=64, bits=64, gain_bits=3, states=8)),
    ("spherical", dict(code="trellis", m=128, bits=128, gain_bits=3, states=32)),
    ("spherical", dict(code="trellis", m=128, bits=256, gain_bits=3, states=8)),
    ("spherical", dict(code="trellis", m=128, bits=256, gain_bits=3, states=32)),
    ("spherical", dict(code="trellis", m=256, bits=256, gain_bits=4, states=256)),
    ("spherical", dict(code="trellis", m=256, bits=512, gain_bits=4, states=256)),
    ("spherical", dict(code="trellis", m=4096, bits=4096, gain_bits=6, states=8, unbiased=False)),
    ("spherical", dict(code="trellis", m=4096, bits=4096, gain_bits=6, states=32, unbiased=False)),
    ("spherical", dict(code="trellis", m=4096, bits=8192, gain_bits=6, states=8, unbiased=False)),
    ("spherical", dict(code="trellis", m=4096, bits=4096, gain_bits=6, states=256, unbiased=False)),
    ("spherical", dict(code="trellis", m=4096, bits=8192, gain_bits=6, states=256, unbiased=False)),
    ("spherical", dict(m=8, bits=6, gain_bits=2, unbiased=False)),
    ("spherical", dict(m=12, bits=9, gain_bits=3, unbiased=False)),
    ("spherical", dict(m=16, bits=12, gain_bits=4, unbiased=False)),
    ("rotated_ternary", dict(rate=0.1)),
    ("rotated_ternary", dict(rate=0.25)),
    ("rotated_ternary", dict(rate=0.5)),
    ("rotated_ternary", dict(rate=0.1, m=256)),
    ("rotated_entropy", dict(rate=0.1)),
    ("rotated_entropy", dict(rate=0.25)),
    ("rotated_entropy", dict(rate=0.5)),
    ("sparse_dither", dict(density=0.003)),
    ("sparse_dither", dict(density=0.01)),
    ("sparse_dither", dict(density=0.03)),
    ("sparse_dither", dict(density=0.05)),
    ("sparse_dither", dict(density=0.1)),
    ("sparse_dither", dict(density=0.3)),
    ("sparse_dither", dict(density=0.01, rotate=False)),
    ("sparse_dither", dict(density=0.05, rotate=False)),
    ("adaptive", dict(rate=0.1)),
    ("adaptive", dict(rate=0.25)),
    ("adaptive", dict(rate=0.5)),
    ("adaptive", dict(rate=1.0)),
    ("adaptive", dict(rate=2.0)),
    ("fp16", {}),
    ("fp32", {}),
]

SPEED = [
    ("spherical", {}),
    ("spherical", dict(code="trellis", m=128, bits=128, gain_bits=3, states=32)),
    ("spherical", dict(code="trellis", m=256, bits=256, gain_bits=4, states=256)),
    ("spherical", dict(unbiased=False)),
    ("spherical", dict(code="trellis", m=4096, bits=4096, gain_bits=6, states=256, unbiased=False)),
    ("spherical", dict(m=8, bits=6, gain_bits=2)),
    ("spherical", dict(m=12, bits=9, gain_bits=3)),
    ("rotated_ternary", dict(rate=0.1)),
    ("rotated_ternary", dict(rate=0.1, m=256)),
    ("rotated_entropy", dict(rate=0.1)),
    ("rotated_entropy", dict(rate=0.1, m=256)),
    ("sparse_dither", dict(density=0.01)),
    ("sparse_dither", dict(density=0.05)),
    ("sparse_dither", dict(density=0.01, rotate=False)),
    ("adaptive", dict(rate=0.1)),
    ("adaptive", dict(rate=1.0)),
    ("fp16", {}),
]


def _gradient(d, rng):
    """A real gradient: softmax regression on scikit-learn's digits at small random weights, flattened."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16.0, np.ones((len(X), 1))])
    W = 0.01 * rng.standard_normal((X.shape[1], 10))
    P = np.exp(X @ W)
    P /= P.sum(1, keepdims=True)
    P[np.arange(len(y)), y] -= 1
    g = (X.T @ P / len(y)).ravel()
    return np.resize(g, d)  # tile to d coordinates (650 distinct values)


def inputs(d, seed=0):
    rng = np.random.default_rng(seed)
    sphere = rng.standard_normal(d)
    return {
        "gaussian": rng.standard_normal(d) * 3.0 + 1.0,
        "onehot": np.eye(1, d, d // 3)[0],
        "student_t2": rng.standard_t(2, d),
        "flat": np.ones(d),
        "two_hot": np.eye(1, d, 5)[0] + 2 * np.eye(1, d, d // 2 + 1)[0],
        "sphere": sphere / np.linalg.norm(sphere),
        "gradient": _gradient(d, rng),
    }


def ratio_to_bound(err, rate, unbiased):
    return err * (4.0 ** rate - 1.0) if unbiased else err * 4.0 ** rate


def measure_error(name, params, x, trials):
    codec = psgrad.codec(name, **params)
    x = x.astype(np.float32)
    norm2 = float(np.sum(x.astype(np.float64) ** 2))
    errs, bits = [], []
    for t in range(trials):
        key = psgrad.Key(seed=1, agent=0, round=t)
        enc = codec.encode(x, key)
        out = codec.decode(enc.data, enc.nbits, len(x), key)
        errs.append(float(np.sum((out.astype(np.float64) - x) ** 2)) / norm2)
        bits.append(enc.nbits)
    rate = float(np.mean(bits)) / len(x)
    err = float(np.mean(errs))
    return rate, err, ratio_to_bound(err, rate, codec.unbiased), codec.unbiased


def _best_time(fn, repeat):
    # CPU time of this process: on a shared machine wall time also counts other users' work. The rotated codes'
    # cache of reflections is emptied first: a run's encode and its decode on another rank never find them there.
    best = np.inf
    for _ in range(repeat):
        rotated_ternary.forget_turns()
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def measure_speed(name, params, d, repeat):
    x = np.random.default_rng(5).standard_normal(d).astype(np.float32)
    buf = np.empty_like(x)
    memcpy = _best_time(lambda: np.copyto(buf, x), 20)
    codec = psgrad.codec(name, **params)
    key = psgrad.Key(seed=1)
    codec.decode(*codec.encode(x[:4096], key)[:2], 4096, key)  # compile
    enc = codec.encode(x, key)
    t_enc = _best_time(lambda: codec.encode(x, key), repeat)
    t_dec = _best_time(lambda: codec.decode(enc.data, enc.nbits, d, key), repeat)
    return enc.nbits / d, memcpy, t_enc, t_dec


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m psgrad.bench operators")
    ap.add_argument("--d", type=int, default=16384)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--speed-d", type=int, default=10 ** 7)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--codecs", nargs="+", help="measure only these codecs (a partial run: give it its own --out)")
    args = ap.parse_args(argv)
    points = [p for p in POINTS if not args.codecs or p[0] in args.codecs]
    speeds = [p for p in SPEED if not args.codecs or p[0] in args.codecs]
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for kind, x in inputs(args.d).items():
        for name, params in points:
            rate, err, ratio, unbiased = measure_error(name, params, x, args.trials)
            rows.append(dict(input=kind, codec=name, params=repr(params), unbiased=unbiased, rate=round(rate, 4),
                             error=f"{err:.5g}", ratio_to_bound=f"{ratio:.4g}"))
            print(f"{kind:10s} {name:13s} {params!r:50s} rate {rate:7.4f} err {err:10.4g} ratio {ratio:8.3f}",
                  flush=True)
    speed = []
    for name, params in speeds:
        rate, memcpy, t_enc, t_dec = measure_speed(name, params, args.speed_d, args.repeat)
        ns = 1e9 / args.speed_d
        speed.append(dict(codec=name, params=repr(params), rate=round(rate, 4), memcpy_s=f"{memcpy:.4g}",
                          encode_x_memcpy=f"{t_enc / memcpy:.1f}", decode_x_memcpy=f"{t_dec / memcpy:.1f}",
                          encode_ns=f"{t_enc * ns:.2f}", decode_ns=f"{t_dec * ns:.2f}"))
        print(f"speed {name} {params!r} rate {rate:.3f} encode {t_enc / memcpy:.1f}x decode {t_dec / memcpy:.1f}x "
              f"memcpy ({t_enc * ns:.2f} / {t_dec * ns:.2f} ns per coordinate)", flush=True)

    with open(os.path.join(args.out, "operators.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "operators.md"), "w") as f:
        f.write(f"# Seed operators versus the lower bound\n\n`python -m psgrad.bench operators` "
                f"(d = {args.d}, {args.trials} keys per point). Ratio: omega (4^r - 1) unbiased, "
                f"error 4^r biased; 1 is the bound. Targets: unbiased <= 1.25 at 1 bit, <= 1.45 at 0.1 bit, "
                f"<= 1.5 at 0.25 and 0.5 bit; biased <= 1.15 at 1 bit, <= 1.10 at 2 bits; sparse_dither <= 2 "
                f"at 0.1 to 0.5 bit, worst case over the inputs.\n\n")
        f.write("## Worst case over the inputs\n\n| codec | params | unbiased | rate range | worst ratio | worst input |\n"
                "|---|---|---|---|---|---|\n")
        for name, params in points:
            mine = [r for r in rows if r["codec"] == name and r["params"] == repr(params)]
            worst = max(mine, key=lambda r: float(r["ratio_to_bound"]))
            rates = [r["rate"] for r in mine]
            f.write(f"| {name} | `{params!r}` | {worst['unbiased']} | {min(rates)}-{max(rates)} | "
                    f"{worst['ratio_to_bound']} | {worst['input']} |\n")
        f.write("\n## Every input\n\n")
        f.write("| input | codec | params | unbiased | rate | rel. error | ratio to bound |\n|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['input']} | {r['codec']} | `{r['params']}` | {r['unbiased']} | {r['rate']} | "
                    f"{r['error']} | {r['ratio_to_bound']} |\n")
        f.write(f"\n## Speed, d = {args.speed_d}, one core, best of {args.repeat} (process CPU time; "
                "memcpy measured in the same run; Gaussian input). Targets: encode <= 100, decode <= 10 (biased) "
                "or 20 (unbiased).\n\n"
                "| codec | params | rate | memcpy s | encode / memcpy | decode / memcpy | encode ns/coord | "
                "decode ns/coord |\n|---|---|---|---|---|---|---|---|\n")
        for s in speed:
            f.write(f"| {s['codec']} | `{s['params']}` | {s['rate']} | {s['memcpy_s']} | {s['encode_x_memcpy']} | "
                    f"{s['decode_x_memcpy']} | {s['encode_ns']} | {s['decode_ns']} |\n")
    return 0
