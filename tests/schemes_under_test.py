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
            psgrad.scheme(scheme_name, name).init_tensor((d,))
        except (ValueError, ConfigError):
            continue
        return name
    raise AssertionError(f"no codec fits scheme {scheme_name}")


# What a run of a scheme needs besides its name and codec: PowerSGD compresses weight matrices one at a time,
# so it runs per tensor, on a task with a matrix it compresses (the mlp's 8 x 30 hidden layer; the logistic
# regression's weights are too small to gain and would go whole).
RUN_SETTINGS = {"powersgd": ("scheme.granularity=tensor", "task.name=mlp", "task.hidden=8")}

# Variants that a config setting builds around a registered scheme, tested as schemes of their own: name ->
# (the registered scheme, its settings). TPC on the agent's moving average of its gradients (scheme.ema) has
# private state of its own, which checkpoints and rollbacks must carry.
VARIANTS = {"tpc+ema": ("tpc", ("scheme.ema=0.9",))}


def under_test():
    """Every registered scheme, then every variant."""
    return [*psgrad.schemes(), *VARIANTS]


def run_settings(name):
    """The config overrides of a run of scheme (or variant) ``name`` with its representative codec."""
    scheme_name, settings = VARIANTS.get(name, (name, ()))
    return [f"scheme.name={scheme_name}", f"scheme.codec={representative_codec(scheme_name)}",
            *RUN_SETTINGS.get(scheme_name, ()), *settings]
