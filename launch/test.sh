#!/usr/bin/env bash
# The whole test suite: one-process tests (which also launch child mpirun jobs under timeouts), then the
# MPI protocol tests on 3 real ranks. Fails if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
python -m pytest "$@"
mpirun -n 3 python -m pytest --with-mpi -m mpi -q tests/mpi
