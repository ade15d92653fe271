"""``python -m psgrad.compare CONFIG``: run every contender of a comparison and write the bits-to-target table.

    python -m psgrad.compare configs/compare/linreg.yaml                 # one process, local transport
    mpirun -n 9 python -m psgrad.compare configs/compare/linreg.yaml     # the same runs over MPI, same results
    python -m psgrad.compare configs/compare/linreg.yaml --set base.run.rounds=50 --resume

Outputs go to <results_dir>/<name>/: table.md, table.csv, sweep.csv (every
grid point), bits.png, rounds.png, compare.yaml, and runs/<label>-<point>/
(ordinary run folders). A bad comparison file prints one line naming what
was wrong and exits with status 2 on every rank.
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)

from ..errors import ConfigError  # noqa: E402
from ..transport.mpi import abort  # noqa: E402
from . import load, run_comparison  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m psgrad.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="comparison file (YAML), e.g. configs/compare/linreg.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value of the comparison file, e.g. base.run.rounds=50; repeatable")
    p.add_argument("--resume", action="store_true",
                   help="skip runs whose folder already holds a finished run of the same config")
    p.add_argument("--local", action="store_true", help="run in one process even when launched under MPI")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="print each run's own progress lines")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    comm = None if args.local or MPI.COMM_WORLD.Get_size() == 1 else MPI.COMM_WORLD
    rank = comm.Get_rank() if comm is not None else 0
    try:
        comparison = load(args.config, args.overrides)
        rows = run_comparison(comparison, comm, progress=not args.quiet, resume=args.resume,
                              verbose=args.verbose)
    except ConfigError as e:
        # Every rank loads the same file and fails the same way, so nobody is left waiting.
        if rank == 0:
            print(f"psgrad.compare: config error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        abort(comm, f"psgrad.compare: error on rank {rank}: {type(e).__name__}: {e}")
        return 1
    if rows is not None:
        print((comparison.out / "table.md").read_text())
        print(f"wrote {comparison.out}/table.md, table.csv, sweep.csv, bits.png, rounds.png and runs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
