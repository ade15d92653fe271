"""Plugins: the codecs, schemes and tasks that installed packages register through entry points.

A package registers a plugin with an entry point in one of three groups, for
example in its ``pyproject.toml``::

    [project.entry-points."psgrad.codecs"]
    stochastic_uniform = "psgrad_example.codec:StochasticUniform"

after which ``scheme.codec: stochastic_uniform`` works in any config. How a
name is resolved (built-in, import path, entry point) is ``registry.resolve``;
this module only finds entry points and describes them. The set is read once
per process (``refresh()`` reads it again, for a package installed since).
"""
import functools
from importlib import metadata

# kind -> entry-point group
GROUPS = {"codec": "psgrad.codecs", "scheme": "psgrad.schemes", "task": "psgrad.tasks"}


@functools.cache
def entry_points(kind):
    """``{name: [EntryPoint, ...]}`` of ``kind`` visible to this process; two or more under one name clash."""
    found = {}
    for ep in metadata.entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, []).append(ep)
    return found


def refresh():
    """Forget the entry points read so far, so the next lookup sees packages installed since."""
    entry_points.cache_clear()


def origin(ep):
    """``'module:attr' of dist 1.0'``: where an entry point points and which distribution declares it."""
    dist = ep.dist
    return f"{ep.value} of {dist.name} {dist.version}" if dist is not None else ep.value


def fingerprint():
    """The plugin set of this process as JSON-able data: one record per entry point, sorted.

    Each record is ``{"group", "name", "value", "dist", "version"}`` (``dist`` and ``version`` None where
    the entry point has no distribution). Two processes that see the same plugins give equal lists.
    """
    records = []
    for kind, group in GROUPS.items():
        for name, eps in entry_points(kind).items():
            for ep in eps:
                dist = ep.dist
                records.append({"group": group, "name": name, "value": ep.value,
                                "dist": dist.name if dist is not None else None,
                                "version": dist.version if dist is not None else None})
    return sorted(records, key=lambda r: (r["group"], r["name"], r["value"], r["dist"] or "", r["version"] or ""))
