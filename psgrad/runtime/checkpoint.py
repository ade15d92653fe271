"""Checkpoints: everything a run needs to continue bit for bit, in one atomically written file.

A checkpoint is taken at a round boundary ``k`` (``k`` rounds done) and holds

- the server's state (``ServerState``: the model, the optimizer state, every
  agent's mirrored scheme state, the cumulative bit counters, the last
  ``model_delta_sq``);
- each worker rank's state (``Worker.state``: its agents' private scheme
  states), gathered from the workers;
- the recorder's position in its files (metrics.csv, and the message and
  agent-info journals), so that a resumed run rewrites nothing that an
  uninterrupted run would not have written.

``write`` builds it and ``restore_run`` puts a server and workers back in its
state: what a checkpoint holds is what ``Server.state`` and ``Worker.state``
return, so a new field is added in one place.

Randomness needs no state: minibatches and every codec draw are pure
functions of ``(seed, agent, round)``.

File format: ``checkpoint.npz`` (numpy zip, loaded with ``allow_pickle=False``)
whose entry ``meta.json`` is UTF-8 JSON and whose other entries are arrays; a
SHA-256 of both (``content_digest``) is stored in the metadata and checked.
Scheme states are NamedTuples of arrays, Python scalars, tuples of arrays and
nested NamedTuples; they are stored generically by field path and restored
into a fresh ``scheme.init(d)``, so their types come from code, never from the
file. It is written to a temporary file, fsynced, then renamed over the old
one: a crash while writing never destroys the last good checkpoint.
"""
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .. import __version__
from .. import config as config_mod
from ..errors import ConfigError, MirrorError, PsgradError
from ..schemes import digest

FORMAT_VERSION = 2
FILE_NAME = "checkpoint.npz"
META = "meta.json"
# Settings that may differ between a run and its resumption: they do not change what the run computes.
RESUMABLE = {"run.timeout", "run.log_every", "run.checkpoint_every", "run.results_dir", "run.name", "run.overwrite",
             "run.tensorboard"}


def result_hash(cfg):
    """Hash of everything in ``cfg`` that decides the run's results (the RESUMABLE settings left out)."""
    data = config_mod.to_dict(cfg)
    for key in RESUMABLE:
        section, name = key.split(".")
        data[section].pop(name)
    return config_mod.config_hash(config_mod.from_dict(data))


# State trees -----------------------------------------------------------------
def flatten(state, key, arrays):
    """A JSON description of ``state``; its arrays go into ``arrays`` under keys below ``key``."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return {"t": "named", "fields": {f: flatten(v, f"{key}/{f}", arrays) for f, v in zip(state._fields, state)}}
    if isinstance(state, tuple):
        return {"t": "tuple", "items": [flatten(v, f"{key}/{i}", arrays) for i, v in enumerate(state)]}
    if isinstance(state, (np.ndarray, np.generic)):
        arrays[key] = np.asarray(state)
        return {"t": "array" if isinstance(state, np.ndarray) else "scalar", "key": key,
                "writeable": bool(state.flags.writeable) if isinstance(state, np.ndarray) else False}
    if state is None or isinstance(state, (bool, int, float, str)):
        return {"t": "value", "v": state}
    raise TypeError(f"cannot checkpoint a state field of type {type(state).__name__} at {key}")


def fill(template, tree, arrays, where):
    """Rebuild a state shaped like ``template`` from ``flatten``'s ``tree`` and ``arrays``; ConfigError if they disagree."""
    kind = tree.get("t") if isinstance(tree, dict) else None
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        fields = tree.get("fields") if kind == "named" else None
        if not isinstance(fields, dict) or list(fields) != list(template._fields):
            raise ConfigError(f"checkpoint: {where} has fields {list(fields or [])}, the scheme's state has "
                              f"{list(template._fields)}")
        return type(template)(*(fill(v, fields[f], arrays, f"{where}.{f}") for f, v in zip(template._fields, template)))
    if isinstance(template, tuple):
        items = tree.get("items") if kind == "tuple" else None
        if not isinstance(items, list):
            raise ConfigError(f"checkpoint: {where} should be a tuple")
        return tuple(fill(template[i] if i < len(template) else None, item, arrays, f"{where}[{i}]")
                     for i, item in enumerate(items))
    if kind in ("array", "scalar"):
        a = arrays.get(tree.get("key"))
        if a is None or a.dtype.kind not in "biuf":
            raise ConfigError(f"checkpoint: {where} is missing or not a numeric array")
        if isinstance(template, np.ndarray) and (a.dtype != template.dtype or a.shape != template.shape):
            raise ConfigError(f"checkpoint: {where} is {a.dtype}{a.shape}, expected {template.dtype}{template.shape}")
        if kind == "scalar":
            return a[()]
        a = np.array(a, copy=True)
        a.setflags(write=bool(tree.get("writeable")))
        return a
    if kind == "value" and (template is None or type(tree["v"]) is type(template)
                            or (isinstance(template, float) and type(tree["v"]) is int)):
        return type(template)(tree["v"]) if template is not None else tree["v"]
    raise ConfigError(f"checkpoint: {where} does not match the scheme's state ({type(template).__name__})")


# Files -----------------------------------------------------------------------
def to_bytes(meta, arrays):
    """One npz archive (as bytes) holding ``arrays`` and ``meta`` as JSON."""
    buf = io.BytesIO()
    np.savez(buf, **{META: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    return buf.getvalue()


def from_bytes(data, what):
    """``(meta, arrays)`` from ``to_bytes`` output; ConfigError naming ``what`` if it is not one."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop(META).tobytes().decode())
    except Exception as e:  # zip, npz and JSON each have their own error types
        raise ConfigError(f"{what} is not a psgrad checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{what} is not a psgrad checkpoint (no metadata)")
    return meta, arrays


def write_atomic(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(cfg, k, server, recorder, parts, reason):
    """Write the checkpoint at round boundary ``k``: the server's state, each worker's part (``(meta, arrays)``
    from ``Worker.snapshot``, checked against the server's mirrors) and the recorder's position; its path."""
    arrays = {}
    workers = {}
    for wmeta, warrays in parts:
        for key, d in wmeta["mirror_digests"].items():
            if d != digest(server.mirrors[int(key)]):
                raise MirrorError(f"agent {key}, round {k}: server and agent scheme states differ at the checkpoint")
        if wmeta["downlink_digest"] != server.downlink.digest():
            raise MirrorError(f"rank {wmeta['rank']}, round {k}: its model copy and the server's differ at the "
                              f"checkpoint")
        workers[str(wmeta["rank"])] = wmeta["state"]
        arrays.update(warrays)
        recorder.add_infos(wmeta["infos"])
    missing = sorted(set(map(str, server.worker_ranks)) - set(workers))
    if missing:
        raise PsgradError(f"checkpoint at round {k}: no state from worker ranks {', '.join(missing)}")
    meta = {"format": FORMAT_VERSION, "psgrad": __version__, "config_hash": result_hash(cfg), "round": k,
            "reason": reason, "server": flatten(server.state(), "server", arrays), "workers": workers,
            "recorder": recorder.position()}
    meta["digest"] = content_digest(meta, arrays)
    path = Path(recorder.dir) / FILE_NAME
    write_atomic(path, to_bytes(meta, arrays))
    return path


def restore_run(meta, arrays, server, workers):
    """Put ``server`` (None on a worker rank) and ``workers`` in the state the checkpoint saved; return the
    round to continue with. Raises ConfigError when the checkpoint does not fit them."""
    if server is not None:
        server.load_state(fill(server.state(), meta["server"], arrays, "the server's state"))
    saved = meta["server"]["fields"]
    for w in workers:
        tree = meta["workers"].get(str(w.rank))
        if tree is None:
            raise ConfigError(f"it has no state of worker rank {w.rank}")
        privates = fill(w.state(), tree, arrays, f"rank {w.rank}'s private agent states")
        # The agents' mirrored states are the server's mirrors, read from the server's part.
        template = w.scheme.init(w.d)[0]
        mirrors = {a: fill(template, saved["mirrors"]["items"][a], arrays, f"agent {a}'s state") for a in w.agents}
        down = fill(w.downlink.state, saved["downlink"]["items"][0], arrays, "the downlink's state")
        w.load_state(privates, mirrors, float(fill(0.0, saved["model_delta_sq"], arrays, "model_delta_sq")), down)
    return int(meta["round"])


def content_digest(meta, arrays):
    """SHA-256 over the metadata (without its ``digest``) and every array, in key order."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load(folder, cfg, scheme, task):
    """``(meta, arrays)`` of the checkpoint in run folder ``folder``, fully checked against the run.

    Every state is restored once here, into a fresh server and workers, so that a damaged or foreign
    checkpoint is a ConfigError before any rank starts (status 2 on every rank).
    """
    from .results import check_files
    from .server import Server
    from .worker import Worker, agent_layout, hosted

    path = Path(folder) / FILE_NAME
    if not path.is_file():
        raise ConfigError(f"no checkpoint to resume from: {path} does not exist")
    data = path.read_bytes()
    if not data.startswith(b"PK\x03\x04"):  # numpy's own error for a non-zip file suggests loading pickles
        raise ConfigError(f"{path} is not a psgrad checkpoint: not a zip archive (psgrad writes checkpoints as .npz)")
    meta, arrays = from_bytes(data, str(path))
    if meta.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{path} has checkpoint format {meta.get('format')!r}, this psgrad reads {FORMAT_VERSION}")
    if meta.get("config_hash") != result_hash(cfg):
        raise ConfigError(f"{path} belongs to another config (hash {str(meta.get('config_hash'))[:12]}, "
                          f"this config {result_hash(cfg)[:12]})")
    if meta.get("digest") != content_digest(meta, arrays):
        raise ConfigError(f"{path} is damaged (its content digest does not match)")
    try:
        k = meta["round"]
        if not (isinstance(k, int) and 0 <= k < cfg.run.rounds):
            raise ConfigError(f"round {k!r} is not in [0, {cfg.run.rounds})")
        layout = agent_layout(cfg.run.workers, cfg.run.clients)
        workers = [Worker(cfg, task, scheme, r, hosted(layout, r)) for r in range(1, cfg.run.workers + 1)]
        restore_run(meta, arrays, Server(cfg, task, scheme, layout), workers)
        rec = meta["recorder"]
        dict(rec["last"]), dict(rec["evals"])
        check_files(folder, rec)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ConfigError(f"{path} is damaged ({type(e).__name__}: {e})") from None
    return meta, arrays
