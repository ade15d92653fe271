"""The event trigger: decide, on the agent, whether a correction is worth its bits.

A correction ``r`` (a residual against a prediction, or the change since the
last upload) is skipped when

    ||r||^2 <= tau^2 + eps^2 ||g||^2 + xi * ||theta_t - theta_{t-1}||^2

and the link has been silent for fewer than ``max_silent`` rounds (0: no
limit). Each term is one classic rule, and any mix of them can be switched on:

- ``tau``: an absolute threshold on ``||r||``;
- ``eps``: a threshold relative to the gradient norm, ``||r|| <= eps ||g||``;
- ``xi``: the lazy rule of LAG (Chen, Giannakis, Sun, Yin, "LAG: Lazily
  Aggregated Gradient for Communication-Efficient Distributed Learning",
  NeurIPS 2018) with a window of one round: the correction is skipped when it
  is small against the model's most recent move. LAG's ``xi / (lr^2 M^2)`` is
  folded into ``xi`` here, since a scheme knows neither the step size nor the
  number of agents.

With every term zero the threshold is zero and the trigger always fires:
that is the "trigger off" (always send) setting. The decision is the agent's
alone; the server reads it from the payload's flag bit.
"""
import math


class Trigger:
    """Skip rule with thresholds ``tau``, ``eps``, ``xi`` and a cap of ``max_silent`` skipped rounds."""

    def __init__(self, tau=0.0, eps=0.0, xi=0.0, max_silent=0):
        for name, v in (("tau", tau), ("eps", eps), ("xi", xi)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"trigger {name} must be a finite number >= 0, got {name}={v!r}")
        if not (isinstance(max_silent, int) and max_silent >= 0):
            raise ValueError(f"trigger max_silent must be an int >= 0 (0: no limit), got {max_silent=}")
        self.tau, self.eps, self.xi, self.max_silent = float(tau), float(eps), float(xi), max_silent

    @property
    def always(self):
        """True when no threshold is set: every round sends its correction."""
        return self.tau == 0.0 and self.eps == 0.0 and self.xi == 0.0

    def threshold_sq(self, g_sq, model_delta_sq):
        """The squared norm at or below which a correction is skipped."""
        return self.tau * self.tau + self.eps * self.eps * g_sq + self.xi * model_delta_sq

    def fires(self, r_sq, g_sq, model_delta_sq, silent):
        """Whether to send the correction this round, ``silent`` rounds after the last one."""
        if self.always:
            return True
        if self.max_silent and silent >= self.max_silent:
            return True
        return bool(r_sq > self.threshold_sq(g_sq, model_delta_sq))

    def __repr__(self):
        return f"Trigger(tau={self.tau}, eps={self.eps}, xi={self.xi}, max_silent={self.max_silent})"
