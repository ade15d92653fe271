"""Where a task's model and data live, and what psgrad cannot make deterministic there.

``device`` is ``"cpu"``, ``"cuda"`` (the current GPU), ``"cuda:N"``, or
``"auto"`` (the current GPU when torch finds one, else the CPU). Gradients
always reach the codecs on the CPU, in a host buffer the task reuses.
"""
import torch

from ..errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device):
    """The ``torch.device`` that ``device`` names, with an explicit GPU index; ConfigError if it is unusable."""
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not name.startswith("cuda:"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but torch finds no CUDA GPU here; use cpu or auto")
    try:
        gpu = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}") from None
    index = torch.cuda.current_device() if gpu.index is None else gpu.index
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def determinism_warnings(device):
    """Lines saying why gradients on ``device`` may differ between two runs of the same job (none on the CPU).

    On the CPU a gradient is a function of its arguments and torch's thread
    count. On a GPU, kernels that accumulate with atomics (scatter/index_add,
    some convolution and pooling backward passes) sum in an order that varies
    from run to run unless deterministic algorithms are switched on.
    """
    if device.type != "cuda":
        return []
    warnings = []
    if not torch.are_deterministic_algorithms_enabled():
        warnings.append("gradients on a GPU may differ between runs in their last bits (nondeterministic CUDA "
                        "kernels); for bit-identical runs call torch.use_deterministic_algorithms(True) and set "
                        "CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting")
    if torch.backends.cudnn.benchmark:
        warnings.append("torch.backends.cudnn.benchmark is on: cuDNN may pick different convolution algorithms "
                        "in different processes, so their gradients differ in their last bits")
    return warnings
