"""A torch module whose parameters live in one flat float32 buffer, and whose gradients in another.

Every parameter of the module is a view into ``params`` and every ``.grad`` a
view into ``grad``, so loading a flat vector is one ``copy_`` and the flat
gradient needs no concatenation: autograd accumulates into the existing
``.grad`` views in place (they are zeroed, never replaced, between calls).
The order of the flat vector is ``module.named_parameters()`` order, each
parameter in row-major layout.
"""
import numpy as np
import torch


class FlatModule:
    """Binds ``module``'s parameters to a flat buffer ``params`` and gradients to ``grad``."""

    def __init__(self, module):
        self.module = module
        named = list(module.named_parameters())
        self.shapes = [(name, tuple(p.shape)) for name, p in named]
        self.d = sum(p.numel() for _, p in named)
        self.params = torch.zeros(self.d, dtype=torch.float32)
        self.grad = torch.zeros(self.d, dtype=torch.float32)
        offset = 0
        for name, p in named:
            n = p.numel()
            owner, attr = _owner(module, name)
            view = torch.nn.Parameter(self.params[offset:offset + n].view(p.shape))
            view.grad = self.grad[offset:offset + n].view(p.shape)
            setattr(owner, attr, view)
            offset += n
        self._bound = [p.grad for p in module.parameters()]

    def load(self, flat):
        """Copy the flat float32 vector ``flat`` (numpy, length ``d``) into the module's parameters."""
        if flat.shape != (self.d,):
            raise ValueError(f"params must have shape ({self.d},), got {flat.shape}")
        self.params.copy_(torch.from_numpy(np.asarray(flat, dtype=np.float32)))

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
