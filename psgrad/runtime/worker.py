"""A worker rank: hosts agents, computes their gradients, encodes one message per agent.

For each agent and round (DESIGN §1, steps 2-3)::

    loss, g          = task.local_grad(agent, params, t)
    payload          = scheme.encode(state, private, g, ctx)
    g_hat, state     = scheme.reconstruct(state, payload, ctx)   # the server's exact computation
    private          = scheme.compensate(private, g, g_hat)

so the agent's copy of its mirrored state is the server's by construction. A
scheme without state (direct: ``scheme.stateless``) keeps nothing of ``g`` or
``g_hat``, so the agent skips the last two lines, which would change nothing,
and leaves every gradient in the task's host buffer. Each agent's frame is built in a
buffer kept from round to round (its send completes before the next round).

A non-finite loss or gradient stops the run (``run.nonfinite: stop``) or makes
the agent send a well-formed SKIPPED message with its state left as it was
(``skip``). When the model frame says the server dropped an agent's previous
message (``run.bad_message: drop``), the agent goes back to its state from
before that round, as the server's mirror did.
"""
import numpy as np

from .. import wire
from ..codecs.base import Key
from ..errors import DecodeError, PsgradError, WireError, located
from ..schemes import Context, digest
from . import checkpoint
from .downlink import Downlink, link_digest, split_bits
from .federated import Clock, Participation, local_steps, local_update
from .kernels import all_finite, sqdist
from .phases import Phases
from .store import StateStore


def agent_layout(n_workers, n_agents):
    """``agent_rank[a]``: the worker rank (1-based) hosting agent ``a``; agents are numbered rank by rank, in
    blocks whose sizes differ by at most one."""
    return [1 + a * n_workers // n_agents for a in range(n_agents)]


def hosted(layout, rank):
    """The agents that worker ``rank`` hosts."""
    return [a for a, r in enumerate(layout) if r == rank]


class Worker:
    def __init__(self, cfg, task, scheme, rank, agents):
        self.cfg = cfg
        self.task = task
        self.scheme = scheme
        self.rank = rank
        self.agents = list(agents)
        self.d = task.d
        self.n_agents = cfg.run.clients
        self.drops = cfg.run.bad_message == "drop"
        self.downlink = Downlink(cfg, self.d)  # this worker's copy of the model is what it reconstructs
        # Who reports in a round and when a report is too late: computed here as on the server
        self.participation = Participation(cfg, task.agent_sizes)
        self.clock = Clock(cfg, task.agent_sizes)
        self.steps = {a: local_steps(cfg.task, int(task.agent_sizes[a])) for a in self.agents}
        self.model_bits = 0
        self.max_model_bits = self.downlink.max_bits + (self.n_agents if self.drops else 0)
        # Mirrored and private scheme state of each hosted agent, half the memory budget each
        state, private = scheme.init(self.d)
        self.states = StateStore(state, cfg.run.mirror_memory * 2**19)
        self.privates = StateStore(private, cfg.run.mirror_memory * 2**19)
        # Under bad_message=drop: each agent's (state, private) from before its last message
        self.before = {}
        self.frames = {}  # each agent's frame buffer, reused while the frame length stays the same
        self.prev_params = None
        self.first_delta_sq = 0.0  # model_delta_sq of the first round run (not 0 after a resume)
        self.stop_requested = False  # set from a signal handler: ask the server to stop the run
        self.info = []  # per-agent, per-round scheme metrics (agent-side only)
        self.phases = Phases()

    def serve_round(self, t, model_buf, link):
        """Steps 2-3 of round ``t`` from its model frame: one frame per hosted agent (an iterator), or None.

        When the frame asks for a checkpoint, this worker's part goes to ``link.send_state`` first (as bytes,
        ``checkpoint.to_bytes``, whatever the transport); when it
        asks the run to stop, there is no round (None).
        """
        params, flags = self.accept_model(t, model_buf)
        if flags & wire.FLAG_CHECKPOINT:
            link.send_state(checkpoint.to_bytes(*self.snapshot()))
        if flags & wire.FLAG_STOP:
            return None
        return self.updates(t, params)

    def accept_model(self, t, model_buf):
        """Check the round-``t`` model frame and apply the drops it reports; return ``(params, flags)``."""
        with self.phases("check"):
            try:
                frame = wire.parse(model_buf)
            except WireError as e:  # no agent's fault: the frame is the server's
                raise located(WireError(f"bad model frame from the server in round {t}: {e}"), None, t) from None
        if frame.kind != wire.Kind.MODEL or frame.round != t or frame.nbits > self.max_model_bits:
            raise WireError(f"expected the round-{t} model of at most {self.max_model_bits} bits, got "
                            f"{frame.kind.name} for round {frame.round} with {frame.nbits} bits")
        if bool(frame.flags & wire.FLAG_DROPS) != self.drops:
            raise WireError(f"the round-{t} model frame {'lacks' if self.drops else 'has'} the drops flag")
        self.model_bits = frame.nbits
        data, nbits, bits = split_bits(frame.payload, frame.nbits, self.n_agents if self.drops else 0)
        with self.phases("downlink"):
            try:
                params = self.downlink.decode(data, nbits, t)
            except DecodeError as e:  # no agent's fault: the payload is the server's
                raise located(DecodeError(f"bad model payload from the server in round {t}: {e}"), None, t) from None
        if self.drops:
            for a in self.agents:
                if bits[a]:
                    if a not in self.before:
                        raise WireError(f"the server dropped agent {a}'s message of round {t - 1}, "
                                        f"but that agent sent none")
                    self.states[a], self.privates[a] = self.before[a]
        self.before.clear()
        return params, frame.flags

    def updates(self, t, params):
        """Yield one frame per hosted agent that reports in round ``t``, at model ``params``."""
        with self.phases("model"):
            delta_sq = self.first_delta_sq if self.prev_params is None else sqdist(params, self.prev_params)
            # Kept in one buffer: the model frame it is copied from is overwritten next round.
            if self.prev_params is None:
                self.prev_params = params.copy()
            else:
                self.prev_params[:] = params
        with_digest = t % self.cfg.run.digest_every == 0 or t == self.cfg.run.rounds - 1
        reporting = self.agents if self.participation.full else \
            np.intersect1d(self.participation.plan(t).reporting, self.agents).tolist()
        for a in reporting:
            try:
                frame = self._agent_round(a, t, params, delta_sq, with_digest)
            except Exception as e:
                raise located(e, a, t)
            yield frame

    def _agent_round(self, a, t, params, delta_sq, with_digest):
        if self.steps[a]:  # a federated round: local training, and its update goes up
            c = self.cfg.task
            loss, g = local_update(self.task, a, params, t, self.steps[a], c.local_lr, c.local_momentum, self.phases)
        else:
            # A stateless scheme keeps nothing of g past this round: g may stay in the task's reused host buffer.
            out = self.task.grad_buffer if self.scheme.stateless else None
            loss, g = self.task.local_grad(a, params, t, out=out, phases=self.phases)
        flags = wire.FLAG_STOP_REQUEST if self.stop_requested else 0
        before = (self.states[a], self.privates[a])
        if self.drops:
            self.before[a] = before
        if not np.isfinite(loss) or not all_finite(g):
            if self.cfg.run.nonfinite != "skip":
                raise PsgradError("local gradient or loss is not finite (NaN or Inf); "
                                  "set run.nonfinite=skip to skip such rounds")
            state_digest = self._digest(a) if with_digest else None
            return wire.pack(wire.Kind.UPDATE, t, a, np.zeros(0, np.uint8), 0, loss=loss, digest=state_digest,
                             flags=flags | wire.FLAG_SKIPPED)
        ctx = Context(Key(self.cfg.run.seed, a, t), self.d, delta_sq)
        with self.phases("encode"):
            payload = self.scheme.encode(self.states[a], self.privates[a], g, ctx)
        if not self.scheme.stateless:
            with self.phases("decode"):
                g_hat, self.states[a] = self.scheme.reconstruct(self.states[a], payload, ctx)
            with self.phases("encode"):
                self.privates[a] = self.scheme.compensate(self.privates[a], g, g_hat)
        if self.clock.late(self.clock.seconds(a, self.model_bits, payload.nbits)):
            # Missed the deadline: the server will not use the report, so the agent's state stays as it was
            self.states[a], self.privates[a] = before
            return wire.pack(wire.Kind.UPDATE, t, a, np.zeros(0, np.uint8), 0, loss=loss, flags=flags | wire.FLAG_LATE)
        if payload.info:
            # Plain Python values, so that a journal round trip (JSON) changes nothing in agents.csv
            self.info.append({"round": t, "agent": a, **{k: v.item() if isinstance(v, np.generic) else v
                                                         for k, v in payload.info.items()}})
        state_digest = self._digest(a) if with_digest else None
        with self.phases("pack"):
            size = wire.frame_bytes(payload.nbits, state_digest is not None)
            if a not in self.frames or self.frames[a].shape[0] != size:
                self.frames[a] = np.empty(size, np.uint8)
            return wire.pack(wire.Kind.UPDATE, t, a, payload.data, payload.nbits, loss=loss, digest=state_digest,
                             flags=flags, out=self.frames[a])

    def _digest(self, a):
        with self.phases("digest"):
            return link_digest(digest(self.states[a]), self.downlink.digest())

    # Checkpoints --------------------------------------------------------------
    def state(self):
        """This worker's part of a checkpoint beyond the server's: its agents' private states, in order."""
        return self.privates.values(self.agents)

    def snapshot(self):
        """``(meta, arrays)`` to send to the server for a checkpoint (taken between rounds): ``state()``, the
        digests of the agents' mirrored states (the server checks them against its mirrors), and the agents'
        scheme metrics gathered since the last checkpoint (they now belong to the checkpoint's journal)."""
        arrays = {}
        meta = {"rank": self.rank, "state": checkpoint.flatten(self.state(), f"worker/{self.rank}", arrays),
                "mirror_digests": {str(a): digest(self.states[a]) for a in self.agents},
                "downlink_digest": self.downlink.digest(), "infos": self.info}
        self.info = []
        return meta, arrays

    def load_state(self, privates, mirrors, model_delta_sq, downlink):
        """Continue from a checkpoint: ``privates`` as ``state()`` gave them, every agent's mirrored state
        (the server's ``mirrors``), the server's ``model_delta_sq``, which is what this worker would
        compute from the model of the round before the checkpoint, and the downlink's mirrored state before
        the checkpoint round's model frame (the server's)."""
        self.downlink.state = downlink
        self.states.replace({a: mirrors[a] for a in self.agents})
        self.privates.replace(dict(zip(self.agents, privates)))
        self.before.clear()
        self.info = []
        self.prev_params = None
        self.first_delta_sq = model_delta_sq
