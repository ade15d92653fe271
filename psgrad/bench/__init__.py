"""Benchmarks: ``python -m psgrad.bench NAME``; each writes to ``results/bench/``.

Speed is reported as ratios to a floor measured in the same run (a memcpy of
the same array, an MPI Gather of the same bytes), never as absolute seconds
alone: shared machines are noisy, ratios are not.
"""
import importlib

# name -> module under psgrad.bench with a main(argv) function
BENCHMARKS = {
    "codecs": "codecs",
    "federated": "federated",
    "gpu": "gpu",
    "operators": "operators",
    "round": "round",
    "schemes": "schemes",
}


def main(argv=None):
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in BENCHMARKS:
        names = ", ".join(sorted(BENCHMARKS)) or "(none yet)"
        print(f"usage: python -m psgrad.bench NAME [options]; NAME is one of: {names}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"psgrad.bench.{BENCHMARKS[argv[0]]}")
    return module.main(argv[1:]) or 0
