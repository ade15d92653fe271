"""The in-process transport: the server and every worker in one process.

The workers' side of each round (``Worker.serve_round``) runs when the server
sends the model; their frames are handed to the server one by one as it asks
for updates, so at most one agent's frame exists at a time beyond what the
workers keep.
"""


class LocalTransport:
    """Server and ``n_workers`` worker ranks in this process (see the package docstring for the verbs)."""

    rank = 0

    def __init__(self, n_workers):
        self.worker_ranks = list(range(1, n_workers + 1))
        self.hosted_ranks = self.worker_ranks
        self.workers = []
        self._rounds = []
        self._states = []

    def start(self, server, workers, start):
        self.workers = workers
        for node in [server, *workers]:
            node.phases.begin()

    # Server side --------------------------------------------------------------
    def model_buffer(self, t):
        return None

    def send_model(self, t, frame, wait=False):
        self._rounds = []
        for w in self.workers:
            self._serving = w.rank  # whose state a send_state during its serve_round is
            self._rounds.append((w.rank, w.serve_round(t, frame, self)))

    def gather_states(self, t):
        parts, self._states = self._states, []
        return parts

    def updates(self, t, server):
        for rank, frames in self._rounds:
            for frame in frames or ():
                yield frame, rank
        self._rounds = []

    def end_round(self, t):
        for w in self.workers:
            w.phases.close_round()

    def gather_infos(self):
        return [i for w in self.workers for i in w.info]

    def finish(self):
        pass

    # Worker side: what the workers' rounds call -------------------------------------
    def send_state(self, data):
        self._states.append((self._serving, data))
