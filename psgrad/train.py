"""``python -m psgrad.train``: one training job, in one process or as rank 0 + workers under MPI.

    python -m psgrad.train                                   # the default job (psgrad/default.yaml), in one process
    mpirun -n 9 python -m psgrad.train                       # the same job: server + 8 worker ranks
    python -m psgrad.train --config configs/x.yaml --set run.rounds=50 --set scheme.codec=fp16
    mpirun -n 9 python -m psgrad.train --resume results/default   # continue from results/default/checkpoint.npz

A bad config, dataset, checkpoint or option prints one line naming what was
wrong and exits with status 2 on every rank. Any other failure on any rank
prints one line naming the rank, agent and round, and ends every rank
(MPI_Abort). SIGTERM (SLURM sends it before preemption) or Ctrl-C makes every
rank stop at the next round boundary after a checkpoint, with status 75
(EX_TEMPFAIL: resume with ``--resume``); a second Ctrl-C stops at once. See
docs/reliability.md.
"""
import gc
import time

T_START = time.perf_counter()
# No garbage collection during the imports (torch's are seconds of allocations, none of them garbage that
# matters); main() then collects once and freezes what is left, so that neither the run's collections nor
# the interpreter's exit walk those objects again: about a second of CPU per process, nine times per job.
gc.disable()


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


class StopOnSignal:
    """SIGTERM or a first SIGINT (Ctrl-C) sets ``requested``: every rank stops at the next round boundary
    after a checkpoint. A second SIGINT stops at once (KeyboardInterrupt)."""

    requested = False
    name = None

    def install(self):
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.name = True, signal.Signals(signum).name


# Installed before the imports below (seconds of them): a signal during start-up stops the run at round 0.
STOP = StopOnSignal().install()

os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import config  # noqa: E402
from .errors import ConfigError, describe  # noqa: E402
from .runtime import checkpoint  # noqa: E402
from .schemes import scheme  # noqa: E402

EXIT_CONFIG = 2
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped with a checkpoint; run again with --resume
EXIT_INTERRUPTED = 130  # the shell's status for SIGINT


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m psgrad.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML config file (default: the default job, psgrad/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value; repeatable")
    p.add_argument("--local", action="store_true", help="run in one process even when launched under MPI")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint.npz (config from RUN_DIR/config.yaml; "
                        f"--set may change only {', '.join(sorted(checkpoint.RESUMABLE - {'run.results_dir', 'run.name'}))})")
    return p.parse_args(argv)


def check_config(args):
    """Raise ``ConfigError`` for what is wrong in the config file, the ``--set`` overrides and the scheme and codec
    names and parameters: found in well under a second, before torch is imported (a task's names and data are
    checked later, with torch). Every rank reads the same files, so every rank fails alike without talking."""
    if args.resume is None:
        cfg = config.load(args.config, args.overrides)
        scheme(cfg.scheme.name, cfg.scheme.codec, cfg.scheme.codec_params, **cfg.scheme.params)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.config is None and args.resume is None:
        args.config = str(config.DEFAULT_JOB)
    if args.local:
        rank = 0
    else:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    try:
        check_config(args)
    except ConfigError as e:
        return config_error(rank, e)
    import torch

    torch.set_num_threads(1)
    from . import api
    from .runtime.loop import Stopped
    from .transport.mpi import abort

    gc.collect()
    gc.freeze()
    gc.enable()
    timings = {"start_and_import": process_age()}
    stop = STOP
    try:
        api.run(args.config, overrides=args.overrides, resume=args.resume, local=args.local,
                log=lambda line: print(line, flush=True), stop=stop, timings=timings)
    except ConfigError as e:  # raised on every rank alike
        return config_error(rank, e)
    except Stopped as e:
        if rank == 0:
            print(f"psgrad: stopped on {stop.name or 'request'} after {e.round} rounds; checkpoint written to "
                  f"{e.path}; continue with python -m psgrad.train --resume {Path(e.path).parent}",
                  file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint
        print(f"psgrad: interrupted on rank {rank} (second Ctrl-C): stopped without a checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # one process (under MPI, psgrad.run has already ended every rank)
        abort(None, f"psgrad: error on rank {rank}{describe(e)}")
        return 1
    return 0


def config_error(rank, e):
    """Print a config error's one line on rank 0; the exit status of every rank."""
    if rank == 0:
        where = f" on rank {e.rank}" if getattr(e, "rank", None) is not None else ""
        print(f"psgrad: config error{where}: {e}", file=sys.stderr)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
