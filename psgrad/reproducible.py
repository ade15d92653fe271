"""``run.reproducible: true``: the same bits on any x86-64 CPU for the same config, seed and software.

What makes a run's numbers depend on the CPU, and what this mode does about it (docs/reliability.md,
"Reproducible runs"):

- ATen's CPU kernels (sums, means, element-wise maths) are compiled for several instruction sets, and the
  widest the CPU has is chosen at torch's first operation; AVX-512 and AVX2 code add in different orders.
  ``ATEN_CPU_CAPABILITY=default`` selects the portable build on every CPU.
- torch's float32 matrix products go to MKL, which also picks its kernels per CPU.
  ``MKL_CBWR=COMPATIBLE,STRICT`` (MKL's conditional numerical reproducibility) runs one code path everywhere.
- oneDNN and NNPACK (convolutions) choose kernels and blockings per CPU and cache size: both are switched
  off, so convolutions take ATen's own path to MKL.
- one intra-op thread (a thread count changes how a sum is split), and torch's deterministic algorithms.

psgrad's own arithmetic needs nothing: its numba kernels add in a fixed order without fast-math, so
their results do not depend on the vector width; the few small products that numpy would hand to
BLAS are numba loops too (``schemes.kernels.residual_sq``).

Both variables are read by torch at its first operation, not at import: ``enable`` sets them, and it
refuses (``ConfigError``) when torch has already run with other kernels. MKL's mode cannot be read back:
a matrix product run before ``enable`` fixes it for the process. Set them in the environment before
starting Python to use a model built beforehand.
"""
import os

from .errors import ConfigError

ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE,STRICT"}


def enable():
    """Put this process in reproducible mode (idempotent); ``ConfigError`` if torch already runs otherwise."""
    os.environ.update(ENVIRONMENT)
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise ConfigError(
            f"run.reproducible: true, but torch has already run an operation with its {capability} kernels; "
            f"set {' '.join(f'{k}={v}' for k, v in ENVIRONMENT.items())} in the environment before starting "
            f"Python, or call psgrad.run before any torch operation")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
