"""The round schedule: one loop over a transport, the same for a local run and an MPI run.

``run`` builds this process's part of the job (the server on rank 0, a
``Worker`` per hosted worker rank) and drives it through the transport's verbs
(``psgrad.transport``). With ``LocalTransport`` this process hosts every
worker; with ``MpiTransport`` each rank hosts its own part. The server and the
workers make the same calls in the same order on the same objects either way,
so a local run and an MPI run with the same config end with bit-identical
models and bit counts.
"""
import time

from ..errors import ConfigError, PsgradError, located
from ..schemes import scheme as make_scheme, wrap
from ..tasks import make_task
from . import checkpoint
from .phases import Phases
from .results import Recorder
from .server import Server
from .worker import Worker, agent_layout, hosted

DEFAULT_LOCAL_WORKERS = 8


def resolve_workers(cfg, world_size):
    """Fix ``run.workers`` for this launch (the MPI world's worker ranks, or 8 in one process) and with it
    ``run.clients`` when it is 0."""
    if world_size > 1:
        if cfg.run.workers not in (0, world_size - 1):
            raise ConfigError(f"run.workers={cfg.run.workers} but the MPI world has {world_size - 1} worker ranks "
                              f"(launch with mpirun -n {cfg.run.workers + 1}, or leave run.workers at 0)")
        cfg.run.workers = world_size - 1
    elif cfg.run.workers == 0:
        cfg.run.workers = DEFAULT_LOCAL_WORKERS
    if cfg.run.clients == 0:
        cfg.run.clients = cfg.run.workers * cfg.run.agents_per_worker
    return cfg


def build(cfg):
    """The task and scheme of a run (``run.workers`` resolved), identical on every rank."""
    task = build_task(cfg)
    return task, build_scheme(cfg, task)


def build_task(cfg):
    """The task of a run (``run.workers`` resolved)."""
    return make_task(cfg.task, cfg.run.clients, cfg.run.seed)


def build_scheme(cfg, task, codec=None):
    """The scheme of a run around ``codec`` (a Codec object) or the codec the config names, with the
    config's granularity, small-tensor and warm-up settings over ``task``'s tensors."""
    sc = make_scheme(cfg.scheme.name, cfg.scheme.codec if codec is None else codec, cfg.scheme.codec_params,
                     **cfg.scheme.params)
    return wrap_scheme(cfg, sc, task)


def wrap_scheme(cfg, sc, task):
    """``sc`` with the config's ``scheme.granularity``, ``min_size``, ``warmup_rounds`` and ``ema`` over ``task``."""
    s = cfg.scheme
    return wrap(sc, task.flat.shapes, s.granularity, s.min_size, s.warmup_rounds, s.ema)


class Stopped(PsgradError):
    """The run stopped at a round boundary on request (SIGTERM, SIGINT) after writing a checkpoint."""

    def __init__(self, round_, path):
        super().__init__(f"stopped on request after {round_} rounds; checkpoint {path}")
        self.round = round_
        self.path = path


class NoStop:
    """A stop request that never comes (runs without a signal handler)."""

    requested = False


def checkpoint_due(cfg, t, start):
    """Whether the boundary before round ``t`` gets a scheduled checkpoint (never the one resumed from)."""
    every = cfg.run.checkpoint_every
    return bool(every) and t > start and t % every == 0


def run(cfg, task, sc, transport, log=print, timings=None, resume=None, stop=NoStop()):
    """Run this process's part of the job; returns ``(summary, server)`` on rank 0, ``(None, worker)`` elsewhere.

    ``resume``: ``(meta, arrays)`` of a checkpoint to continue from (every rank gets the same one).
    ``stop.requested`` turning true makes the run checkpoint at the next round boundary and raise ``Stopped``.
    """
    t_setup = time.perf_counter()
    layout = agent_layout(cfg.run.workers, cfg.run.clients)
    server = Server(cfg, task, sc, layout, log=log) if transport.rank == 0 else None
    workers = [Worker(cfg, task, sc, r, hosted(layout, r)) for r in transport.hosted_ranks]
    start = checkpoint.restore_run(*resume, server, workers) if resume else 0
    if server is None:
        transport.start(None, workers, start)
        work(cfg, workers[0], transport, start, stop)
        return None, workers[0]
    recorder = Recorder(cfg, task, len(layout), log, resume=resume and resume[0]["recorder"])
    if not resume:
        recorder.start(server.params)
    timer = RoundTimer(t_setup, timings, server.phases)
    transport.start(server, workers, start)
    serve(cfg, server, transport, recorder, start, stop, timer)
    return recorder.finish(transport.gather_infos(), timer.summary()), server


def serve(cfg, server, transport, recorder, start, stop, timer):
    """Rank 0's rounds ``start .. run.rounds - 1`` (DESIGN §1)."""
    phases = server.phases
    for t in range(start, cfg.run.rounds):
        stopping = stop.requested or server.stop_requested
        try:
            save = stopping or checkpoint_due(cfg, t, start)
            with phases("broadcast"):  # Step 1
                frame = server.model_frame(t, save, stopping, out=transport.model_buffer(t))
                transport.send_model(t, frame, wait=save)
            if save:
                with phases("checkpoint"):
                    parts = [checkpoint.from_bytes(data, f"rank {r}'s state")
                             for r, data in transport.gather_states(t)]
                    path = checkpoint.write(cfg, t, server, recorder, parts, "stop" if stopping else "scheduled")
                if stopping:
                    raise Stopped(t, path)
            for buf, source in transport.updates(t, server):  # Steps 2-4 (2-3 on the workers)
                server.receive(t, buf, source)
            row = server.finish_round(t)  # Step 5
            with phases("record"):
                recorder.record(*row, server.params)
        except Exception as e:
            raise located(e, None, t)
        timer.tick()
        phases.close_round()
        transport.end_round(t)
    transport.finish()


def work(cfg, worker, transport, start, stop):
    """A worker rank's rounds: the model in, one frame per hosted agent out (DESIGN §1, steps 2-3)."""
    for t in range(start, cfg.run.rounds):
        model = transport.receive_model(t)
        worker.stop_requested = stop.requested
        frames = worker.serve_round(t, model, transport)
        if frames is None:
            raise Stopped(t, None)
        for frame in frames:
            transport.send_update(frame)
        transport.end_round(t)
        worker.phases.close_round()
    transport.send_infos(worker.info)


def run_local(cfg, task, sc, **kwargs):
    """The whole job in this process (``run`` over a ``LocalTransport``)."""
    from ..transport.local import LocalTransport

    return run(cfg, task, sc, LocalTransport(cfg.run.workers), **kwargs)


def run_mpi(cfg, task, sc, comm, **kwargs):
    """This rank's part of the job in an MPI world (``run`` over an ``MpiTransport``)."""
    from ..transport.mpi import MpiTransport

    return run(cfg, task, sc, MpiTransport(comm, cfg), **kwargs)


class RoundTimer:
    """Wall time of set-up, the first round (which includes numba compilation) and the rest, and where the
    server's rounds after the first went."""

    def __init__(self, t_setup, extra, phases):
        self.t_setup = t_setup
        self.extra = dict(extra or {})
        self.phases = phases
        self.t_first = time.perf_counter()
        self.times = []

    def tick(self):
        self.times.append(time.perf_counter())

    def summary(self):
        first = self.times[0] - self.t_first if self.times else 0.0
        rest = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        out = {**self.extra, "setup": self.t_first - self.t_setup, "first_round": first, "other_rounds": rest}
        if len(self.phases.rounds) > 1:
            later = Phases()
            later.rounds = self.phases.rounds[1:]
            out["server_phases_after_first"] = {k: round(v, 6) for k, v in sorted(later.totals().items())}
        return out
