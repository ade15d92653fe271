#!/usr/bin/env bash
# Run psgrad under mpirun on this machine: one server rank and N worker ranks (default 8).
#   bash launch/local.sh [N] [psgrad.train options...]
#   bash launch/local.sh 8 --config configs/default.yaml --set run.rounds=100
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-8}
shift || true
export OMP_NUM_THREADS=1
exec mpirun -n $((workers + 1)) python -m psgrad.train "$@"
