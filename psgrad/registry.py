"""Name -> class registries with parameter checking that lists what is valid."""
import inspect

from .errors import ConfigError


def build(kind, registry, name, params):
    """Instantiate ``registry[name](**params)``; unknown names or parameters list the valid ones."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    cls = registry[name]
    valid = [n for n, p in inspect.signature(cls.__init__).parameters.items()
             if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{kind} {name!r} has no parameter {', '.join(unknown)}; "
                          f"valid: {', '.join(valid) or '(none)'}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:  # constructors validate and say why
        raise ConfigError(f"{kind} {name!r}: {e}") from None
