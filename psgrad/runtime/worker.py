"""A worker rank: hosts agents, computes their gradients, encodes one message per agent.

For each agent and round (DESIGN §1, steps 2-3)::

    loss, g          = task.local_grad(agent, params, t)
    payload          = scheme.encode(state, private, g, ctx)
    g_hat, state     = scheme.reconstruct(state, payload, ctx)   # the server's exact computation
    private          = scheme.compensate(private, g, g_hat)

so the agent's copy of its mirrored state is the server's by construction.
"""
import numpy as np

from .. import wire
from ..codecs.base import Key
from ..errors import PsgradError, WireError
from ..schemes import Context, digest
from .kernels import sqdist


def located(exc, agent=None, round_=None):
    """Attach the agent and round being worked on to an exception (the innermost location wins)."""
    if not hasattr(exc, "psgrad_where"):
        exc.psgrad_where = (agent, round_)
    return exc


class Worker:
    def __init__(self, cfg, task, scheme, rank, agents):
        self.cfg = cfg
        self.task = task
        self.scheme = scheme
        self.rank = rank
        self.agents = list(agents)
        self.d = task.d
        # Mirrored and private scheme state of each hosted agent
        self.states = {}
        self.privates = {}
        for a in self.agents:
            self.states[a], self.privates[a] = scheme.init(self.d)
        self.prev_params = None
        self.info = []  # per-agent, per-round scheme metrics (agent-side only)

    def round(self, t, model_buf):
        """Yield one frame per hosted agent for round ``t``, given the model frame."""
        frame = wire.parse(model_buf)
        if frame.kind != wire.Kind.MODEL or frame.round != t or frame.nbits != 32 * self.d:
            raise WireError(f"expected the round-{t} model of {32 * self.d} bits, got {frame.kind.name} "
                            f"for round {frame.round} with {frame.nbits} bits")
        params = frame.payload.view(np.float32)
        delta_sq = 0.0 if self.prev_params is None else sqdist(params, self.prev_params)
        self.prev_params = params.copy()
        with_digest = t % self.cfg.run.digest_every == 0 or t == self.cfg.run.rounds - 1
        for a in self.agents:
            try:
                frame = self._agent_round(a, t, params, delta_sq, with_digest)
            except Exception as e:
                raise located(e, a, t)
            yield frame

    def _agent_round(self, a, t, params, delta_sq, with_digest):
        loss, g = self.task.local_grad(a, params, t)
        if not np.isfinite(loss) or not np.all(np.isfinite(g)):
            raise PsgradError("local gradient or loss is not finite (NaN or Inf)")
        ctx = Context(Key(self.cfg.run.seed, a, t), self.d, delta_sq)
        payload = self.scheme.encode(self.states[a], self.privates[a], g, ctx)
        g_hat, self.states[a] = self.scheme.reconstruct(self.states[a], payload, ctx)
        self.privates[a] = self.scheme.compensate(self.privates[a], g, g_hat)
        if payload.info:
            self.info.append({"round": t, "agent": a, **payload.info})
        state_digest = bytes.fromhex(digest(self.states[a])) if with_digest else None
        return wire.pack(wire.Kind.UPDATE, t, a, payload.data, payload.nbits, loss=loss, digest=state_digest)
