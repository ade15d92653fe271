"""The parameter server: the model, the optimizer, and a mirror of every agent's scheme state.

One round, as the drivers call it::

    frame = server.model_frame(t)            # Step 1: the model, down to every worker
    server.receive(t, buf, source)           # Step 4: each agent's message, in any order
    row = server.finish_round(t)             # Step 5: aggregate, step, account, evaluate

Messages are decoded as they arrive; the aggregate is summed in agent order,
so the result does not depend on arrival order and an MPI run equals a local
run bit for bit.

When ``g_hat`` is the payload itself (a stateless scheme with fp32, whose
reconstruct is the identity on the payload's float32), the frame check is not
a pass of its own but rides on the payload's first read: a message whose turn
in the sum has come is checked by the pass that adds it to the sum (under
``run.bad_message: stop``, where a failed check ends the run, so a spoilt sum
does not matter); any other is checked by the pass that copies it into a
decode buffer from a small pool, decoded in place, and added when its turn
comes, the buffer then going back to the pool. Either way: no allocation, and
one read of the message (two when held back).

Bad input (``run.bad_message``): with ``stop`` any message that fails
validation or decoding ends the run with an error naming the agent and round;
with ``drop`` it is dropped, the agent contributes nothing this round, its
mirror stays as it was, and the next model frame tells the agent to roll its
own state back by one round (wire FLAG_DROPS), so the two copies stay equal.
A well-formed SKIPPED message (the agent's gradient was not finite under
``run.nonfinite: skip``) contributes nothing and leaves the mirror unchanged.
"""
import numpy as np

from .. import wire
from ..codecs.base import Encoded, Key
from ..errors import ConfigError, DecodeError, MirrorError, WireError
from ..schemes import Context, digest
from .accounting import Ledger, max_update_bytes, message_record, model_bits
from . import checkpoint
from .kernels import axpy, sqdist
from .worker import located
from .optim import Sgd
from .phases import Phases


# In place of ``g_hat``: the payload was added to the sum by the pass that checked it.
SUMMED = object()


class Server:
    def __init__(self, cfg, task, scheme, agent_rank, log=None):
        # What the run is
        self.cfg = cfg
        self.task = task
        self.scheme = scheme
        self.agent_rank = agent_rank  # agent id -> worker rank that hosts it
        self.n_agents = len(agent_rank)
        self.d = task.d
        self.log = log or (lambda line: None)
        self.drop_bad = cfg.run.bad_message == "drop"
        self.model_bits = model_bits(self.d, self.n_agents, self.drop_bad)
        self.max_frame_bytes = max_update_bytes(self.d)
        # The model and its optimizer
        self.params = task.init_params()
        self.optim = Sgd(cfg.optim, cfg.run.rounds)
        self.optim_state = self.optim.init(self.d)
        # Mirrored scheme state, one per agent
        self.mirrors = [scheme.init(self.d)[0] for _ in range(self.n_agents)]
        sizes = np.asarray(task.agent_sizes, np.float64)
        self.weights = sizes / sizes.sum() if cfg.run.aggregate == "weighted" else np.full(self.n_agents,
                                                                                           1.0 / self.n_agents)
        # Per-round scratch: decoded contributions (None: nothing) waiting for their turn in the agent-ordered sum
        self.acc = np.zeros(self.d, np.float32)
        self.in_place = scheme.g_hat_is_payload  # check and copy the payload in one pass, decode in place
        self.buffers = []  # free float32[d] decode buffers (in_place): at most one per message held back
        self.pending = {}
        self.next_agent = 0
        self.messages = []
        self.skipped = set()
        self.dropped = set()       # agents whose message of the round was dropped
        self.last_dropped = set()  # ... of the previous round: the next model frame says so
        self.stop_requested = False  # a worker rank asked to stop (SIGTERM)
        # Accounting
        self.ledger = Ledger()
        self.model_delta_sq = 0.0
        self.phases = Phases()

    # Step 1 -----------------------------------------------------------------
    def model_frame(self, t, checkpoint=False, stop=False, out=None):
        """The model of round ``t``; ``checkpoint``/``stop`` ask workers for their state and to stop.

        ``out``: a uint8 buffer of the frame's length to write the frame into (none allocated).
        """
        flags = (wire.FLAG_CHECKPOINT if checkpoint else 0) | (wire.FLAG_STOP if stop else 0)
        data = self.params.view(np.uint8)
        if self.drop_bad:
            flags |= wire.FLAG_DROPS
            bits = np.zeros(self.n_agents, np.uint8)
            bits[sorted(self.last_dropped)] = 1
            data = np.concatenate([data, np.packbits(bits, bitorder="little")])
        return wire.pack(wire.Kind.MODEL, t, wire.ALL_AGENTS, data, self.model_bits, flags=flags, out=out)

    # Step 4 -----------------------------------------------------------------
    def receive(self, t, buf, source):
        """Validate, decode and queue one agent's message of round ``t`` received from rank ``source``."""
        try:
            self._receive(t, buf, source)
        except DecodeError as e:  # WireError included: the message, not the server, is at fault
            if not self.drop_bad:
                raise
            self.log(f"round {t}: dropped a message from rank {source}: {e}")

    def _receive(self, t, buf, source):
        if len(buf) > self.max_frame_bytes:
            raise WireError(f"oversized message of {len(buf)} bytes from rank {source} in round {t} "
                            f"(at most {self.max_frame_bytes} for d={self.d})")
        try:
            with self.phases("check"):
                frame = wire.parse(buf, verify=False)
                raw = self.in_place and frame.nbits == 32 * self.d  # checked below, by the payload's first read
                if not raw:
                    wire.verify_frame(buf, frame)
        except WireError as e:
            raise located(WireError(f"bad message from rank {source} in round {t}: {e}"), None, t) from None
        a = frame.agent
        if frame.kind != wire.Kind.UPDATE:
            raise WireError(f"expected an UPDATE message, got {frame.kind.name} (agent {a}, round {frame.round})")
        if a >= self.n_agents or self.agent_rank[a] != source:
            raise WireError(f"message from rank {source} claims agent {a}, which that rank does not host "
                            f"(round {frame.round})")
        if frame.round != t:
            raise WireError(f"message for round {frame.round} arrived in round {t} (agent {a})")
        if a < self.next_agent or a in self.pending:
            raise WireError(f"second message from agent {a} in round {t}")
        if not raw:
            return self._accept(t, buf, frame, None)
        if a == self.next_agent and not self.drop_bad:
            # Its turn in the sum: the pass that checks the payload adds it to the sum. Should the check fail,
            # the sum is spoilt, but under bad_message=stop the run ends with that error anyway.
            try:
                with self.phases("aggregate"):
                    wire.verify_frame(buf, frame, accumulate=(self.acc, self.weights[a]))
            except WireError as e:
                raise located(WireError(f"bad message from rank {source} in round {t}: {e}"), a, t) from None
            return self._accept(t, buf, frame, SUMMED)
        # Held back (or droppable): the pass that checks the payload copies it into a decode buffer.
        out = self.buffers.pop() if self.buffers else np.empty(self.d, np.float32)
        try:
            try:
                with self.phases("decode"):
                    wire.verify_frame(buf, frame, payload_out=out.view(np.uint8))
            except WireError as e:
                raise located(WireError(f"bad message from rank {source} in round {t}: {e}"), a, t) from None
            self._accept(t, buf, frame, out)
        except BaseException:
            self.buffers.append(out)
            raise

    def _accept(self, t, buf, frame, out):
        """Reconstruct and queue a checked ``frame``.

        ``out``: None; a decode buffer holding the payload (decoded in place); or SUMMED, the payload already
        added to the sum (its reconstruct, the identity on the payload's float32, is not run).
        """
        a = frame.agent
        try:
            g_hat, state = self._reconstruct(a, t, frame, out)
        except Exception as e:
            raise located(e, a, t)
        if frame.flags & wire.FLAG_STOP_REQUEST:
            self.stop_requested = True
        self.mirrors[a] = state
        self.messages.append(message_record(t, frame, len(buf), "skipped" if g_hat is None else "ok"))
        self._queue(a, g_hat)

    def _reconstruct(self, a, t, frame, out):
        """``(g_hat, new_mirror)``; ``g_hat`` None for a skipped round. The mirror is not touched here.

        ``out`` as in ``_accept``.
        """
        if frame.flags & wire.FLAG_SKIPPED:
            g_hat, state = None, self.mirrors[a]
            self.skipped.add(a)
        elif out is SUMMED:
            g_hat, state = SUMMED, self.mirrors[a]  # a stateless scheme's state does not change
        else:
            ctx = Context(self.key(a, t), self.d, self.model_delta_sq)
            with self.phases("decode"):
                if out is None:
                    g_hat, state = self.scheme.reconstruct(self.mirrors[a], Encoded(frame.payload, frame.nbits),
                                                           ctx)
                else:
                    g_hat, state = self.scheme.reconstruct_into(
                        self.mirrors[a], Encoded(out.view(np.uint8), frame.nbits), ctx, out)
                    if g_hat is not out:  # the buffer must come back to the pool after the sum, and only then
                        raise AssertionError(f"{self.scheme!r} did not decode in place")
        if frame.digest is not None and self._digest(state) != frame.digest:
            raise MirrorError(f"agent {a}, round {t}: server and agent scheme states differ (digest mismatch)")
        return g_hat, state

    def _digest(self, state):
        with self.phases("digest"):
            return bytes.fromhex(digest(state))

    def _queue(self, a, g_hat):
        """Hold ``g_hat`` (None: no contribution) until every lower agent's turn in the sum has come."""
        self.pending[a] = g_hat
        while self.next_agent in self.pending:
            g = self.pending.pop(self.next_agent)
            if g is not None and g is not SUMMED:
                with self.phases("aggregate"):
                    axpy(self.acc, self.weights[self.next_agent], g)
                if self.in_place:
                    self.buffers.append(g)  # a decode buffer: free again
            self.next_agent += 1

    def key(self, agent, t):
        return Key(self.cfg.run.seed, agent, t)

    def missing(self):
        """Agents whose message of the current round has not arrived yet."""
        return [a for a in range(self.next_agent, self.n_agents) if a not in self.pending]

    # Step 5 -----------------------------------------------------------------
    def finish_round(self, t):
        """Aggregate, step the optimizer, close the round's accounting; return its metrics row."""
        if self.next_agent != self.n_agents:
            if not self.drop_bad:
                raise WireError(f"round {t} closed without messages from agents {self.missing()}")
            for a in self.missing():  # their messages were dropped: the mirrors stay as they were
                self.dropped.add(a)
                self._queue(a, None)
        lr = self.optim.lr(t)
        with self.phases("step"):
            new_params, self.optim_state = self.optim.step(self.optim_state, self.params, self.acc, t)
            self.model_delta_sq = sqdist(new_params, self.params)
            self.params = new_params
        n_workers = len(set(self.agent_rank))
        losses = np.full(self.n_agents, np.nan)
        for m in self.messages:
            losses[m["agent"]] = m["loss"]
        row = {"round": t + 1, "lr": lr, "agent_loss": agent_loss(self.weights, losses, self.skipped | self.dropped)}
        row.update(self.ledger.close_round(self.messages, self.model_bits * self.n_agents,
                                           wire.frame_bytes(self.model_bits) * n_workers))
        row.update(skipped=len(self.skipped), dropped=len(self.dropped))
        messages, self.messages = self.messages, []
        with self.phases("aggregate"):
            self.acc[:] = 0
        self.next_agent = 0
        self.last_dropped, self.dropped, self.skipped = self.dropped, set(), set()
        return row, messages

    # Checkpoints --------------------------------------------------------------
    def snapshot(self, arrays):
        """The server's part of a checkpoint: metadata (JSON) with its arrays added to ``arrays``."""
        arrays["params"] = self.params
        return {
            "optim": checkpoint.flatten(self.optim_state, "optim", arrays),
            "mirrors": [checkpoint.flatten(m, f"mirror/{a}", arrays) for a, m in enumerate(self.mirrors)],
            "mirror_digests": [digest(m) for m in self.mirrors],
            "ledger": dict(self.ledger.totals),
            "model_delta_sq": self.model_delta_sq,
        }

    def restore(self, meta, arrays):
        """Continue from a checkpoint written by ``snapshot`` (validated against this run's scheme)."""
        params = arrays.get("params")
        if params is None or params.dtype != np.float32 or params.shape != (self.d,):
            raise ConfigError(f"checkpoint: the model is missing or not float32[{self.d}]")
        self.params = params.copy()
        self.optim_state = checkpoint.fill(self.optim_state, meta["optim"], arrays, "optimizer state")
        if len(meta["mirrors"]) != self.n_agents:
            raise ConfigError(f"checkpoint has {len(meta['mirrors'])} agents, this run {self.n_agents}")
        template = self.scheme.init(self.d)[0]
        self.mirrors = [checkpoint.restore(template, tree, arrays, meta["mirror_digests"][a], f"agent {a}'s mirror")
                        for a, tree in enumerate(meta["mirrors"])]
        self.ledger.totals.update({k: int(meta["ledger"][k]) for k in self.ledger.totals})
        self.model_delta_sq = float(meta["model_delta_sq"])


def agent_loss(weights, losses, absent):
    """Weighted mean of the agents' losses; agents that skipped or were dropped are left out."""
    if not absent:
        return float(np.dot(weights, losses))
    present = np.array([a not in absent for a in range(len(weights))])
    if not present.any():
        return float("nan")
    w = weights[present]
    return float(np.dot(w, losses[present]) / w.sum())
