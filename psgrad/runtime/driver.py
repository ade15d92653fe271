"""Drivers: the same server and worker code run in one process (local) or across MPI ranks.

Both drivers make the same calls in the same order on the same objects; only
the way bytes move differs, so a local run and an MPI run with the same
config end with bit-identical models and bit counts.
"""
import json
import sys
import time

import numpy as np

from .. import __version__, wire
from ..config import config_hash
from ..errors import ConfigError, MirrorError, PsgradError
from ..schemes import scheme as make_scheme
from ..tasks import make_task
from . import checkpoint
from .results import Recorder
from .phases import Phases
from .server import Server
from .worker import Worker, located

TAG_UPDATE = 7
TAG_STATE = 8  # a worker's part of a checkpoint
TAG_INFO = 9   # a worker's agent metrics at the end of the run
TAG_MODEL = 10  # the model frame, server -> each worker
DEFAULT_LOCAL_WORKERS = 8
ABORT_GRACE = 0.5  # seconds between an error line and MPI_Abort


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
    return make_task(cfg.task, n_agents, cfg.run.seed), build_scheme(cfg)


def build_scheme(cfg):
    """The scheme (with its codec) of a run."""
    return make_scheme(cfg.scheme.name, cfg.scheme.codec, cfg.scheme.codec_params, **cfg.scheme.params)


class Stopped(PsgradError):
    """The run stopped at a round boundary on request (SIGTERM) after writing a checkpoint."""

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


def restore(server, workers, recorder_meta_and_arrays):
    meta, arrays = recorder_meta_and_arrays
    if server is not None:
        server.restore(meta, arrays)
    for w in workers:
        w.restore(meta, arrays)
    return int(meta["round"])


def write_checkpoint(cfg, k, server, recorder, parts, reason):
    """Merge the server's state and the workers' ``parts`` (``(meta, arrays)`` each) into one checkpoint."""
    arrays = {}
    meta = server.snapshot(arrays)
    n = server.n_agents
    privates, private_digests, infos, prev = [None] * n, [None] * n, [], None
    for wmeta, warrays in parts:
        for key, tree in wmeta["privates"].items():
            a = int(key)
            if wmeta["state_digests"][key] != meta["mirror_digests"][a]:
                raise MirrorError(f"agent {a}, round {k}: server and agent scheme states differ at the checkpoint")
            privates[a], private_digests[a] = tree, wmeta["private_digests"][key]
        infos.extend(wmeta["infos"])
        if prev is None and wmeta["has_prev_params"]:
            prev = warrays.pop("prev_params")
        warrays.pop("prev_params", None)
        arrays.update(warrays)
    if any(p is None for p in privates):
        raise PsgradError(f"checkpoint at round {k}: no state from agents {[a for a in range(n) if privates[a] is None]}")
    if prev is not None:
        arrays["prev_params"] = prev
    recorder.add_infos(infos)
    meta.update(round=k, reason=reason, privates=privates, private_digests=private_digests,
                has_prev_params=prev is not None, recorder=recorder.position())
    return checkpoint.save(recorder.dir, meta, arrays, cfg)


def run_local(cfg, task, sc, log=print, timings=None, resume=None, stop=NoStop()):
    """Run the whole job in this process; returns ``(summary, server)``.

    ``resume``: ``(meta, arrays)`` of a checkpoint to continue from. ``stop.requested`` turning true makes
    the run checkpoint at the next round boundary and raise ``Stopped``.
    """
    n_workers = cfg.run.workers
    t_setup = time.perf_counter()
    layout = agent_layout(n_workers, cfg.run.agents_per_worker)
    server = Server(cfg, task, sc, layout, log=log)
    workers = [Worker(cfg, task, sc, r, hosted(layout, r)) for r in range(1, n_workers + 1)]
    recorder = Recorder(cfg, task, len(layout), log, resume=resume and resume[0]["recorder"])
    if resume:
        start = restore(server, workers, resume)
    else:
        start = 0
        recorder.start(server.params)
    timer = RoundTimer(t_setup, timings)
    for p in [server.phases] + [w.phases for w in workers]:
        p.begin()
    for t in range(start, cfg.run.rounds):
        stopping = stop.requested or server.stop_requested
        try:
            save = stopping or checkpoint_due(cfg, t, start)
            with server.phases("broadcast"):
                model = server.model_frame(t, save, stopping)
            params = [w.accept_model(t, model)[0] for w in workers]
            if save:
                with server.phases("checkpoint"):
                    path = write_checkpoint(cfg, t, server, recorder, [w.snapshot() for w in workers],
                                            "stop" if stopping else "scheduled")
                if stopping:
                    raise Stopped(t, path)
            for w, p in zip(workers, params):
                for frame in w.updates(t, p):
                    server.receive(t, frame, w.rank)
            row = server.finish_round(t)
            with server.phases("record"):
                recorder.record(*row, server.params)
        except Exception as e:
            raise located(e, None, t)
        timer.tick()
        server.phases.close_round()
        for w in workers:
            w.phases.close_round()
    timer.phases = server.phases
    return recorder.finish([i for w in workers for i in w.info], timer.summary()), server


def run_mpi(cfg, task, sc, comm, log=print, timings=None, resume=None, stop=NoStop()):
    """Run this rank's part of the job; returns ``(summary, server)`` on rank 0, ``(None, worker)`` elsewhere.

    ``resume`` and ``stop`` as in ``run_local``; every rank gets the same ``resume``.
    """
    rank = comm.Get_rank()
    t_setup = time.perf_counter()
    layout = agent_layout(cfg.run.workers, cfg.run.agents_per_worker)
    timeout = cfg.run.timeout
    worker_ranks = range(1, cfg.run.workers + 1)
    if rank == 0:
        server = Server(cfg, task, sc, layout, log=log)
        phases = server.phases
        model = np.empty(wire.frame_bytes(server.model_bits), np.uint8)
        recorder = Recorder(cfg, task, len(layout), log, resume=resume and resume[0]["recorder"])
        if resume:
            start = restore(server, [], resume)
        else:
            start = 0
            recorder.start(server.params)
        timer = RoundTimer(t_setup, timings, phases)
        # The model goes to each worker point to point and is not waited for: it moves while the server
        # waits for the first gradients (a tree broadcast would need every worker rank awake to forward it).
        sending = []
        phases.begin()
        for t in range(start, cfg.run.rounds):
            stopping = stop.requested or server.stop_requested
            try:
                save = stopping or checkpoint_due(cfg, t, start)
                with phases("broadcast"):
                    # The previous round's sends are long done (every worker has answered); complete them
                    # formally before the buffer is rewritten.
                    wait_all(sending, timeout, f"sending the round-{t - 1} model")
                    server.model_frame(t, save, stopping, out=model)
                    sending = [comm.Isend(model, dest=r, tag=TAG_MODEL) for r in worker_ranks]
                    if save:
                        wait_all(sending, timeout, f"sending the round-{t} model")
                if save:
                    with phases("checkpoint"):
                        parts = [checkpoint.from_bytes(receive_bytes(comm, r, TAG_STATE, timeout,
                                                                     f"the state of rank {r} for the checkpoint"),
                                                       f"rank {r}'s state") for r in worker_ranks]
                        path = write_checkpoint(cfg, t, server, recorder, parts,
                                                "stop" if stopping else "scheduled")
                    if stopping:
                        raise Stopped(t, path)
                for _ in range(len(layout)):
                    with phases("wait"):
                        status = probe(comm, timeout, server)
                    with phases("receive"):
                        buf = server.inbox.take(status.Get_count())
                        comm.Recv(buf, source=status.Get_source(), tag=TAG_UPDATE)
                    server.receive(t, buf, status.Get_source())
                row = server.finish_round(t)
                with phases("record"):
                    recorder.record(*row, server.params)
            except Exception as e:
                raise located(e, None, t)
            timer.tick()
            phases.close_round()
        wait_all(sending, timeout, "sending the last model")
        infos = [i for r in worker_ranks
                 for i in json.loads(receive_bytes(comm, r, TAG_INFO, timeout, f"the agent metrics of rank {r}"))]
        return recorder.finish(infos, timer.summary()), server
    worker = Worker(cfg, task, sc, rank, hosted(layout, rank))
    model = np.empty(wire.frame_bytes(worker.model_bits), np.uint8)
    start = restore(None, [worker], resume) if resume else 0
    phases = worker.phases
    phases.begin()
    # Posted ahead: the next model lands in ``model`` as soon as the server sends it.
    incoming = comm.Irecv(model, source=0, tag=TAG_MODEL) if start < cfg.run.rounds else None
    for t in range(start, cfg.run.rounds):
        # Twice the server's patience: when an agent stalls, the server, which knows who is missing, reports.
        with phases("wait"):
            wait(incoming, 2 * timeout, f"waiting for the round-{t} model")
        worker.stop_requested = stop.requested
        params, flags = worker.accept_model(t, model)
        if flags & wire.FLAG_CHECKPOINT:
            with phases("checkpoint"):
                send_bytes(comm, checkpoint.to_bytes(*worker.snapshot()), TAG_STATE, timeout,
                           f"sending the state for the round-{t} checkpoint")
        if flags & wire.FLAG_STOP:
            raise Stopped(t, None)
        requests = []
        for frame in worker.updates(t, params):
            with phases("send"):
                requests.append(comm.Isend(frame, dest=0, tag=TAG_UPDATE))
        # ``params`` (a view of ``model``) is no longer needed: the next model may arrive into it.
        if t + 1 < cfg.run.rounds:
            incoming = comm.Irecv(model, source=0, tag=TAG_MODEL)
        with phases("send"):
            for req in requests:
                wait(req, timeout, f"sending round {t}")
        phases.close_round()
    send_bytes(comm, json.dumps(worker.info).encode(), TAG_INFO, timeout, "sending the agent metrics")
    return None, worker


def abort(comm, line):
    """Print the error ``line`` to stderr; in an MPI job (``comm`` not None), end every rank (MPI_Abort, status 1).

    The pause first gives the launcher time to forward the line: MPI_Abort kills the job at once, and
    mpiexec may exit before it has read what a rank wrote just before.
    """
    print(line, file=sys.stderr, flush=True)
    if comm is not None:
        time.sleep(ABORT_GRACE)
        comm.Abort(1)


def send_bytes(comm, data, tag, timeout, what):
    """Send ``data`` to rank 0 within ``timeout`` seconds."""
    wait(comm.Isend(np.frombuffer(data, np.uint8), dest=0, tag=tag), timeout, what)


def receive_bytes(comm, source, tag, timeout, what):
    """The bytes of the next message from ``source`` with ``tag``, waiting at most ``timeout`` seconds."""
    from mpi4py import MPI

    status = MPI.Status()
    poll(lambda: comm.Iprobe(source=source, tag=tag, status=status), timeout, f"waiting for {what}")
    buf = np.empty(status.Get_count(), np.uint8)
    comm.Recv(buf, source=source, tag=tag)
    return buf.tobytes()


def handshake(comm, cfg):
    """Refuse to start unless every rank runs the same psgrad version, wire format and config.

    Every rank must arrive within ``run.timeout`` seconds: one that never does
    (stuck in start-up) ends the job with an error instead of a hang.
    """
    mine = [__version__, wire.WIRE_VERSION, config_hash(cfg)]
    everyone = agree(comm, mine, cfg.run.timeout, "for every rank at the start-up handshake")
    for r, theirs in enumerate(everyone):
        if theirs != mine:
            what = "config" if theirs[:2] == mine[:2] else "psgrad version or wire format"
            raise ConfigError(f"rank {r} runs a different {what} than rank {comm.Get_rank()}: "
                              f"{theirs[:2]} config {theirs[2][:12]} vs {mine[:2]} config {mine[2][:12]}")


def agree(comm, obj, timeout, what):
    """``comm.allgather(obj)`` for a small JSON value, raising after ``timeout`` seconds instead of hanging."""
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.empty(comm.Get_size(), np.int64)
    wait(comm.Iallgather(np.array([data.size], np.int64), sizes), timeout, f"waiting {what}")
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    gathered = np.empty(int(sizes.sum()), np.uint8)
    wait(comm.Iallgatherv(data, [gathered, (sizes, offsets)]), timeout, f"waiting {what}")
    return [json.loads(gathered[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]


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


def wait_all(requests, timeout, what):
    """Complete every request of ``requests`` within ``timeout`` seconds."""
    from mpi4py import MPI

    if requests:
        poll(lambda: MPI.Request.Testall(requests), timeout, what)


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
    """Wall time of set-up, the first round (which includes numba compilation) and the rest.

    With ``phases`` (the server's), the summary also says where the rounds after the first went.
    """

    def __init__(self, t_setup, extra=None, phases=None):
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
        if self.phases is not None and len(self.phases.rounds) > 1:
            later = Phases()
            later.rounds = self.phases.rounds[1:]
            out["server_phases_after_first"] = {k: round(v, 6) for k, v in sorted(later.totals().items())}
        return out
