"""The parameter server: the model, the optimizer, and a mirror of every agent's scheme state.

One round, as the round loop (loop.py) calls it::

    frame = server.model_frame(t)            # Step 1: the model, down to every worker
    server.receive(t, buf, source)           # Step 4: each agent's message, in any order
    row = server.finish_round(t)             # Step 5: aggregate, step, account, evaluate

Messages are decoded as they arrive; the aggregate is summed in agent order,
so the result does not depend on arrival order and an MPI run equals a local
run bit for bit.

Messages arrive in buffers lent by the server's ``Inbox`` (a pool: no
allocation per message). When ``g_hat`` is the payload itself (a stateless
scheme with fp32, whose reconstruct is the identity on the payload's float32),
nothing is decoded and the frame check is not a pass of its own: it rides on
the pass that adds the payload to the sum, when the message's turn comes. A
message that arrives before its turn keeps its inbox buffer until then, so each
payload is read once, whatever the arrival order. Under
``run.bad_message: stop`` a failed check ends the run, so a sum it spoilt does
not matter; a message that arrives before its turn is checked, at the latest,
before any other error of the round is reported, since a corrupted header can
be the cause of that error. Under ``drop`` a message is checked on arrival, a
pass of its own, so that a bad one never touches the sum.

A payload that decodes to a NaN or an infinity is bad input too (a sender
checks its gradient before encoding): a decoded ``g_hat`` is tested after
``reconstruct``, a raw one on arrival under ``drop`` and by the pass that adds
it under ``stop``.

Bad input (``run.bad_message``): with ``stop`` any message that fails
validation or decoding ends the run with an error naming the agent and round;
with ``drop`` it is dropped, the agent contributes nothing this round, its
mirror stays as it was, and the next model frame tells the agent to roll its
own state back by one round (wire FLAG_DROPS), so the two copies stay equal.
A well-formed SKIPPED message (the agent's gradient was not finite under
``run.nonfinite: skip``) contributes nothing and leaves the mirror unchanged.
"""
from typing import NamedTuple

import numpy as np

from .. import wire
from ..codecs.base import Encoded, Key
from ..errors import ConfigError, DecodeError, MirrorError, PsgradError, WireError, located
from ..schemes import Context, digest
from .accounting import Ledger, Totals, max_update_bytes, message_record
from .downlink import Downlink, link_digest, with_bits
from .federated import Clock, Participation
from .store import StateStore
from .kernels import all_finite, axpy, sqdist
from . import optim
from .phases import Phases


class ServerState(NamedTuple):
    """Everything of the server that a checkpoint holds: a new field here is a new field in every checkpoint."""

    params: np.ndarray    # float32[d], the model
    optim: tuple          # the optimizer's state
    mirrors: tuple        # each agent's mirrored scheme state, in agent order
    ledger: tuple         # ``Totals``: the cumulative bit counters
    model_delta_sq: float  # ||w_hat_t - w_hat_{t-1}||^2 of the workers' last two models (schemes' Context)
    downlink: tuple       # (mirrored, private) state of the downlink scheme before the round's model frame
    sim_time: float       # simulated seconds of the rounds so far (the clock; 0 without one)


class Raw(NamedTuple):
    """In place of ``g_hat``: a payload that is ``g_hat`` as it lies in the frame, added when its turn comes.

    ``checked``: its frame check was already verified; if not, the pass that adds it verifies it.
    """

    buf: np.ndarray
    frame: wire.Frame
    checked: bool


class Inbox:
    """Receive buffers for uplink messages, lent and given back: no allocation per message once the pool
    holds buffers as large as the messages.

    There are as many buffers as messages held at once: at most one more than the messages held back for
    their turn. A free buffer too small for a message is dropped for a new one of the message's size.
    """

    def __init__(self, limit):
        self.limit = limit
        self.free = []
        self.lent = {}  # id(buffer) -> buffer

    def take(self, nbytes):
        """A uint8 view of exactly ``nbytes`` bytes (a message over the limit is received whole, then refused)."""
        if nbytes > self.limit:
            return np.empty(nbytes, np.uint8)
        buf = self.free.pop() if self.free else None
        if buf is None or buf.shape[0] < nbytes:
            buf = np.empty(nbytes, np.uint8)
        self.lent[id(buf)] = buf
        return buf[:nbytes]

    def owns(self, view):
        """Whether ``view`` lies in a buffer lent by ``take`` and not given back yet."""
        return self.lent.get(id(view.base)) is view.base is not None

    def give_back(self, view):
        """Return ``view``'s buffer to the pool; for a view of anything else, or given back already: nothing."""
        if self.owns(view):
            self.free.append(self.lent.pop(id(view.base)))


class Server:
    def __init__(self, cfg, task, scheme, agent_rank, log=None):
        # What the run is
        self.cfg = cfg
        self.task = task
        self.scheme = scheme
        self.agent_rank = agent_rank  # agent id -> worker rank that hosts it
        self.n_agents = len(agent_rank)
        self.worker_ranks = sorted(set(agent_rank))
        self.d = task.d
        self.log = log or (lambda line: None)
        self.drop_bad = cfg.run.bad_message == "drop"
        # The downlink: the workers' copy of the model is what it reconstructs
        self.downlink = Downlink(cfg, self.d)
        self.max_model_bits = self.downlink.max_bits + (self.n_agents if self.drop_bad else 0)
        self.sent = None          # the workers' model of the last frame (None: none sent by this process)
        self.down_before = None   # (state, private) of the downlink before the last frame: what a checkpoint holds
        self.model_bits = 0       # payload bits of the last model frame
        self.max_frame_bytes = max_update_bytes(self.d)
        # The model and its optimizer
        self.params = task.init_params()
        self.optim = optim.make(cfg.optim, cfg.run.rounds)
        self.optim_state = self.optim.init(self.d)
        # Mirrored scheme state, one per agent
        self.mirrors = StateStore(scheme.init(self.d)[0], cfg.run.mirror_memory * 2**20)
        # Who takes part in each round, and how long it takes on the simulated clock
        self.participation = Participation(cfg, task.agent_sizes)
        if self.participation.k < self.n_agents and not self.downlink.stateless:
            raise ConfigError(f"downlink.scheme={cfg.downlink.scheme} keeps one model copy in step with the server "
                              f"every round; with run.clients_per_round a client would miss its updates: use "
                              f"downlink.scheme=direct")
        self.stale = cfg.run.absent == "stale"
        if self.stale and scheme.estimate(scheme.init(self.d)[0]) is None:
            raise ConfigError(f"run.absent=stale needs a scheme that keeps a server-side estimate of each client "
                              f"(ef21, lag, diana); {scheme.name!r} keeps none")
        self.clock = Clock(cfg, task.agent_sizes)
        self.sim_time = 0.0
        self.sizes = np.asarray(task.agent_sizes, np.float64)
        self.weighted = cfg.run.aggregate == "weighted"
        self.weights = self.round_weights(np.arange(self.n_agents))
        # Per-round scratch: contributions (None: nothing; Raw: a payload still in its frame) waiting for their
        # turn in the agent-ordered sum
        self.acc = np.zeros(self.d, np.float32)
        self.raw = scheme.g_hat_is_payload  # fp32 payloads are added as they lie in the frame, nothing decoded
        self.inbox = Inbox(self.max_frame_bytes)
        self.pending = {}
        self.plan = None          # the round's cohort and who of it reports (federated.Plan)
        self.expected = set()     # agents whose message the round waits for
        self.order = []           # agents whose contributions enter the sum, in agent order ...
        self.next = 0             # ... and how many of them are in it
        self.heard = set()        # agents whose message of the round was accepted
        self.late = set()         # ... of them, those that reported after the deadline
        self.round_seconds = 0.0  # the slowest report of the round on the simulated clock
        self.messages = []
        self.skipped = set()
        self.dropped = set()       # agents whose message of the round was dropped
        self.dropped_messages = 0  # messages of the round dropped (a second message from an agent included)
        self.last_dropped = set()  # ... of the previous round: the next model frame says so
        self.stop_requested = False  # a worker rank asked to stop (SIGTERM)
        # Accounting
        self.ledger = Ledger()
        self.model_delta_sq = 0.0
        self.phases = Phases()

    # Step 1 -----------------------------------------------------------------
    def model_frame(self, t, checkpoint=False, stop=False, out=None):
        """The model frame of round ``t`` (once per round: the downlink's state advances); ``checkpoint``/``stop``
        ask workers for their state and to stop.

        ``out``: a uint8 buffer at least as long as the frame to write it into (none allocated).
        """
        flags = (wire.FLAG_CHECKPOINT if checkpoint else 0) | (wire.FLAG_STOP if stop else 0)
        if not stop:
            self.begin_round(t)
        self.down_before = (self.downlink.state, self.downlink.private)
        with self.phases("downlink"):
            payload, w_hat = self.downlink.encode(self.params, t)
        # The schemes' model change is the workers' (both sides compute it from what was sent); after a
        # resume the first one comes from the checkpoint.
        if self.sent is not None:
            self.model_delta_sq = sqdist(w_hat, self.sent)
        self.sent = w_hat
        data, nbits = payload.data, payload.nbits
        if self.drop_bad:
            flags |= wire.FLAG_DROPS
            bits = np.zeros(self.n_agents, np.uint8)
            bits[sorted(self.last_dropped)] = 1
            data, nbits = with_bits(payload, bits)
        self.model_bits = nbits
        if out is not None:
            out = out[:wire.frame_bytes(nbits)]
        return wire.pack(wire.Kind.MODEL, t, wire.ALL_AGENTS, data, nbits, flags=flags, out=out)

    def round_weights(self, agents):
        """Each agent's weight in an aggregate over ``agents``: by data size, or equal; zero for the others."""
        w = np.zeros(self.n_agents)
        if len(agents):
            w[agents] = self.sizes[agents] / self.sizes[agents].sum() if self.weighted else 1.0 / len(agents)
        return w

    def begin_round(self, t):
        """Round ``t``'s participants: who is waited for and who enters the sum (absent clients' estimates too,
        under ``run.absent: stale``, queued now)."""
        self.plan = self.participation.plan(t)
        self.expected = set(self.plan.reporting.tolist())
        if self.stale:
            self.order = list(range(self.n_agents))
        else:
            self.order = self.plan.reporting.tolist()
            if not self.participation.full:
                self.weights = self.round_weights(self.plan.reporting)
        self.next = 0
        for a in self.order:
            if a not in self.expected:
                self._queue(a, self.scheme.estimate(self.mirrors[a]))

    # Step 4 -----------------------------------------------------------------
    def receive(self, t, buf, source):
        """Validate, decode and queue one agent's message of round ``t`` received from rank ``source``.

        ``buf``: a view from ``self.inbox.take``, handed over (the server gives it back when done with it),
        or any other buffer, only read during the call (a message held back for its turn is copied).
        """
        kept = False
        try:
            kept = self._receive(t, buf, source)
        except DecodeError as e:  # WireError included: the message, not the server, is at fault
            if not self.drop_bad:
                self._verify_held()
                raise
            self.dropped_messages += 1
            self.log(f"round {t}: dropped a message from rank {source}: {e}")
        except PsgradError:
            self._verify_held()
            raise
        finally:
            if not kept:
                self.inbox.give_back(buf)

    def _receive(self, t, buf, source):
        """Validate and accept one message; True when the server keeps ``buf`` (a Raw payload held back)."""
        if len(buf) > self.max_frame_bytes:
            raise WireError(f"oversized message of {len(buf)} bytes from rank {source} in round {t} "
                            f"(at most {self.max_frame_bytes} for d={self.d})")
        with self.phases("check"):
            frame = self._parse(buf, source, t)
            raw = self.raw and frame.nbits == 32 * self.d
            if not raw or self.drop_bad:  # raw under stop: checked by the pass that adds it to the sum
                self._verify(buf, frame, source, t)
        a = frame.agent
        if frame.kind != wire.Kind.UPDATE:
            raise WireError(f"expected an UPDATE message, got {frame.kind.name} (agent {a}, round {frame.round})")
        if a >= self.n_agents or self.agent_rank[a] != source:
            raise WireError(f"message from rank {source} claims agent {a}, which that rank does not host "
                            f"(round {frame.round})")
        if frame.round != t:
            raise WireError(f"message for round {frame.round} arrived in round {t} (agent {a})")
        if a not in self.expected:
            raise WireError(f"message from agent {a}, which does not report in round {t} (not sampled, or dropped "
                            f"out)")
        if a in self.heard:
            raise WireError(f"second message from agent {a} in round {t}")
        return self._accept(t, buf, frame, Raw(buf, frame, self.drop_bad) if raw else None)

    def _parse(self, buf, source, t):
        try:
            return wire.parse(buf, verify=False)
        except WireError as e:
            raise located(WireError(f"bad message from rank {source} in round {t}: {e}"), None, t) from None

    def _verify(self, buf, frame, source, t, accumulate=None):
        """``wire.verify_frame`` with the error located; returns whether every float32 it added was finite."""
        try:
            return wire.verify_frame(buf, frame, accumulate=accumulate)
        except WireError as e:
            raise located(WireError(f"bad message from rank {source} in round {t}: {e}"), frame.agent, t) from None

    def _verify_held(self):
        """Verify every message held back unchecked: a corrupted one explains a later error, so it goes first."""
        for a, g in self.pending.items():
            if isinstance(g, Raw) and not g.checked:
                with self.phases("check"):
                    self._verify(g.buf, g.frame, self.agent_rank[a], g.frame.round)
                self.pending[a] = g._replace(checked=True)

    def _accept(self, t, buf, frame, raw):
        """Reconstruct and queue a ``frame`` (``raw``: its payload as a Raw ``g_hat``, or None to decode it).

        True when the server keeps ``buf`` (the raw payload waits for its turn).
        """
        a = frame.agent
        try:
            g_hat, state = self._reconstruct(a, t, frame, raw)
        except Exception as e:
            raise located(e, a, t)
        if frame.flags & wire.FLAG_STOP_REQUEST:
            self.stop_requested = True
        self.heard.add(a)
        if frame.flags & wire.FLAG_LATE:  # not a message: the client's report missed the deadline
            self.late.add(a)
            return self._queue(a, self.scheme.estimate(self.mirrors[a]) if self.stale else None)
        self.mirrors[a] = state
        self.messages.append(message_record(t, frame, len(buf), "skipped" if g_hat is None else "ok"))
        self.round_seconds = max(self.round_seconds, self.clock.seconds(a, self.model_bits, frame.nbits))
        return self._queue(a, g_hat)

    def _reconstruct(self, a, t, frame, raw):
        """``(g_hat, new_mirror)``; ``g_hat`` None for a skipped round. The mirror is not touched here."""
        if frame.flags & (wire.FLAG_SKIPPED | wire.FLAG_LATE):
            g_hat, state = None, self.mirrors[a]
            self.skipped.add(a)
        elif raw is not None:
            g_hat, state = raw, self.mirrors[a]  # a stateless scheme's state does not change
            # Checked on arrival (drop): tested here, so that a NaN never enters the sum; unchecked (stop): the
            # pass that adds it tests it
            if raw.checked:
                self._require_finite(frame.payload.view(np.float32), a, t)
        else:
            ctx = Context(self.key(a, t), self.d, self.model_delta_sq)
            with self.phases("decode"):
                g_hat, state = self.scheme.reconstruct(self.mirrors[a], Encoded(frame.payload, frame.nbits), ctx)
            self._require_finite(g_hat, a, t)
        if frame.digest is not None and self._digest(state) != frame.digest:
            copy = "" if self.downlink.stateless else f", or rank {self.agent_rank[a]}'s model copy and the server's,"
            raise MirrorError(f"agent {a}, round {t}: server and agent scheme states{copy} differ (digest mismatch)")
        return g_hat, state

    def _require_finite(self, g_hat, a, t):
        """A NaN or an infinity in a decoded update is a bad message (a sender checks its gradient first)."""
        with self.phases("check"):
            if not all_finite(g_hat):
                raise DecodeError(f"agent {a}, round {t}: the update decodes to values that are not finite "
                                  f"(NaN or infinity)")

    def _digest(self, state):
        with self.phases("digest"):
            return link_digest(digest(state), self.downlink.digest())

    def _queue(self, a, g_hat):
        """Hold ``g_hat`` (None: no contribution) until every lower agent's turn in the sum has come.

        True when a Raw ``g_hat`` is held back in its own buffer (one not from the inbox is copied into one).
        """
        self.pending[a] = g_hat
        while self.next < len(self.order) and self.order[self.next] in self.pending:
            b = self.order[self.next]
            self._add(b, self.pending.pop(b))
            self.next += 1
        if a not in self.pending or not isinstance(g_hat, Raw):
            return False
        if not self.inbox.owns(g_hat.buf):
            buf = self.inbox.take(len(g_hat.buf))
            buf[:] = g_hat.buf
            self.pending[a] = Raw(buf, wire.parse(buf, verify=False), g_hat.checked)
            return False
        return True

    def _add(self, a, g):
        """Add agent ``a``'s contribution to the sum."""
        if g is None:
            return
        with self.phases("aggregate"):
            if not isinstance(g, Raw):
                axpy(self.acc, self.weights[a], g)
                return
            try:
                if g.checked:
                    axpy(self.acc, self.weights[a], g.frame.payload.view(np.float32))
                elif not self._verify(g.buf, g.frame, self.agent_rank[a], g.frame.round,
                                      accumulate=(self.acc, self.weights[a])):
                    # Only under stop, which ends the run: the sum it spoilt is never used
                    raise located(DecodeError(f"agent {a}, round {g.frame.round}: the update decodes to values that "
                                              f"are not finite (NaN or infinity)"), a, g.frame.round)
            finally:
                self.inbox.give_back(g.buf)

    def key(self, agent, t):
        return Key(self.cfg.run.seed, agent, t)

    def missing(self):
        """Agents whose message of the current round has not arrived yet."""
        return [a for a in self.order[self.next:] if a not in self.pending]

    # Step 5 -----------------------------------------------------------------
    def finish_round(self, t):
        """Aggregate, step the optimizer, close the round's accounting; return its metrics row."""
        if self.next != len(self.order):
            if not self.drop_bad:
                self._verify_held()
                raise WireError(f"round {t} closed without messages from agents {self.missing()}")
            for a in self.missing():  # their messages were dropped: the mirrors stay as they were
                self.dropped.add(a)
                self._queue(a, None)
        if self.late and not self.stale:  # the weights were the expected reporters': renormalise to those who did
            on_time = sum(self.weights[a] for a in self.expected - self.late)
            if on_time:
                with self.phases("aggregate"):
                    self.acc *= np.float32(1.0 / on_time)
        lr = self.optim.lr(t)
        with self.phases("step"):
            new_params, self.optim_state = self.optim.step(self.optim_state, self.params, self.acc, t)
            self.params = new_params
        n_workers = len(self.worker_ranks)
        losses = np.full(self.n_agents, np.nan)
        for m in self.messages:
            losses[m["agent"]] = m["loss"]
        absent = self.skipped | self.dropped | self.late | (set(range(self.n_agents)) - self.expected)
        row = {"round": t + 1, "lr": lr, "agent_loss": agent_loss(self.weights, losses, absent)}
        row.update(self.ledger.close_round(self.messages, self.model_bits * len(self.plan.cohort),
                                           wire.frame_bytes(self.model_bits) * n_workers))
        row.update(skipped=len(self.skipped), dropped=self.dropped_messages, sampled=len(self.plan.cohort),
                   dropouts=len(self.plan.cohort) - len(self.expected) + len(self.late))
        if self.clock.enabled:
            self.sim_time += self.clock.deadline if self.late else self.round_seconds
            row["sim_time"] = self.sim_time
        messages, self.messages = self.messages, []
        with self.phases("aggregate"):
            self.acc[:] = 0
        self.next = 0
        self.heard, self.late, self.round_seconds = set(), set(), 0.0
        self.dropped_messages = 0
        self.last_dropped, self.dropped, self.skipped = self.dropped, set(), set()
        return row, messages

    # Checkpoints --------------------------------------------------------------
    def state(self):
        """The server's part of a checkpoint, as one value (see ``ServerState``)."""
        down = self.down_before or (self.downlink.state, self.downlink.private)
        return ServerState(self.params, self.optim_state, self.mirrors.values(range(self.n_agents)),
                           Totals(**self.ledger.totals),
                           self.model_delta_sq, down, self.sim_time)

    def load_state(self, state):
        """Continue from ``state`` (a ``ServerState`` restored by ``checkpoint.restore``)."""
        if len(state.mirrors) != self.n_agents:
            raise ConfigError(f"checkpoint has {len(state.mirrors)} agents, this run {self.n_agents}")
        self.params, self.optim_state = state.params, state.optim
        self.mirrors.replace(dict(enumerate(state.mirrors)))
        self.ledger.totals.update(state.ledger._asdict())
        self.model_delta_sq = state.model_delta_sq
        self.downlink.state, self.downlink.private = state.downlink
        self.sim_time = float(state.sim_time)
        self.sent = self.down_before = None


def agent_loss(weights, losses, absent):
    """Weighted mean of the agents' losses; agents that skipped or were dropped are left out."""
    if not absent:
        return float(np.dot(weights, losses))
    present = np.array([a not in absent for a in range(len(weights))])
    if not present.any():
        return float("nan")
    w = weights[present]
    return float(np.dot(w, losses[present]) / w.sum())
