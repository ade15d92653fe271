"""Where a rank's time goes: wall time per phase of each round, always on.

The server and every worker keep one ``Phases``; the code of each step runs
inside ``with phases("decode"):`` and the round loop closes the round::

    with server.phases("step"):
        ...
    server.phases.close_round()     # this round's {phase: seconds} joins ``rounds``

A span costs two ``perf_counter`` calls and a dict update (about a
microsecond), so it stays on in production runs; it changes nothing that the
run computes. Phases that overlap are not nested: each second of a rank's
round is counted in at most one phase, and what no phase covers is "other".

With ``Phases.cpu`` set (benchmarks on shared cores), every span also adds the
calling thread's CPU time to ``cpu_rounds``: when ranks outnumber cores, a
phase's wall time includes the time the rank waited for a core, its CPU time
does not.
"""
from time import perf_counter, thread_time


class _Span:
    __slots__ = ("phases", "name", "t0", "c0")

    def __init__(self, phases, name):
        self.phases = phases
        self.name = name

    def __enter__(self):
        self.t0 = perf_counter()
        if self.phases.cpu:
            self.c0 = thread_time()
        return self

    def __exit__(self, *exc):
        p = self.phases
        p.current[self.name] = p.current.get(self.name, 0.0) + (perf_counter() - self.t0)
        if p.cpu:
            p.current_cpu[self.name] = p.current_cpu.get(self.name, 0.0) + (thread_time() - self.c0)
        return False


class Phases:
    """Per-round accumulations of named phases; ``rounds[k]`` is ``{phase: seconds}`` of the k-th round closed."""

    cpu = False  # also keep CPU seconds per phase (``cpu_rounds``), at about a microsecond more per span

    def __init__(self):
        self.current = {}
        self.rounds = []
        self.current_cpu = {}
        self.cpu_rounds = []
        self._t_round = perf_counter()

    def begin(self):
        """Start the first round's clock now (after set-up)."""
        self._t_round = perf_counter()

    def __call__(self, name):
        """A context manager adding its wall time to phase ``name`` of the current round."""
        return _Span(self, name)

    def close_round(self):
        """End the current round: record its phases, with ``round`` (its whole wall time) and ``other``."""
        now = perf_counter()
        row = dict(self.current)
        row["round"] = now - self._t_round
        row["other"] = max(row["round"] - sum(self.current.values()), 0.0)
        self.rounds.append(row)
        self.current = {}
        if self.cpu:
            self.cpu_rounds.append(self.current_cpu)
            self.current_cpu = {}
        self._t_round = now

    def totals(self):
        """Seconds per phase summed over all closed rounds."""
        out = {}
        for row in self.rounds:
            for k, v in row.items():
                out[k] = out.get(k, 0.0) + v
        return out
