"""Per-tensor compression: a scheme run on each parameter tensor on its own, small tensors sent as fp32.

The flat gradient is cut into *parts* along the model's layout (``shapes``:
``(name, shape)`` per parameter tensor, in flat order, as ``task.flat.shapes``):

- ``granularity="tensor"``: every tensor is a part of its own, compressed by
  the scheme with its own codec call, its own state (TPC: its own predictor
  memory and coefficients) and its own shared randomness: tensor ``i`` (its
  position in ``shapes``) encodes under ``key.child(i + 1)``, so no two tensors
  draw the same numbers and both sides derive the same keys from the layout.
- ``granularity="model"``: the tensors the scheme compresses form one part,
  their spans concatenated in flat order, under the round's own key; with
  ``min_size=0`` this is the plain scheme, which ``wrap`` returns unchanged.
- ``min_size=N``: a tensor with fewer than ``N`` elements (and any empty
  tensor) is a part sent as fp32, 32 bits per element, whatever the scheme.

Payload layout (bit for bit, no padding; bit order of ``bitstream.bits``)::

    delta(n_j + 1) for each variable-length part j but the last, in part order
    part payloads, in part order (the order of each part's first element)

A part's length is fixed, and so not coded, when it is an fp32 part
(``32 n``) or when the scheme's ``payload_bits`` gives it (``32 n`` when the
scheme's payload is the float32 vector itself; PowerSGD's factors of a
tensor's shape); the last variable-length part takes the bits that remain. With one variable-length part there is no framing at all.
``Encoded.info`` holds ``bits/<part>`` for each part's payload bits,
``bits/framing`` for the length codes (their sum is ``nbits``) and the
scheme's own info per part as ``<key>/<part>``; a part is named after its
tensor, and the one part of the model granularity ``model``.

Mirrored and private states are NamedTuples with one field per scheme part
(``t<i>`` for tensor ``i``, ``model`` for the model part), each the scheme's
own state, so ``digest`` and checkpoints walk them as any nested state.
"""
import collections
from typing import NamedTuple

import numpy as np

from ..bitstream.bits import check_payload, new_buffer
from ..bitstream.codes import delta_len, read_delta, write_delta
from ..bitstream.splice import extract, splice
from ..codecs.base import Encoded
from ..codecs.floats import Fp32
from ..errors import ConfigError, DecodeError
from .base import Context, Scheme, frozen

GRANULARITIES = ("model", "tensor")
MODEL_PART = "model"
FRAMING = "framing"
MAX_TENSORS = 1 << 16  # Key.sub is 16 bits wide (Key.stream): tensor i's sub i + 1 must fit


class Part(NamedTuple):
    """A piece of the flat vector sent as one payload: its spans ``(start, stop)`` in flat order."""

    name: str
    field: str | None  # its field in the scheme states; None for an fp32 part
    spans: tuple
    size: int
    sub: int           # its Key.sub (0: the round's own key)
    shape: tuple | None  # its tensor's shape; None for the model part

    def take(self, g):
        """The part's elements of the flat vector ``g`` (a view when it is one span)."""
        if len(self.spans) == 1:
            start, stop = self.spans[0]
            return g[start:stop]
        return np.concatenate([g[start:stop] for start, stop in self.spans])

    def put(self, out, x):
        """Write the part's elements ``x`` into the flat vector ``out``."""
        offset = 0
        for start, stop in self.spans:
            out[start:stop] = x[offset:offset + stop - start]
            offset += stop - start


def check_shapes(shapes):
    """``[(name, size, shape)]`` of a layout ``[(name, shape)]``; ConfigError naming what is wrong."""
    if not isinstance(shapes, (list, tuple)) or not shapes:
        raise ConfigError(f"tensor layout must be a non-empty list of (name, shape), got {shapes!r}")
    sizes, seen = [], set()
    for entry in shapes:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str) and entry[0]
                and isinstance(entry[1], (list, tuple))
                and all(isinstance(n, (int, np.integer)) and n >= 0 for n in entry[1])):
            raise ConfigError(f"tensor layout entry {entry!r} is not (name, shape) with a non-empty name "
                              f"and a tuple of sizes >= 0")
        name, shape = entry
        if name in seen:
            raise ConfigError(f"tensor layout names {name!r} twice")
        if name == FRAMING:
            raise ConfigError(f"tensor layout: a tensor may not be named {FRAMING!r} (its bits key is taken)")
        seen.add(name)
        sizes.append((name, int(np.prod(shape, dtype=np.int64)), tuple(int(n) for n in shape)))
    return sizes


def layout(shapes, granularity, min_size):
    """The parts of a flat vector with tensors ``shapes``, in payload order."""
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if not (isinstance(min_size, int) and not isinstance(min_size, bool) and min_size >= 0):
        raise ConfigError(f"min_size must be an int >= 0, got {min_size!r}")
    sizes = check_shapes(shapes)
    if granularity == "tensor" and len(sizes) >= MAX_TENSORS:
        raise ConfigError(f"granularity=tensor handles at most {MAX_TENSORS - 1} tensors, the model has {len(sizes)}")
    if granularity == "model" and MODEL_PART in (name for name, _, _ in sizes):
        raise ConfigError(f"granularity=model with min_size: a tensor may not be named {MODEL_PART!r} "
                          f"(the name of the part it compresses)")
    parts, merged, offset = [], [], 0
    for i, (name, n, shape) in enumerate(sizes):
        span = (offset, offset + n)
        offset += n
        if n == 0 or n < min_size:
            parts.append(Part(name, None, (span,), n, 0, shape))
        elif granularity == "tensor":
            parts.append(Part(name, f"t{i}", (span,), n, i + 1, shape))
        elif not merged:
            merged.append(span)
            model_at = len(parts)  # the model part goes where its first element lies
            parts.append(None)
        elif merged[-1][1] == span[0]:  # adjacent tensors make one span
            merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    if merged:
        parts[model_at] = Part(MODEL_PART, MODEL_PART, tuple(merged), sum(b - a for a, b in merged), 0, None)
    return parts, offset


class Tensorwise(Scheme):
    """``inner`` run on each part of the layout (see the module docstring); fp32 for small tensors."""

    def __init__(self, inner, shapes, granularity="tensor", min_size=0):
        super().__init__(inner.codec)
        self.inner = inner
        self.name = inner.name
        self.requires = inner.requires
        self.stateless = inner.stateless
        self.granularity, self.min_size = granularity, min_size
        self.parts, self.d = layout(shapes, granularity, min_size)
        self.fp32 = Fp32()
        # Each part's payload bits where fixed by its layout (None: variable, framed unless last)
        self.bits = [32 * p.size if p.field is None else inner.payload_bits(p.size, p.shape) for p in self.parts]
        variable = [i for i, n in enumerate(self.bits) if n is None]
        self.coded = variable[:-1]  # the parts whose length is sent; the last variable one takes the rest
        self.last = variable[-1] if variable else None
        fields = [p.field for p in self.parts if p.field is not None]
        self.State = collections.namedtuple("TensorwiseState", fields)
        self.Private = collections.namedtuple("TensorwisePrivate", fields)

    def __repr__(self):
        return f"tensorwise({self.inner!r}, granularity={self.granularity}, min_size={self.min_size})"

    @property
    def g_hat_is_payload(self):
        # Every part is fp32 with no framing, and one span each: the payload is g's float32 bytes in flat order.
        return self.inner.g_hat_is_payload and all(len(p.spans) == 1 for p in self.parts)

    def scheme_parts(self):
        """The parts the scheme compresses, in payload order."""
        return [p for p in self.parts if p.field is not None]

    def check_codec(self, d):
        self._check_length(d)
        for p in self.scheme_parts():
            self.inner.check_codec(p.size)

    def _check_length(self, d):
        if d != self.d:
            raise ConfigError(f"scheme {self.name!r}: the tensor layout has {self.d} elements, the gradient {d}")

    def _ctx(self, ctx, part):
        return Context(ctx.key.child(part.sub), part.size, ctx.model_delta_sq)

    def init(self, d):
        self._check_length(d)
        pairs = [self.inner.init(p.size) if p.shape is None else self.inner.init_tensor(p.shape)
                 for p in self.scheme_parts()]
        return self.State(*(s for s, _ in pairs)), self.Private(*(q for _, q in pairs))

    def encode(self, state, private, g, ctx):
        encs, info = [], {}
        for p in self.parts:
            x = p.take(g)
            if p.field is None:
                enc = self.fp32.encode(x, copy=False)  # spliced below, before g changes
            else:
                enc = self.inner.encode(getattr(state, p.field), getattr(private, p.field), x, self._ctx(ctx, p))
                info.update({f"{k}/{p.name}": v for k, v in (enc.info or {}).items()})
            info[f"bits/{p.name}"] = enc.nbits
            encs.append(enc)
        header = sum(delta_len(encs[i].nbits + 1) for i in self.coded)
        info[f"bits/{FRAMING}"] = header
        buf = new_buffer(header + sum(e.nbits for e in encs))
        pos = 0
        for i in self.coded:
            pos = write_delta(buf, pos, encs[i].nbits + 1)
        for e in encs:
            pos = splice(buf, pos, e.data, e.nbits)
        return Encoded(buf, pos, info)

    def lengths(self, data, end):
        """``(lengths, pos)``: every part's payload bits, read or derived, and where the first payload starts."""
        lengths = list(self.bits)
        pos = 0
        for i in self.coded:
            n, pos = read_delta(data, end, pos)
            lengths[i] = int(n) - 1
        rest = end - pos - sum(n for n in lengths if n is not None)
        if rest < 0 or (self.last is None and rest != 0):
            raise DecodeError(f"{self.name} (tensorwise): payload has {end} bits, its header and fixed-length "
                              f"parts {end - rest}")
        if self.last is not None:
            lengths[self.last] = rest
        return lengths, pos

    def reconstruct(self, state, payload, ctx):
        end = int(payload.nbits)
        data = check_payload(payload.data, end)
        lengths, pos = self.lengths(data, end)
        g_hat = np.empty(self.d, np.float32)
        states = {}
        for p, n in zip(self.parts, lengths):
            body = extract(data, end, pos, n)
            pos += n
            if p.field is None:
                x = self.fp32.decode(body, n, p.size)
            else:
                x, states[p.field] = self.inner.reconstruct(getattr(state, p.field), Encoded(body, n),
                                                            self._ctx(ctx, p))
            p.put(g_hat, x)
        return frozen(g_hat), state._replace(**states)

    def compensate(self, private, g, g_hat):
        return private._replace(**{p.field: self.inner.compensate(getattr(private, p.field), p.take(g), p.take(g_hat))
                                   for p in self.scheme_parts()})

    def estimate(self, state):
        """The parts' estimates in flat order; None when a part keeps none (fp32 parts keep no state)."""
        if any(p.field is None for p in self.parts):
            return None
        estimates = [self.inner.estimate(getattr(state, p.field)) for p in self.parts]
        if any(e is None for e in estimates):
            return None
        out = np.empty(self.d, np.float32)
        for p, e in zip(self.parts, estimates):
            p.put(out, e)
        return frozen(out)

    def map_states(self, state, g_hat, fn):
        """The state with each scheme part's field replaced by ``fn(part_state, part_g_hat)``."""
        return state._replace(**{p.field: fn(getattr(state, p.field), frozen(p.take(g_hat)))
                                 for p in self.scheme_parts()})

    def raw_info(self):
        """``Encoded.info`` bit counts of a payload that is the whole vector as fp32 (a warm-up round)."""
        return {**{f"bits/{p.name}": 32 * p.size for p in self.parts}, f"bits/{FRAMING}": 0}
