"""Drivers: the same server and worker code run in one process (local) or across MPI ranks.

Both drivers make the same calls in the same order on the same objects; only
the way bytes move differs, so a local run and an MPI run with the same
config end with bit-identical models and bit counts.
"""
import time

import numpy as np

from .. import __version__, wire
from ..config import config_hash
from ..errors import ConfigError, PsgradError
from ..schemes import scheme as make_scheme
from ..tasks import make_task
from .results import Recorder
from .server import Server
from .worker import Worker, located

TAG_UPDATE = 7
DEFAULT_LOCAL_WORKERS = 8


def agent_layout(n_workers, agents_per_worker):
    """``agent_rank[a]``: the worker rank (1-based) hosting agent ``a``; agents are numbered rank by rank."""
    return [1 + a // agents_per_worker for a in range(n_workers * agents_per_worker)]


def hosted(layout, rank):
    """The agents that worker ``rank`` hosts."""
    return [a for a, r in enumerate(layout) if r == rank]


def resolve_workers(cfg, world_size):
    """Fix ``run.workers`` for this launch: the MPI world's worker ranks, or 8 in one process."""
    if world_size > 1:
        if cfg.run.workers not in (0, world_size - 1):
            raise ConfigError(f"run.workers={cfg.run.workers} but the MPI world has {world_size - 1} worker ranks "
                              f"(launch with mpirun -n {cfg.run.workers + 1}, or leave run.workers at 0)")
        cfg.run.workers = world_size - 1
    elif cfg.run.workers == 0:
        cfg.run.workers = DEFAULT_LOCAL_WORKERS
    return cfg


def build(cfg):
    """The task and scheme of a run (``run.workers`` resolved), identical on every rank."""
    n_agents = cfg.run.workers * cfg.run.agents_per_worker
    task = make_task(cfg.task, n_agents, cfg.run.seed)
    sc = make_scheme(cfg.scheme.name, cfg.scheme.codec, cfg.scheme.codec_params, **cfg.scheme.params)
    return task, sc


def run_local(cfg, task, sc, log=print, timings=None):
    """Run the whole job in this process; returns ``(summary, server)``."""
    n_workers = cfg.run.workers
    t_setup = time.perf_counter()
    layout = agent_layout(n_workers, cfg.run.agents_per_worker)
    server = Server(cfg, task, sc, layout)
    workers = [Worker(cfg, task, sc, r, hosted(layout, r)) for r in range(1, n_workers + 1)]
    recorder = Recorder(cfg, task, len(layout), log)
    recorder.start(server.params)
    timer = RoundTimer(t_setup, timings)
    for t in range(cfg.run.rounds):
        try:
            model = server.model_frame(t)
            for w in workers:
                for frame in w.round(t, model):
                    server.receive(t, frame, w.rank)
            recorder.record(*server.finish_round(t), server.params)
        except Exception as e:
            raise located(e, None, t)
        timer.tick()
    return recorder.finish([i for w in workers for i in w.info], timer.summary()), server


def run_mpi(cfg, task, sc, comm, log=print, timings=None):
    """Run this rank's part of the job; returns ``(summary, server)`` on rank 0, ``(None, worker)`` elsewhere."""
    rank = comm.Get_rank()
    t_setup = time.perf_counter()
    layout = agent_layout(cfg.run.workers, cfg.run.agents_per_worker)
    model = np.empty(wire.frame_bytes(32 * task.d), np.uint8)
    timeout = cfg.run.timeout
    if rank == 0:
        server = Server(cfg, task, sc, layout)
        recorder = Recorder(cfg, task, len(layout), log)
        recorder.start(server.params)
        timer = RoundTimer(t_setup, timings)
        for t in range(cfg.run.rounds):
            try:
                model[:] = server.model_frame(t)
                wait(comm.Ibcast(model, root=0), timeout, f"broadcasting the round-{t} model")
                for _ in range(len(layout)):
                    status = probe(comm, timeout, server)
                    buf = np.empty(status.Get_count(), np.uint8)
                    comm.Recv(buf, source=status.Get_source(), tag=TAG_UPDATE)
                    server.receive(t, buf, status.Get_source())
                recorder.record(*server.finish_round(t), server.params)
            except Exception as e:
                raise located(e, None, t)
            timer.tick()
        infos = [i for part in comm.gather([], root=0) for i in part]
        return recorder.finish(infos, timer.summary()), server
    worker = Worker(cfg, task, sc, rank, hosted(layout, rank))
    for t in range(cfg.run.rounds):
        # Twice the server's patience: when an agent stalls, the server, which knows who is missing, reports.
        wait(comm.Ibcast(model, root=0), 2 * timeout, f"waiting for the round-{t} model")
        requests = [comm.Isend(frame, dest=0, tag=TAG_UPDATE) for frame in worker.round(t, model)]
        for req in requests:
            wait(req, timeout, f"sending round {t}")
    comm.gather(worker.info, root=0)
    return None, worker


def handshake(comm, cfg):
    """Refuse to start unless every rank runs the same psgrad version, wire format and config."""
    mine = (__version__, wire.WIRE_VERSION, config_hash(cfg))
    everyone = comm.allgather(mine)
    for r, theirs in enumerate(everyone):
        if theirs != mine:
            what = "config" if theirs[:2] == mine[:2] else "psgrad version or wire format"
            raise ConfigError(f"rank {r} runs a different {what} than rank {comm.Get_rank()}: "
                              f"{theirs[:2]} config {theirs[2][:12]} vs {mine[:2]} config {mine[2][:12]}")


def poll(ready, timeout, what):
    """Call ``ready()`` until it is true, backing off to 1 ms; raise after ``timeout`` seconds, never hang."""
    deadline = time.monotonic() + timeout
    pause = 1e-5
    while not ready():
        if time.monotonic() > deadline:
            raise PsgradError(f"timed out after {timeout:g} s {what}")
        time.sleep(pause)
        pause = min(2 * pause, 1e-3)


def wait(request, timeout, what):
    """Complete an MPI request within ``timeout`` seconds."""
    poll(request.Test, timeout, what)


def probe(comm, timeout, server):
    """Wait for the next uplink message from any rank; return its status (source, byte count)."""
    from mpi4py import MPI

    status = MPI.Status()
    ready = lambda: comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_UPDATE, status=status)  # noqa: E731
    try:
        poll(ready, timeout, "")
    except PsgradError:
        missing = server.missing()
        ranks = sorted({server.agent_rank[a] for a in missing})
        raise PsgradError(f"timed out after {timeout:g} s waiting for agents {missing} on ranks {ranks}") from None
    return status


class RoundTimer:
    """Wall time of set-up, the first round (which includes numba compilation) and the rest."""

    def __init__(self, t_setup, extra=None):
        self.t_setup = t_setup
        self.extra = dict(extra or {})
        self.t_first = time.perf_counter()
        self.times = []

    def tick(self):
        self.times.append(time.perf_counter())

    def summary(self):
        first = self.times[0] - self.t_first if self.times else 0.0
        rest = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return {**self.extra, "setup": self.t_first - self.t_setup, "first_round": first, "other_rounds": rest}
