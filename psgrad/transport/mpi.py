"""The MPI transport: the only module of psgrad's runtime that imports mpi4py.

Uplink messages are received as they come (``Iprobe`` for source and size,
then ``Recv`` into a buffer of exactly that size from the server's inbox).
The model goes to each worker point to point and is not waited for: it moves
while the server waits for the first gradients (a tree broadcast would need
every worker rank awake to forward it). Every wait polls with a deadline, so
a rank that is gone ends the run with an error instead of a hang.
"""
import json
import sys
import time

import numpy as np
from mpi4py import MPI

from .. import __version__, wire
from ..config import config_hash
from ..errors import ConfigError, PsgradError

TAG_UPDATE = 7
TAG_STATE = 8   # a worker's part of a checkpoint
TAG_INFO = 9    # a worker's agent metrics at the end of the run
TAG_MODEL = 10  # the model frame, server -> each worker
ABORT_GRACE = 0.5  # seconds between an error line and MPI_Abort


class MpiTransport:
    """This rank's end of the job's messages (see ``psgrad.transport`` for the verbs)."""

    def __init__(self, comm, cfg):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.worker_ranks = list(range(1, comm.Get_size()))
        self.hosted_ranks = [self.rank] if self.rank else []
        self.timeout = cfg.run.timeout
        self.rounds = cfg.run.rounds
        self._sending = []
        self._incoming = None

    def start(self, server, workers, start):
        node = server if self.rank == 0 else workers[0]
        self.phases = node.phases
        self.model = np.empty(wire.frame_bytes(node.max_model_bits), np.uint8)  # any model frame fits
        if self.rank and start < self.rounds:
            # Posted ahead: the next model lands in ``model`` as soon as the server sends it.
            self._incoming = self.comm.Irecv(self.model, source=0, tag=TAG_MODEL)
        self.phases.begin()

    # Server side --------------------------------------------------------------
    def model_buffer(self, t):
        # The previous round's sends are long done (every worker has answered); complete them formally
        # before the buffer is rewritten.
        wait_all(self._sending, self.timeout, f"sending the round-{t - 1} model")
        return self.model

    def send_model(self, t, frame, wait=False):
        self._sending = [self.comm.Isend(frame, dest=r, tag=TAG_MODEL) for r in self.worker_ranks]
        if wait:
            wait_all(self._sending, self.timeout, f"sending the round-{t} model")

    def gather_states(self, t):
        return [(r, receive_bytes(self.comm, r, TAG_STATE, self.timeout, f"the state of rank {r} for the checkpoint"))
                for r in self.worker_ranks]

    def updates(self, t, server):
        status = MPI.Status()
        ready = lambda: self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_UPDATE, status=status)  # noqa: E731
        for _ in range(len(server.expected)):  # the round's reporting agents (federated.Participation)
            with self.phases("wait"):
                try:
                    poll(ready, self.timeout, "")
                except PsgradError:
                    missing = server.missing()
                    ranks = sorted({server.agent_rank[a] for a in missing})
                    raise PsgradError(f"timed out after {self.timeout:g} s waiting for agents {missing} "
                                      f"on ranks {ranks}") from None
            with self.phases("receive"):
                buf = server.inbox.take(status.Get_count())
                source = status.Get_source()
                self.comm.Recv(buf, source=source, tag=TAG_UPDATE)
            yield buf, source

    def gather_infos(self):
        return [i for r in self.worker_ranks
                for i in json.loads(receive_bytes(self.comm, r, TAG_INFO, self.timeout,
                                                  f"the agent metrics of rank {r}"))]

    def finish(self):
        if self.rank == 0:
            wait_all(self._sending, self.timeout, "sending the last model")

    # Worker side --------------------------------------------------------------
    def receive_model(self, t):
        # Twice the server's patience: when an agent stalls, the server, which knows who is missing, reports.
        status = MPI.Status()
        with self.phases("wait"):
            wait(self._incoming, 2 * self.timeout, f"waiting for the round-{t} model", status)
        return self.model[:status.Get_count()]

    def send_state(self, data):
        with self.phases("checkpoint"):
            send_bytes(self.comm, data, TAG_STATE, self.timeout, "sending the state for a checkpoint")

    def send_update(self, frame):
        with self.phases("send"):
            self._sending.append(self.comm.Isend(frame, dest=0, tag=TAG_UPDATE))

    def end_round(self, t):
        if self.rank == 0:
            return
        # The round's model (its parameters were views of it) is no longer needed: the next may arrive.
        if t + 1 < self.rounds:
            self._incoming = self.comm.Irecv(self.model, source=0, tag=TAG_MODEL)
        with self.phases("send"):
            wait_all(self._sending, self.timeout, f"sending round {t}")
        self._sending = []

    def send_infos(self, infos):
        send_bytes(self.comm, json.dumps(infos).encode(), TAG_INFO, self.timeout, "sending the agent metrics")


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
    status = MPI.Status()
    poll(lambda: comm.Iprobe(source=source, tag=tag, status=status), timeout, f"waiting for {what}")
    buf = np.empty(status.Get_count(), np.uint8)
    comm.Recv(buf, source=source, tag=tag)
    return buf.tobytes()


def handshake(comm, cfg, extra=()):
    """Refuse to start unless every rank runs the same psgrad version, wire format, config and ``extra``
    (a JSON value per rank: the plugin set, the task's initial model).

    Every rank must arrive within ``run.timeout`` seconds: one that never does
    (stuck in start-up) ends the job with an error instead of a hang.
    """
    mine = [__version__, wire.WIRE_VERSION, config_hash(cfg), *extra]
    everyone = agree(comm, mine, cfg.run.timeout, "for every rank at the start-up handshake")
    for r, theirs in enumerate(everyone):
        if theirs[:2] != mine[:2]:
            raise ConfigError(f"rank {r} runs a different psgrad version or wire format than rank {comm.Get_rank()}: "
                              f"{theirs[:2]} vs {mine[:2]}")
        if theirs[2] != mine[2]:
            raise ConfigError(f"rank {r} runs a different config than rank {comm.Get_rank()}: "
                              f"config {theirs[2][:12]} vs {mine[2][:12]}")
        for name, a, b in zip(("plugins", "initial model"), theirs[3:], mine[3:]):
            if a != b:
                raise ConfigError(f"rank {r} sees different {name} than rank {comm.Get_rank()}: {a} vs {b}")


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


def wait(request, timeout, what, status=None):
    """Complete an MPI request within ``timeout`` seconds (``status``: filled in for a receive)."""
    poll(lambda: request.Test(status), timeout, what)


def wait_all(requests, timeout, what):
    """Complete every request of ``requests`` within ``timeout`` seconds."""
    if requests:
        poll(lambda: MPI.Request.Testall(requests), timeout, what)
