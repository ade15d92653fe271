"""``python -m psgrad.train``: one training job, in one process or as rank 0 + workers under MPI.

    python -m psgrad.train                                   # the built-in default job, in one process
    mpirun -n 9 python -m psgrad.train                       # the same job: server + 8 worker ranks
    python -m psgrad.train --config configs/x.yaml --set run.rounds=50 --set scheme.codec=fp16
    mpirun -n 9 python -m psgrad.train --resume results/default   # continue from results/default/checkpoint.npz

A bad config, dataset, checkpoint or option prints one line naming what was
wrong and exits with status 2 on every rank. Any other failure on any rank
prints one line naming the rank, agent and round, and ends every rank
(MPI_Abort). SIGTERM (SLURM sends it before preemption) makes every rank stop
at the next round boundary after a checkpoint, with status 75 (EX_TEMPFAIL:
resume with ``--resume``). See docs/reliability.md.
"""
import time

T_START = time.perf_counter()


def process_age():
    """Seconds since this process started (interpreter start-up and every import included), from /proc;
    falls back to the time since this module began loading where /proc is not available."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - T_START


import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from . import config as config_mod  # noqa: E402
from .errors import ConfigError, PsgradError  # noqa: E402
from .runtime import checkpoint  # noqa: E402
from .runtime.driver import (Stopped, abort, agree, build, handshake, resolve_workers, run_local,  # noqa: E402
                             run_mpi)

EXIT_CONFIG = 2
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped with a checkpoint; run again with --resume


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m psgrad.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML config file (default: the built-in default job)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value; repeatable")
    p.add_argument("--local", action="store_true", help="run in one process even when launched under MPI")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint.npz (config from RUN_DIR/config.yaml; "
                        f"--set may change only {', '.join(sorted(checkpoint.RESUMABLE - {'run.results_dir', 'run.name'}))})")
    return p.parse_args(argv)


def prepare(args, world_size):
    """Config, task, scheme and checkpoint (or None); raises ConfigError for anything the user got wrong."""
    if args.resume is None:
        cfg = config_mod.load(args.config, args.overrides)
        resolve_workers(cfg, world_size)
        task, sc = build(cfg)
        return cfg, task, sc, None
    folder = Path(args.resume)
    if args.config is not None:
        raise ConfigError("--resume takes the config from the run folder; leave out --config")
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"cannot resume: {folder} is not a run folder (no config.yaml)")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        if key not in checkpoint.RESUMABLE:
            raise ConfigError(f"--set {key} is not allowed with --resume: a resumed run computes what the original "
                              f"would have; allowed: {', '.join(sorted(checkpoint.RESUMABLE))}")
    cfg = config_mod.load(folder / "config.yaml", args.overrides)
    cfg.run.results_dir, cfg.run.name = str(folder.parent), folder.name
    resolve_workers(cfg, world_size)
    task, sc = build(cfg)
    return cfg, task, sc, checkpoint.load(folder, cfg, sc, task.d)


class StopOnSignal:
    """SIGTERM sets ``requested``; the drivers then stop at the next round boundary after a checkpoint."""

    requested = False

    def install(self):
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True


def describe(exc):
    agent, round_ = getattr(exc, "psgrad_where", (None, None))
    where = ", ".join(f"{k} {v}" for k, v in (("agent", agent), ("round", round_)) if v is not None)
    return f"{f' ({where})' if where else ''}: {type(exc).__name__}: {exc}"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    world = 1 if args.local else comm.Get_size()
    mpi = comm if world > 1 else None  # what an error ends: every rank of an MPI job, or this process
    rank = 0 if args.local else comm.Get_rank()
    import_s = process_age()

    # Set-up errors are the user's: one line, status 2, on every rank, agreed before anyone waits on anyone.
    # Every collective here has a deadline: a rank that never arrives ends the job instead of hanging it.
    error, timeout = None, config_mod.RunConfig.timeout
    try:
        try:
            cfg, task, sc, resume = prepare(args, world)
            timeout = cfg.run.timeout
            if world > 1:
                handshake(comm, cfg)
        except ConfigError as e:
            error = str(e)
        errors = agree(comm, error, timeout, "for every rank to check its config") if world > 1 else [error]
    except PsgradError as e:
        abort(mpi, f"psgrad: error on rank {rank}: {e}")
        return 1
    if any(errors):
        if rank == 0:
            first = next(r for r, e in enumerate(errors) if e)
            print(f"psgrad: config error{f' on rank {first}' if world > 1 else ''}: {errors[first]}",
                  file=sys.stderr)
        return EXIT_CONFIG

    def log(line):
        print(line, flush=True)

    stop = StopOnSignal().install()
    try:
        timings = {"start_and_import": import_s}
        if world > 1:
            run_mpi(cfg, task, sc, comm, log, timings, resume=resume, stop=stop)
        else:
            run_local(cfg, task, sc, log, timings, resume=resume, stop=stop)
    except Stopped as e:
        if rank == 0:
            print(f"psgrad: stopped on SIGTERM after {e.round} rounds; checkpoint written to {e.path}; continue with "
                  f"python -m psgrad.train --resume {Path(e.path).parent}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except Exception as e:
        abort(mpi, f"psgrad: error on rank {rank}{describe(e)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
