#!/bin/bash
# psgrad on a system MPI: Debian's Open MPI instead of the mpich wheel.
#
#   launch/openmpi.sh [--venv DIR] [--skip-tests] [--skip-train]
#
# 1. installs Debian's openmpi-bin and libopenmpi-dev (apt-get, as root) if mpicc.openmpi is missing;
# 2. creates a separate virtual environment (default .venv-openmpi) and builds mpi4py from source
#    against Open MPI (MPICC=mpicc.openmpi, `pip install --no-binary mpi4py`), then installs torch,
#    psgrad (editable) and the test tools;
# 3. runs the MPI protocol tests under `mpirun --oversubscribe -n 3 ... pytest --with-mpi tests/mpi`;
# 4. runs a short training job under `mpirun --oversubscribe -n 9` and checks its results.
# Exit status 0 when all of it passed. Single node, shared memory and loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ------------------------------------------------------------- settings (environment) ----
VENV=${PSGRAD_OPENMPI_VENV:-$REPO/.venv-openmpi}
PYTHON=${PYTHON:-python3}                 # interpreter the virtual environment is made from
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
NTASKS=${PSGRAD_NTASKS:-9}                # training job: 1 server + 8 workers
ROUNDS=${PSGRAD_ROUNDS:-5}
RESULTS=${PSGRAD_RESULTS:-$REPO/results}
TEST_TIMEOUT=${PSGRAD_TEST_TIMEOUT:-900}  # seconds for the MPI tests, and again for the training job
# ------------------------------------------------------------------------------------------

RUN_TESTS=1
RUN_TRAIN=1
while (($#)); do
    case $1 in
        --venv) VENV=$2; shift 2 ;;
        --skip-tests) RUN_TESTS=0; shift ;;
        --skip-train) RUN_TRAIN=0; shift ;;
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "openmpi.sh: unknown argument '$1' (valid: --venv DIR, --skip-tests, --skip-train)" >&2; exit 2 ;;
    esac
done

log() { echo "openmpi.sh: $*"; }
fail() {
    echo "openmpi.sh: FAILED: $*" >&2
    exit 1
}

# Debian installs Open MPI's tools under their own names next to the generic alternatives;
# the explicit names keep a venv's mpich wheel (its own mpicc/mpirun on PATH) out of the way.
if ! command -v mpicc.openmpi >/dev/null; then
    [[ $EUID == 0 ]] || fail "Open MPI is not installed and this is not root: apt-get install openmpi-bin libopenmpi-dev"
    log "installing openmpi-bin libopenmpi-dev (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends openmpi-bin libopenmpi-dev
fi
MPICC=$(command -v mpicc.openmpi)
MPIRUN=$(command -v mpirun.openmpi)
log "$("$MPIRUN" --version | head -n 1) ($MPIRUN)"

if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV from $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
if ! "$PY" -c 'from mpi4py import MPI; import sys; sys.exit("Open MPI" not in MPI.Get_library_version())' 2>/dev/null; then
    log "building mpi4py against Open MPI (MPICC=$MPICC)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip uninstall -q -y mpi4py mpich 2>/dev/null || true
    MPICC=$MPICC "$PY" -m pip install -q --no-cache-dir --no-binary mpi4py mpi4py
fi
"$PY" -m pip install -q "torch==$TORCH_VERSION"
"$PY" -m pip install -q -e "$REPO[test]"
"$PY" -m pip uninstall -q -y mpich 2>/dev/null || true   # never mix two MPI libraries in one venv
log "mpi4py $("$PY" -c 'import mpi4py; print(mpi4py.__version__)') on: $("$PY" -c 'from mpi4py import MPI; print(MPI.Get_library_version().strip(chr(0)).splitlines()[0])')"

export OMP_NUM_THREADS=1
# Root is refused by Open MPI's mpirun unless both variables are set (or --allow-run-as-root).
if [[ $EUID == 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# One node: shared memory between ranks, and the runtime's own TCP traffic on loopback only.
export OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
# Containers without ptrace rights reject cross-memory attach (CMA); copy through shared memory.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# Open MPI's mpirun with the venv's python first on PATH, under a time limit.
mpirun_venv() {
    timeout "$TEST_TIMEOUT" env PATH="$VENV/bin:$PATH" "$MPIRUN" --oversubscribe "$@"
}

cd "$REPO"
if ((RUN_TESTS)); then
    [[ -d tests/mpi ]] || fail "no tests/mpi folder in $REPO"
    log "MPI protocol tests: mpirun --oversubscribe -n 3 python -m pytest --with-mpi tests/mpi"
    mpirun_venv -n 3 python -m pytest -q --with-mpi tests/mpi ||
        fail "MPI tests failed (or ran past ${TEST_TIMEOUT}s) under Open MPI"
fi
if ((RUN_TRAIN)); then
    name=openmpi-$(date +%Y%m%d-%H%M%S)
    log "training: mpirun --oversubscribe -n $NTASKS python -m psgrad.train (run $name, $ROUNDS rounds)"
    start=$SECONDS
    mpirun_venv -n "$NTASKS" python -m psgrad.train --set "run.name=$name" --set "run.results_dir=$RESULTS" \
        --set "run.rounds=$ROUNDS" ||
        fail "training job failed (or ran past ${TEST_TIMEOUT}s) under Open MPI"
    for f in summary.json metrics.csv config.yaml; do
        [[ -s $RESULTS/$name/$f ]] || fail "training finished but $RESULTS/$name/$f is missing"
    done
    log "training COMPLETED in $((SECONDS - start)) s, results in $RESULTS/$name"
fi
log "all passed"
