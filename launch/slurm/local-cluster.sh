#!/bin/bash
# A real single-node SLURM cluster on this machine, to check that psgrad's batch scripts run.
#
#   launch/slurm/local-cluster.sh [--script FILE] [--venv DIR] [--timeout SECONDS]
#       start munged, slurmctld and slurmd (installing Debian's slurm-wlm and munge if missing),
#       submit FILE (default launch/slurm/psgrad.sbatch) with `sbatch -N 1 -n 9 --overcommit`,
#       wait for it, and check that it COMPLETED and that psgrad wrote its results;
#       the cluster keeps running for further submissions.
#   launch/slurm/local-cluster.sh --start    start the cluster only
#   launch/slurm/local-cluster.sh --stop     stop the daemons this script started
#
# Needs root (it installs packages and runs the daemons as root). Everything lives under
# PSGRAD_SLURM_DIR (default /tmp/psgrad-slurm): configuration, munge key and socket, state,
# logs, and the job's results; nothing under /etc is changed. All traffic is on 127.0.0.1.
# Exit status: 0 when the job completed with its results, 1 otherwise (with the reason).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # the daemons live in sbin, not on every PATH

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ------------------------------------------------------------- settings (environment) ----
STATE_DIR=${PSGRAD_SLURM_DIR:-/tmp/psgrad-slurm}
CTLD_PORT=${PSGRAD_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${PSGRAD_SLURMD_PORT:-16818}
NTASKS=${PSGRAD_SLURM_NTASKS:-9}                      # 1 server + 8 workers
ROUNDS=${PSGRAD_SLURM_ROUNDS:-5}                      # a short training run
VENV=${PSGRAD_VENV:-$REPO/.venv}
SCRIPT=$REPO/launch/slurm/psgrad.sbatch
TIMEOUT=${PSGRAD_SLURM_TIMEOUT:-900}                  # seconds to wait for the job
START_TIMEOUT=60                                      # seconds to wait for the daemons
# ------------------------------------------------------------------------------------------

ACTION=run
while (($#)); do
    case $1 in
        --script) SCRIPT=$(realpath "$2"); shift 2 ;;
        --venv) VENV=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --start) ACTION=start; shift ;;
        --stop) ACTION=stop; shift ;;
        -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "local-cluster: unknown argument '$1' (valid: --script FILE, --venv DIR, --timeout S, --start, --stop)" >&2; exit 2 ;;
    esac
done

CONF=$STATE_DIR/slurm.conf
MUNGE_DIR=$STATE_DIR/munge
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/log
export SLURM_CONF=$CONF

log() { echo "local-cluster: $*"; }
fail() {
    echo "local-cluster: FAILED: $*" >&2
    exit 1
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Polls COMMAND until it succeeds or SECONDS pass.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]})) || return 0
    [[ $EUID == 0 ]] || fail "missing ${missing[*]} and not root: install Debian's slurm-wlm and munge first"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
}

write_config() {
    local host cpus topology
    host=$(hostname -s)
    cpus=$(nproc --all)
    # The node's real topology, as slurmd itself reports it (a mismatch would drain the node).
    topology=$(slurmd -C | head -n 1 | grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' ||
        echo "CPUs=$cpus")
    mkdir -p "$STATE_DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/state" "$STATE_DIR/spool"
    chmod 0700 "$MUNGE_DIR"
    cat >"$CONF" <<EOF
# Written by launch/slurm/local-cluster.sh: one node, loopback only.
ClusterName=psgrad-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_DIR/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups in containers: track processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# Keep finished jobs visible to scontrol for an hour (there is no accounting database).
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host $topology State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if pid_alive "$RUN_DIR/munged.pid"; then return 0; fi
    if [[ ! -f $MUNGE_DIR/munge.key ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_DIR/munge.key"
        else
            dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
        fi
        chmod 0400 "$MUNGE_DIR/munge.key"
    fi
    munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_DIR/munge.socket" \
        --pid-file="$RUN_DIR/munged.pid" --log-file="$LOG_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" ||
        fail "munged did not start (see $LOG_DIR/munged.log)"
    wait_for "$START_TIMEOUT" munge munge --socket="$MUNGE_DIR/munge.socket" --no-input ||
        fail "munged does not answer on $MUNGE_DIR/munge.socket (see $LOG_DIR/munged.log)"
}

node_ready() {
    local state
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1)
    [[ $state == idle* || $state == mixed* || $state == allocated* ]]
}

start_cluster() {
    install_packages
    if pid_alive "$RUN_DIR/slurmctld.pid" && pid_alive "$RUN_DIR/slurmd.pid" && scontrol ping >/dev/null 2>&1; then
        log "cluster already running ($CONF)"
        return 0
    fi
    stop_cluster quiet
    write_config
    start_munge
    # -c: start from a clean state (no jobs left over from an earlier cluster).
    slurmctld -c -f "$CONF" || fail "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
    wait_for "$START_TIMEOUT" slurmctld scontrol ping ||
        fail "slurmctld does not answer within ${START_TIMEOUT}s (see $LOG_DIR/slurmctld.log)"
    slurmd -f "$CONF" -N "$(hostname -s)" || fail "slurmd did not start (see $LOG_DIR/slurmd.log)"
    if ! wait_for "$START_TIMEOUT" node node_ready; then
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        wait_for 10 node node_ready ||
            fail "node not ready: $(sinfo -N -o '%N %T %E' 2>&1 | tail -n 1) (see $LOG_DIR/slurmd.log)"
    fi
    log "cluster up: $(sinfo -h -o '%P %D nodes %T %c CPUs' | head -n 1) ($CONF)"
}

stop_cluster() {
    local name pidfile pid
    for name in slurmd slurmctld munged; do
        pidfile=$RUN_DIR/$name.pid
        pid_alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid"
        wait_for 30 "$name" bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
        [[ ${1:-} == quiet ]] || log "stopped $name (pid $pid)"
    done
}

job_field() {  # job_field JOBID FIELD
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

show_job_log() {
    local out=$1
    echo "----- job output ($out) -----"
    tail -n 40 "$out" 2>/dev/null || echo "(no output)"
    echo "-----------------------------"
}

run_job() {
    [[ -f $SCRIPT ]] || fail "no batch script $SCRIPT"
    [[ -f $VENV/bin/activate ]] || fail "no virtual environment at $VENV (pass --venv DIR or PSGRAD_VENV=DIR)"
    local name out jobid state exit_code deadline run_dir
    name=local-$(basename "$SCRIPT" .sbatch)-$(date +%Y%m%d-%H%M%S)
    run_dir=$STATE_DIR/results/$name
    out=$LOG_DIR/$name.out
    mkdir -p "$STATE_DIR/results"
    # The batch script reads its run settings from the environment (sbatch --export=ALL).
    export PSGRAD_ROOT=$REPO PSGRAD_VENV=$VENV PSGRAD_RESULTS=$STATE_DIR/results PSGRAD_RUN_NAME=$name
    export PSGRAD_SET="run.rounds=$ROUNDS ${PSGRAD_SET:-}"
    cd "$REPO"
    jobid=$(sbatch --parsable -N 1 -n "$NTASKS" --overcommit --export=ALL -o "$out" -J "$name" "$SCRIPT") ||
        fail "sbatch refused $SCRIPT"
    log "submitted $(basename "$SCRIPT") as job $jobid (run $name), waiting up to ${TIMEOUT}s"
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        state=$(job_field "$jobid" JobState)
        case $state in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) break ;;
        esac
        if ((SECONDS >= deadline)); then
            scancel "$jobid" || true
            show_job_log "$out"
            fail "job $jobid still ${state:-unknown} after ${TIMEOUT}s; cancelled"
        fi
        sleep 2
    done
    exit_code=$(job_field "$jobid" ExitCode)
    show_job_log "$out"
    [[ $state == COMPLETED && $exit_code == 0:0 ]] ||
        fail "job $jobid ended $state with exit code $exit_code (job log above, daemons' logs in $LOG_DIR)"
    local f
    for f in summary.json metrics.csv config.yaml; do
        [[ -s $run_dir/$f ]] || fail "job $jobid COMPLETED but $run_dir/$f is missing"
    done
    log "job $jobid COMPLETED, exit code $exit_code, results in $run_dir: $(ls "$run_dir" | tr '\n' ' ')"
    echo "PSGRAD_RUN_DIR=$run_dir"
}

case $ACTION in
    start) start_cluster ;;
    stop) stop_cluster ;;
    run) start_cluster && run_job ;;
esac
