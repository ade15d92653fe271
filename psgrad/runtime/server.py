"""The parameter server: the model, the optimizer, and a mirror of every agent's scheme state.

One round, as the drivers call it::

    frame = server.model_frame(t)            # Step 1: the model, down to every worker
    server.receive(t, buf, source)           # Step 4: each agent's message, in any order
    row = server.finish_round(t)             # Step 5: aggregate, step, account, evaluate

Messages are decoded as they arrive; the aggregate is summed in agent order,
so the result does not depend on arrival order and an MPI run equals a local
run bit for bit.
"""
import numpy as np

from .. import wire
from ..codecs.base import Encoded, Key
from ..errors import MirrorError, WireError
from ..schemes import Context, digest
from .accounting import Ledger, message_record
from .kernels import axpy, sqdist
from .optim import Sgd


class Server:
    def __init__(self, cfg, task, scheme, agent_rank):
        # What the run is
        self.cfg = cfg
        self.task = task
        self.scheme = scheme
        self.agent_rank = agent_rank  # agent id -> worker rank that hosts it
        self.n_agents = len(agent_rank)
        self.d = task.d
        # The model and its optimizer
        self.params = task.init_params()
        self.prev_params = self.params.copy()
        self.optim = Sgd(cfg.optim, cfg.run.rounds)
        self.optim_state = self.optim.init(self.d)
        # Mirrored scheme state, one per agent
        self.mirrors = [scheme.init(self.d)[0] for _ in range(self.n_agents)]
        sizes = np.asarray(task.agent_sizes, np.float64)
        self.weights = sizes / sizes.sum() if cfg.run.aggregate == "weighted" else np.full(self.n_agents,
                                                                                           1.0 / self.n_agents)
        # Per-round scratch: decoded contributions waiting for their turn in the agent-ordered sum
        self.acc = np.zeros(self.d, np.float32)
        self.pending = {}
        self.next_agent = 0
        self.messages = []
        # Accounting
        self.ledger = Ledger()
        self.model_delta_sq = 0.0

    # Step 1 -----------------------------------------------------------------
    def model_frame(self, t):
        return wire.pack(wire.Kind.MODEL, t, wire.ALL_AGENTS, self.params.view(np.uint8), 32 * self.d)

    # Step 4 -----------------------------------------------------------------
    def receive(self, t, buf, source):
        """Validate, decode and queue one agent's message of round ``t`` received from rank ``source``."""
        frame = wire.parse(buf)
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
        ctx = Context(self.key(a, t), self.d, self.model_delta_sq)
        g_hat, self.mirrors[a] = self.scheme.reconstruct(self.mirrors[a], Encoded(frame.payload, frame.nbits), ctx)
        if frame.digest is not None and bytes.fromhex(digest(self.mirrors[a])) != frame.digest:
            raise MirrorError(f"agent {a}, round {t}: server and agent scheme states differ (digest mismatch)")
        self.messages.append(message_record(t, frame, len(buf)))
        self.pending[a] = g_hat
        while self.next_agent in self.pending:
            axpy(self.acc, self.weights[self.next_agent], self.pending.pop(self.next_agent))
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
            raise WireError(f"round {t} closed without messages from agents {self.missing()}")
        lr = self.optim.lr(t)
        new_params, self.optim_state = self.optim.step(self.optim_state, self.params, self.acc, t)
        self.model_delta_sq = sqdist(new_params, self.params)
        self.params = new_params
        n_workers = len(set(self.agent_rank))
        losses = np.array([m["loss"] for m in sorted(self.messages, key=lambda m: m["agent"])], np.float64)
        row = {"round": t + 1, "lr": lr, "agent_loss": float(np.dot(self.weights, losses))}
        row.update(self.ledger.close_round(self.messages, 32 * self.d * self.n_agents,
                                           wire.frame_bytes(32 * self.d) * n_workers))
        messages, self.messages = self.messages, []
        self.acc[:] = 0
        self.next_agent = 0
        return row, messages
