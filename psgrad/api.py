"""``psgrad.run``: a job from Python, in a notebook (one process) or under mpirun (every rank calls it).

::

    import psgrad
    result = psgrad.run({"run": {"rounds": 50}}, scheme="tpc", codec="qsgd")
    result.summary["uplink_payload_bits"], result.metrics[-1]["test_accuracy"], result.dir

    task = psgrad.TorchTask(model, "cross_entropy", shards, test)      # the user's own model and data
    psgrad.run("configs/x.yaml", task=task, codec=MyCodec(bits=3), overrides=["optim.lr=0.05"])

Under ``mpirun -n N python script.py`` the same call runs rank 0 as the server
and ranks 1..N-1 as workers; rank 0 gets the result, the other ranks None.
A config error raises ``ConfigError`` on every rank (agreed first, so no rank
is left waiting); any other failure under MPI prints one line naming the rank,
agent and round and ends every rank (MPI_Abort), since the other ranks could
not go on.
"""
import copy
import time
from pathlib import Path
from typing import NamedTuple

from . import config as config_mod, plugins, reproducible
from .codecs import Codec
from .errors import ConfigError, PsgradError, describe
from .runtime import checkpoint
from .runtime.loop import (NoStop, Stopped, build_scheme, build_task, resolve_workers, run_local, run_mpi,
                           wrap_scheme)
from .runtime.results import board_writer, claim, read_metrics, release
from .schemes import Scheme


class Result(NamedTuple):
    """What a finished run gives back on rank 0."""

    summary: dict   # summary.json
    metrics: list   # metrics.csv: one dict per round (rows without an evaluation lack its columns)
    dir: Path       # the run folder


def run(config=None, *, task=None, scheme=None, codec=None, overrides=(), resume=None, local=False,
        log=print, stop=None, timings=None):
    """Run a job and return its ``Result`` (rank 0; None on worker ranks).

    ``config``: a dict of sections, a ``Config``, a YAML path, or None (every field's default), then
    ``overrides`` (``"section.key=value"`` strings) on top. ``task``: a ``Task`` object (e.g. a
    ``TorchTask``) instead of ``task.name``; its agents are spread over the workers. ``scheme`` and
    ``codec``: names, or objects (a ``Scheme``, a ``Codec`` subclass of the user's) that replace
    ``scheme.name`` and ``scheme.codec``. ``resume``: a run folder to continue from its checkpoint (pass
    the same objects again). ``local``: one process even when launched under mpirun. ``stop``: an object
    whose ``requested`` turning true stops the run at the next round boundary with a checkpoint
    (``Stopped`` is raised).
    """
    t0 = time.perf_counter()
    comm, world, rank = _world(local)
    mpi = comm if world > 1 else None
    error, timeout = None, config_mod.RunConfig.timeout
    try:
        try:
            cfg, task, sc, state = prepare(config, overrides, resume, world, task, scheme, codec, rank)
            timeout = cfg.run.timeout
            if world > 1:
                from .transport.mpi import handshake

                handshake(comm, cfg, fingerprint(task))
        except ConfigError as e:
            error = str(e)
        if world > 1:
            from .transport.mpi import agree

            errors = agree(comm, error, timeout, "for every rank to check its config")
        else:
            errors = [error]
    except PsgradError as e:  # a rank that never arrived: nothing to agree on
        _fail(mpi, f"psgrad: error on rank {rank}: {e}")
        raise
    if any(errors):
        release()  # no run: no claim on its folder
        first = next(r for r, e in enumerate(errors) if e)
        e = ConfigError(errors[first])
        e.rank = first if world > 1 else None  # where it was found first
        raise e
    if timings is not None:  # building the task and, under MPI, waiting for every rank to have done so
        timings["task_and_handshake"] = time.perf_counter() - t0
    if rank == 0:
        for line in task.determinism_warnings():
            log(f"psgrad: warning: {line}")
    try:
        kwargs = dict(log=log, timings=timings, resume=state, stop=stop or NoStop())
        summary, _ = run_mpi(cfg, task, sc, comm, **kwargs) if mpi else run_local(cfg, task, sc, **kwargs)
    except Stopped:
        raise
    except Exception as e:
        _fail(mpi, f"psgrad: error on rank {rank}{describe(e)}")
        raise
    finally:
        release()
    if summary is None:
        return None
    folder = Path(summary["dir"])
    from .plot import plot_runs

    plot_runs([folder], folder / "metrics.png")
    return Result(summary, read_metrics(folder), folder)


def prepare(config, overrides, resume, world, task=None, scheme=None, codec=None, rank=0):
    """``(cfg, task, scheme, checkpoint or None)`` for this launch; ConfigError for anything the user got wrong.

    Rank 0 also claims the run folder (``results.claim``): locked, and checked before any file in it changes.
    """
    if resume is None:
        cfg = _config(config, overrides)
        previous = None
    else:
        folder = Path(resume)
        if config is not None:
            raise ConfigError("resuming takes the config from the run folder; leave out the config")
        if not (folder / "config.yaml").is_file():
            raise ConfigError(f"cannot resume: {folder} is not a run folder (no config.yaml)")
        for item in overrides:
            key = item.partition("=")[0].strip()
            if key not in checkpoint.RESUMABLE:
                raise ConfigError(f"--set {key} is not allowed with --resume: a resumed run computes what the "
                                  f"original would have; allowed: {', '.join(sorted(checkpoint.RESUMABLE))}")
        cfg = config_mod.load(folder / "config.yaml", overrides)
        cfg.run.results_dir, cfg.run.name = str(folder.parent), folder.name
        previous = folder
    resolve_workers(cfg, world)
    if cfg.run.reproducible:
        reproducible.enable()  # before the task's first torch operation
    if task is None:
        task = build_task(cfg)
    else:
        _fit_agents(cfg, task)
    if isinstance(scheme, Scheme):
        sc = wrap_scheme(cfg, scheme, task)
        cfg.scheme.name = scheme.name
        _name_codec(cfg, scheme.codec)
    else:
        cfg.scheme.name = scheme or cfg.scheme.name
        if isinstance(codec, Codec):
            _name_codec(cfg, codec)
        else:
            cfg.scheme.codec, codec = codec or cfg.scheme.codec, None
        sc = build_scheme(cfg, task, codec)
    sc.check_codec(task.d)  # a codec the scheme refuses is the user's error, found before any rank starts
    if cfg.run.tensorboard:
        board_writer()  # the package is there, or a config error now rather than on rank 0 later
    if rank == 0:
        claim(Path(cfg.run.results_dir) / cfg.run.name, cfg, fresh=previous is None)
    return cfg, task, sc, (None if previous is None else checkpoint.load(previous, cfg, sc, task))


def _config(config, overrides):
    """A fresh ``Config`` from any of the forms ``run`` accepts, with ``overrides`` applied."""
    if isinstance(config, config_mod.Config):
        config = config_mod.to_dict(config)
    if config is None or isinstance(config, (str, Path)):
        return config_mod.load(config, overrides)
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a dict, a Config, a YAML path or None, got {type(config).__name__}")
    return config_mod.from_dict(config_mod.apply_overrides(copy.deepcopy(config), overrides))


def _fit_agents(cfg, task):
    """A given task's agents are the run's clients, spread over the workers."""
    cfg.task.name, cfg.run.clients, cfg.run.agents_per_worker = task.name, task.n_agents, 1


def _name_codec(cfg, codec):
    """Record a codec object's name and parameters in the config (config.yaml, the handshake's hash)."""
    cfg.scheme.codec, cfg.scheme.codec_params = codec.name or type(codec).__name__, dict(codec.params)


def fingerprint(task):
    """What every rank must agree on beyond the config: the plugins it sees and the task's initial model."""
    return [plugins.fingerprint(), task.init_digest()[:16]]


def _world(local):
    """``(comm, world size, rank)``: one process, or this rank of an MPI job."""
    if local:
        return None, 1, 0
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm, comm.Get_size(), comm.Get_rank()


def _fail(comm, line):
    """Under MPI, print ``line`` and end every rank; in one process, nothing (the caller raises)."""
    if comm is not None:
        from .transport.mpi import abort

        abort(comm, line)
