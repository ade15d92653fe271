"""Names -> builders for codecs, schemes and tasks, with parameter checking that lists what is valid.

A name is, in this order of lookup:

1. an import path ``package.module:attr`` (any name with a colon; ``attr`` may be dotted),
2. a built-in name (a key of the kind's registry dict),
3. the name of an entry point in the kind's group (``plugins.GROUPS``) of an installed package.

What a name resolves to is a class of the kind's base (``psgrad.Codec``, ``psgrad.Scheme``) or a
builder, a callable returning an instance of it (a task is always a builder
``(cfg, n_agents, seed) -> Task``). Everything that can go wrong with a plugin (its module fails to
import, the attribute is missing, it is not of the kind, its builder raises, its entry-point name is
also a built-in or is declared twice) is one ``ConfigError`` line that names the plugin.
"""
import importlib
import inspect
import types
from typing import Callable, NamedTuple

from . import plugins
from .errors import ConfigError

# kind -> what a plugin of that kind must be, as the errors name it
EXPECTED = {"codec": "psgrad.Codec", "scheme": "psgrad.Scheme", "task": "psgrad.tasks.Task"}


class Found(NamedTuple):
    """A resolved name: its kind, the class or builder, how errors name it, and whether it is a plugin."""

    kind: str
    builder: Callable
    label: str
    plugin: bool


def resolve(kind, registry, name, base):
    """``Found`` for ``name`` of ``kind`` (see the module docstring); ``base`` is the kind's base class."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{kind} name must be a non-empty string, got {name!r}")
    if ":" in name:
        label = f"{kind} {name!r}"
        return Found(kind, _checked(kind, label, _import(label, name), base), label, True)
    eps = plugins.entry_points(kind).get(name, [])
    where = "; ".join(f"entry point {plugins.origin(ep)}" for ep in eps)
    if name in registry:
        if eps:
            raise ConfigError(f"{kind} {name!r} is a built-in and also {where}: rename the entry point")
        return Found(kind, registry[name], f"{kind} {name!r}", False)
    if len(eps) > 1:
        raise ConfigError(f"{kind} {name!r} is declared by more than one entry point ({where}): "
                          f"uninstall one or use an import path package.module:attr")
    if not eps:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(names(kind, registry))} "
                          f"(or an import path package.module:attr)")
    label = f"{kind} {name!r} ({where})"
    try:
        obj = eps[0].load()
    except Exception as e:  # a plugin's import may raise anything; the run must not start
        raise ConfigError(f"{label}: cannot be loaded: {_one_line(e)}") from None
    return Found(kind, _checked(kind, label, obj, base), label, True)


def names(kind, registry):
    """Every name of ``kind`` this process can see: the built-ins and the entry points, sorted."""
    return sorted(set(registry) | set(plugins.entry_points(kind)))


def build(kind, registry, name, params, base):
    """Resolve ``name`` and call it with keyword ``params``; unknown names or parameters list the valid ones."""
    found = resolve(kind, registry, name, base)
    valid = [n for n, p in _signature(found).parameters.items()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{found.label} has no parameter {', '.join(unknown)}; "
                          f"valid: {', '.join(valid) or '(none)'}")
    return construct(found, base, **params)


def construct(found, base, *args, **kwargs):
    """``found.builder(*args, **kwargs)``, checked to be a ``base``.

    Constructors validate and say why with ``TypeError``/``ValueError``: those become ``ConfigError``
    for every builder. Any other exception of a plugin's builder does too (naming the plugin); one of
    a built-in is a bug in psgrad and propagates as it is.
    """
    try:
        obj = found.builder(*args, **kwargs)
    except ConfigError as e:
        if not found.plugin:
            raise
        raise ConfigError(f"{found.label}: {_one_line(e, typed=False)}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{found.label}: {_one_line(e, typed=found.plugin)}") from None
    except Exception as e:
        if not found.plugin:
            raise
        raise ConfigError(f"{found.label}: its builder raised {_one_line(e)}") from None
    if not isinstance(obj, base):
        raise ConfigError(f"{found.label}: its builder returned a {type(obj).__name__}, "
                          f"not a {EXPECTED[found.kind]}")
    return obj


class Listing(types.ModuleType):
    """A registry subpackage that lists its names when called.

    ``psgrad.codecs`` is the subpackage (``psgrad.codecs.REGISTRY``, ``psgrad.codecs.qsgd``), and
    ``psgrad.codecs()`` is ``psgrad.codecs.names()``; the same holds for ``schemes`` and ``tasks``.
    """

    def __call__(self):
        return self.names()


def _import(label, path):
    """The object at import path ``package.module:attr``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ConfigError(f"{label}: an import path must look like package.module:attr")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:  # a plugin's import may raise anything; the run must not start
        raise ConfigError(f"{label}: cannot import module {module_name}: {_one_line(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{label}: {module_name} has no attribute {attr}")
        obj = getattr(obj, part)
    return obj


def _checked(kind, label, obj, base):
    """``obj`` if it can build a ``base``: a subclass of it, or another callable (a builder)."""
    expected = EXPECTED[kind]
    if inspect.isclass(obj) and not issubclass(obj, base):
        raise ConfigError(f"{label}: {obj.__module__}.{obj.__qualname__} is a class but not a subclass of {expected}")
    if not callable(obj):
        raise ConfigError(f"{label}: an object of type {type(obj).__name__} is neither a subclass of {expected} "
                          f"nor a builder")
    return obj


def _signature(found):
    try:
        return inspect.signature(found.builder)
    except (TypeError, ValueError):  # a callable whose signature Python cannot read (a C function)
        raise ConfigError(f"{found.label}: its parameters cannot be read; give a Python class or function") from None


def _one_line(e, typed=True):
    """The first line of an exception's message, after its type name when ``typed``."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if not typed:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
