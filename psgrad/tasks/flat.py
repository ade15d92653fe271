"""A torch module whose parameters live in one flat float32 buffer, and whose gradients in another.

Every parameter of the module is a view into ``params`` and every ``.grad`` a
view into ``grad``, so loading a flat vector is one ``copy_`` and the flat
gradient needs no concatenation: autograd accumulates into the existing
``.grad`` views in place (they are zeroed, never replaced, between calls).
The order of the flat vector is ``module.named_parameters()`` order, each
parameter in row-major layout; a parameter shared by several submodules (tied
weights) appears once and every submodule holding it gets the same view.
Buffers (BatchNorm running statistics, constants) are not part of the flat
vector: they stay tensors of the module, moved to the same device.
"""
import warnings

import numpy as np
import torch


class FlatModule:
    """Binds ``module``'s parameters to a flat buffer ``params`` and gradients to ``grad``, both on ``device``.

    A module built on the meta device gets storage only: ``params`` starts at
    zero and the task initialises it, and its meta buffers are allocated empty on
    ``device`` (as ``module.to_empty`` would, without the half a second of
    imports that torch's ``to_empty`` costs in every process). Otherwise the
    module's own parameter values are copied into ``params``.
    """

    def __init__(self, module, device=torch.device("cpu")):
        self.module = module
        on_meta = any(t.is_meta for t in (*module.parameters(), *module.buffers()))
        if on_meta:
            for sub in module.modules():
                for name, b in sub._buffers.items():
                    if b is not None and b.is_meta:
                        sub._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=device)
        else:
            module.to(device)
        named = list(module.named_parameters())
        aliases = {}  # id(parameter) -> every name it is reachable under
        for name, p in module.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(p), []).append(name)
        self.shapes = [(name, tuple(p.shape)) for name, p in named]
        self.d = sum(p.numel() for _, p in named)
        self.params = torch.zeros(self.d, dtype=torch.float32, device=device)
        self.grad = torch.zeros(self.d, dtype=torch.float32, device=device)
        offset = 0
        for name, p in named:
            n = p.numel()
            if not on_meta:
                self.params[offset:offset + n].copy_(p.detach().reshape(-1))
            view = torch.nn.Parameter(self.params[offset:offset + n].view(p.shape), requires_grad=p.requires_grad)
            view.grad = self.grad[offset:offset + n].view(p.shape)
            for alias in aliases[id(p)]:
                setattr(*_owner(module, alias), view)
            offset += n
        self._bound = [p.grad for p in module.parameters()]

    def load(self, flat):
        """Copy the flat float32 vector ``flat`` (numpy, length ``d``) into the module's parameters."""
        if flat.shape != (self.d,):
            raise ValueError(f"params must have shape ({self.d},), got {flat.shape}")
        with warnings.catch_warnings():  # a read-only array (a mirrored model copy) is only read here
            warnings.simplefilter("ignore", UserWarning)
            source = torch.from_numpy(np.asarray(flat, dtype=np.float32))
        self.params.copy_(source)

    def zero_grad(self):
        """Zero the flat gradient in place (the ``.grad`` views stay bound to it)."""
        self.grad.zero_()

    def check_bound(self):
        """Raise if autograd replaced a ``.grad`` instead of accumulating into the flat buffer."""
        for p, g in zip(self.module.parameters(), self._bound):
            if p.grad is not g:
                raise RuntimeError("a parameter's .grad was replaced; the flat gradient would be stale")


def _owner(module, dotted):
    """The submodule holding parameter ``dotted`` (e.g. ``"0.weight"``) and its attribute name."""
    *path, attr = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, attr
