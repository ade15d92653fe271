"""psgrad's batch scripts, submitted with sbatch to a real single-node SLURM (launch/slurm/local-cluster.sh).

Opt in with ``python -m pytest -m slurm tests/slurm`` (as root: the script installs slurm-wlm and munge
with apt-get when they are missing and runs the daemons). The job uses this interpreter's environment.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "launch" / "slurm" / "local-cluster.sh"
JOB_TIMEOUT_S = 900                    # local-cluster.sh's own wait for the job
CALL_TIMEOUT_S = JOB_TIMEOUT_S + 300   # the whole call: daemons' start-up, then the job

ROUNDS = 5
WORKERS = 8                            # local-cluster.sh submits -n 9: server + 8 workers

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(2 * CALL_TIMEOUT_S)]


def cluster(*args, timeout=CALL_TIMEOUT_S, **settings):
    env = dict(os.environ, PSGRAD_VENV=sys.prefix, PSGRAD_SLURM_ROUNDS=str(ROUNDS), **settings)
    return subprocess.run(["bash", str(CLUSTER), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def running_cluster():
    if os.geteuid() != 0:
        pytest.skip("local-cluster.sh runs the SLURM daemons as root")
    if sys.prefix == sys.base_prefix:
        pytest.skip("the job needs a virtual environment to activate; run pytest from one")
    started = cluster("--start", timeout=600)
    assert started.returncode == 0, started.stdout + started.stderr
    yield
    cluster("--stop", timeout=120)


@pytest.mark.parametrize("script, agents_per_worker", [("psgrad-mpiexec.sbatch", 1), ("psgrad-srun.sbatch", 2)])
def test_batch_script_runs_psgrad_to_completion_under_sbatch(running_cluster, script, agents_per_worker):
    done = cluster("--script", str(REPO / "launch" / "slurm" / script), "--timeout", str(JOB_TIMEOUT_S),
                   PSGRAD_AGENTS_PER_WORKER=str(agents_per_worker))
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "COMPLETED, exit code 0:0" in report
    run_dir = Path(next(line.split("=", 1)[1] for line in done.stdout.splitlines()
                        if line.startswith("PSGRAD_RUN_DIR=")))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == ROUNDS, report
    assert summary["agents"] == WORKERS * agents_per_worker, report
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 1 + ROUNDS, "metrics.csv: a header, round 0, then one row per round"


def test_the_default_batch_script_is_the_mpiexec_one():
    assert (REPO / "launch" / "slurm" / "psgrad.sbatch").resolve() == \
        (REPO / "launch" / "slurm" / "psgrad-mpiexec.sbatch").resolve()
