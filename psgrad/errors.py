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
