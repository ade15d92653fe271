"""Errors psgrad raises on purpose, each naming what was wrong."""


class PsgradError(Exception):
    """Base of every error psgrad raises deliberately."""


class DecodeError(PsgradError, ValueError):
    """A payload or message could not be decoded: truncated, malformed or out of range."""


class ConfigError(PsgradError, ValueError):
    """A configuration value, file or override is invalid."""


class WireError(DecodeError):
    """A message header is malformed, from another version, or inconsistent with its frame."""


class MirrorError(PsgradError, RuntimeError):
    """Agent and server copies of an agent's mirrored scheme state disagree."""


def located(exc, agent=None, round_=None):
    """Attach the agent and round being worked on to an exception (the innermost location wins)."""
    if not hasattr(exc, "psgrad_where"):
        exc.psgrad_where = (agent, round_)
    return exc


def describe(exc):
    """`` (agent A, round T): Type: message`` for an exception ``located`` attached a place to."""
    agent, round_ = getattr(exc, "psgrad_where", (None, None))
    where = ", ".join(f"{k} {v}" for k, v in (("agent", agent), ("round", round_)) if v is not None)
    return f"{f' ({where})' if where else ''}: {type(exc).__name__}: {exc}"
