"""Which codec each registered scheme is tested with (shared by the reliability tests)."""
import psgrad
from psgrad.errors import ConfigError

# In order of preference: codecs with shared randomness first (they prove that resuming needs no generator
# state), then deterministic ones. A scheme gets the first one it accepts.
PREFERRED_CODECS = ("qsgd", "randk", "natural_dither", "topk", "fp16", "fp32")


def representative_codec(scheme_name, d=31):
    """The first preferred codec that scheme ``scheme_name`` accepts for gradients of length ``d``."""
    for name in PREFERRED_CODECS:
        if name not in psgrad.codecs():
            continue
        try:
            psgrad.scheme(scheme_name, name).init(d)
        except (ValueError, ConfigError):
            continue
        return name
    raise AssertionError(f"no codec fits scheme {scheme_name}")
