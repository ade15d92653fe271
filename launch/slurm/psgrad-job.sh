# Shared body of the psgrad batch scripts (psgrad-mpiexec.sbatch, psgrad-srun.sbatch).
#
# Sourced after the batch script has set its PSGRAD_* variables. `psgrad_run LAUNCHER...` sets up
# the environment, chooses between a fresh start and a resume, and runs
#     LAUNCHER... python -m psgrad.train ARGS
# with the batch shell waiting in the background so that it can react to signals:
#   USR1 (sent by SLURM before the time limit, `#SBATCH --signal=B:USR1@...`): send SIGTERM to
#        the ranks, wait for them to write their checkpoint and exit, then requeue the job;
#   TERM (scancel, preemption): pass it on to the ranks and exit; a preempted job with
#        `#SBATCH --requeue` is requeued by SLURM itself, a cancelled one stays cancelled.
# USR1 rather than TERM marks the time limit so that `scancel` still cancels for good.
# A requeued job runs this script again: it resumes from the run folder's checkpoint when one
# exists, and exits at once if the run had already finished.

psgrad_die() {
    echo "psgrad job: error: $*" >&2
    exit 1
}

psgrad_log() {
    echo "psgrad job [$(date '+%F %T')]: $*"
}

# A checkpoint written by `python -m psgrad.train` into its run folder.
psgrad_checkpoint_exists() {
    [[ -e $1/checkpoint.npz ]]
}

psgrad_setup() {
    cd "$PSGRAD_ROOT" || psgrad_die "cannot enter PSGRAD_ROOT=$PSGRAD_ROOT (submit from the psgrad checkout or set PSGRAD_ROOT)"
    [[ -d psgrad ]] || psgrad_die "PSGRAD_ROOT=$PSGRAD_ROOT is not a psgrad checkout (no psgrad/ folder)"
    if [[ -n ${PSGRAD_MODULES:-} ]]; then
        type module >/dev/null 2>&1 || psgrad_die "PSGRAD_MODULES='$PSGRAD_MODULES' is set but this node has no 'module' command"
        # shellcheck disable=SC2086  # a list of module names
        module load $PSGRAD_MODULES || psgrad_die "module load $PSGRAD_MODULES failed"
    fi
    [[ -f $PSGRAD_VENV/bin/activate ]] ||
        psgrad_die "no virtual environment at PSGRAD_VENV=$PSGRAD_VENV (create it as docs/hpc.md describes, or point PSGRAD_VENV at yours)"
    # shellcheck disable=SC1091
    source "$PSGRAD_VENV/bin/activate"
    # One thread per rank: ranks already fill the allocation's CPUs, and numba/torch/BLAS threads
    # on top of them only oversubscribe the cores.
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
}

# Fills PSGRAD_ARGS with the arguments of psgrad.train; returns 1 if the run has already finished.
psgrad_train_args() {
    local run_dir=$PSGRAD_RESULTS/$PSGRAD_RUN_NAME
    if psgrad_checkpoint_exists "$run_dir"; then
        psgrad_log "checkpoint found in $run_dir: resuming"
        PSGRAD_ARGS=(--resume "$run_dir")
        return 0
    fi
    if ((${SLURM_RESTART_COUNT:-0} > 0)) && [[ -f $run_dir/summary.json ]]; then
        psgrad_log "restart ${SLURM_RESTART_COUNT}: $run_dir/summary.json exists, the run has finished"
        return 1
    fi
    PSGRAD_ARGS=()
    [[ -n ${PSGRAD_CONFIG:-} ]] && PSGRAD_ARGS+=(--config "$PSGRAD_CONFIG")
    PSGRAD_ARGS+=(--set "run.name=$PSGRAD_RUN_NAME"
        --set "run.results_dir=$PSGRAD_RESULTS"
        --set "run.agents_per_worker=$PSGRAD_AGENTS_PER_WORKER")
    local s
    for s in ${PSGRAD_SET:-}; do
        PSGRAD_ARGS+=(--set "$s")
    done
}

# MPICH started by `srun --mpi=pmi2` names its shared-memory segment after the job and step ids.
# Ranks killed at a requeue leave that segment in /dev/shm, and a restarted job on the same node
# whose step has the same id attaches to it and hangs in MPI_Init. Restart n therefore burns n
# empty steps first, so that the psgrad step's id differs from every earlier incarnation's.
psgrad_advance_step_ids() {
    local i
    for ((i = 0; i < ${SLURM_RESTART_COUNT:-0}; i++)); do
        srun --ntasks=1 --nodes=1 true || psgrad_die "srun cannot start an empty step"
    done
}

# SIGTERM to every rank, so that psgrad can end the round and write its checkpoint. Hydra's
# mpiexec passes a TERM on to its ranks; srun would instead cancel the step at once (and its
# tasks with SIGKILL), so srun's ranks are signalled through SLURM.
psgrad_stop_ranks() {
    if [[ $PSGRAD_LAUNCHER == srun ]]; then
        scancel --signal=TERM "$SLURM_JOB_ID"
    else
        kill -TERM "$PSGRAD_PID" 2>/dev/null
    fi
}

psgrad_on_usr1() {
    psgrad_log "time limit near: stopping the ranks, then requeueing job $SLURM_JOB_ID"
    PSGRAD_REQUEUE=1
    psgrad_stop_ranks
}

psgrad_on_term() {
    psgrad_log "SIGTERM (cancel or preemption): stopping the ranks"
    psgrad_stop_ranks
}

psgrad_run() {
    psgrad_setup
    psgrad_train_args || return 0
    psgrad_log "job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-?}, ${SLURM_NTASKS:-?} tasks"
    psgrad_log "$* python -m psgrad.train ${PSGRAD_ARGS[*]}"
    PSGRAD_REQUEUE=0
    PSGRAD_LAUNCHER=$(basename "$1")
    trap psgrad_on_usr1 USR1
    trap psgrad_on_term TERM
    "$@" python -m psgrad.train "${PSGRAD_ARGS[@]}" &
    PSGRAD_PID=$!
    local rc
    # `wait` returns early (status > 128) whenever a trapped signal arrives; keep waiting for
    # the launcher itself so that the ranks can finish writing.
    while :; do
        wait "$PSGRAD_PID"
        rc=$?
        kill -0 "$PSGRAD_PID" 2>/dev/null || break
    done
    if ((PSGRAD_REQUEUE)); then
        scontrol requeue "$SLURM_JOB_ID" || psgrad_die "scontrol requeue $SLURM_JOB_ID failed"
        psgrad_log "requeued"
        return 0
    fi
    psgrad_log "psgrad.train exited with status $rc"
    return "$rc"
}
