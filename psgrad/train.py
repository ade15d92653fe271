"""``python -m psgrad.train``: one training job, in one process or as rank 0 + workers under MPI.

    python -m psgrad.train                                   # the built-in default job, in one process
    mpirun -n 9 python -m psgrad.train                       # the same job: server + 8 worker ranks
    python -m psgrad.train --config configs/x.yaml --set run.rounds=50 --set scheme.codec=fp16

A bad config, dataset or option prints one line naming what was wrong and
exits with status 2 on every rank. Any other failure on any rank prints one
line naming the rank, agent and round, and ends every rank (MPI_Abort).
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from . import config as config_mod  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .runtime.driver import build, handshake, resolve_workers, run_local, run_mpi  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m psgrad.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML config file (default: the built-in default job)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value; repeatable")
    p.add_argument("--local", action="store_true", help="run in one process even when launched under MPI")
    return p.parse_args(argv)


def prepare(args, world_size):
    """Config, task and scheme; raises ConfigError for anything the user got wrong."""
    cfg = config_mod.load(args.config, args.overrides)
    resolve_workers(cfg, world_size)
    task, sc = build(cfg)
    return cfg, task, sc


def describe(exc):
    agent, round_ = getattr(exc, "psgrad_where", (None, None))
    where = ", ".join(f"{k} {v}" for k, v in (("agent", agent), ("round", round_)) if v is not None)
    return f"{f' ({where})' if where else ''}: {type(exc).__name__}: {exc}"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    world = 1 if args.local else comm.Get_size()
    rank = 0 if args.local else comm.Get_rank()
    t_imported = time.perf_counter()

    # Set-up errors are the user's: one line, status 2, on every rank, agreed before anyone waits on anyone.
    error = None
    try:
        cfg, task, sc = prepare(args, world)
        if world > 1:
            handshake(comm, cfg)
    except ConfigError as e:
        error = str(e)
    errors = comm.allgather(error) if world > 1 else [error]
    if any(errors):
        if rank == 0:
            first = next(r for r, e in enumerate(errors) if e)
            print(f"psgrad: config error{f' on rank {first}' if world > 1 else ''}: {errors[first]}",
                  file=sys.stderr)
        return 2

    def log(line):
        print(line, flush=True)

    try:
        timings = {"import": t_imported - T_START}
        if world > 1:
            run_mpi(cfg, task, sc, comm, log, timings)
        else:
            run_local(cfg, task, sc, log, timings)
    except Exception as e:
        print(f"psgrad: error on rank {rank}{describe(e)}", file=sys.stderr, flush=True)
        if world > 1:
            comm.Abort(1)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
