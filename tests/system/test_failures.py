"""A failure anywhere ends every rank quickly with a clear first line (child mpirun jobs under timeouts).

These run in a plain one-process pytest: each launches its own ``mpirun -n 3``.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 90  # a hang fails the test instead of CI


def mpirun(args, tmp_path, n=3, mpirun_options=(), env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    t0 = time.monotonic()
    r = subprocess.run(["mpirun", *mpirun_options, "-n", str(n), sys.executable, *args,
                        f"--set=run.results_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=LIMIT, env=env, cwd=ROOT)
    return r, time.monotonic() - t0


def first_psgrad_line(stderr):
    return next(line for line in stderr.splitlines() if line.startswith("psgrad:"))


@pytest.mark.parametrize("override,message", [
    ("run.rounds=-1", "run.rounds: expected a value > 0"),
    ("scheme.codec=nope", "unknown codec 'nope'"),
    ("run.workers=5", "run.workers=5 but the MPI world has 2 worker ranks"),
])
def test_a_config_error_ends_every_rank_with_status_2_and_one_line(tmp_path, override, message):
    r, _ = mpirun(["-m", "psgrad.train", "--set", override], tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr


@pytest.mark.parametrize("override,message", [
    ("optim.lr=abc", "optim.lr: expected float, got 'abc' (str)"),
    ("run.rounds=-1", "run.rounds: expected a value > 0"),
    ("scheme.codec=nope", "unknown codec 'nope'"),
])
def test_a_config_error_is_found_before_torch_is_imported(override, message):
    code = (f"import sys; from psgrad import train; status = train.main(['--local', '--set', {override!r}]); "
            f"print(status, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert r.stderr.startswith(f"psgrad: config error: {message}") and r.stderr.count("\n") == 1, r.stderr


def test_an_exception_on_one_worker_ends_the_job_naming_rank_agent_and_round(tmp_path):
    r, elapsed = mpirun(["tests/system/faulty_train.py", "raise", "2", "--set", "run.rounds=20"], tmp_path)
    assert r.returncode != 0, r.stderr
    line = first_psgrad_line(r.stderr)
    assert line == "psgrad: error on rank 2 (agent 1, round 2): RuntimeError: injected fault", r.stderr
    assert elapsed < LIMIT - 30


def test_an_exception_on_the_server_ends_the_job_naming_rank_agent_and_round(tmp_path):
    r, elapsed = mpirun(["tests/system/faulty_train.py", "server-raise", "0", "--set", "run.rounds=20"], tmp_path)
    assert r.returncode != 0, r.stderr
    line = first_psgrad_line(r.stderr)
    assert line == "psgrad: error on rank 0 (agent 1, round 2): RuntimeError: injected fault", r.stderr
    assert elapsed < LIMIT - 30


def test_a_hung_worker_times_the_server_out_and_ends_every_rank(tmp_path):
    r, elapsed = mpirun(["tests/system/faulty_train.py", "hang", "1", "--set", "run.rounds=20",
                         "--set", "run.timeout=3"], tmp_path)
    assert r.returncode != 0, r.stderr
    line = first_psgrad_line(r.stderr)
    assert line == ("psgrad: error on rank 0 (round 2): PsgradError: timed out after 3 s waiting for agents [0] "
                    "on ranks [1]"), r.stderr
    assert elapsed < LIMIT - 30


def test_a_rank_that_never_reaches_the_start_up_handshake_ends_the_job_after_run_timeout(tmp_path):
    r, elapsed = mpirun(["tests/system/faulty_train.py", "late", "2", "--set", "run.timeout=3"], tmp_path,
                        env={"PSGRAD_PAUSE": "600"})
    assert r.returncode != 0, r.stderr
    assert first_psgrad_line(r.stderr).endswith(
        ": timed out after 3 s waiting for every rank at the start-up handshake"), r.stderr
    assert elapsed < LIMIT - 30


def test_a_worker_that_dies_ends_the_job(tmp_path):
    # mpirun itself sees the death first, kills every other rank at once and exits with the dead rank's status
    r, elapsed = mpirun(["tests/system/faulty_train.py", "die", "2", "--set", "run.rounds=20",
                         "--set", "run.timeout=30"], tmp_path)
    assert r.returncode == 9, r.stderr
    assert "psgrad: error" not in r.stderr  # no rank lived to report: the launcher's status is the report
    assert elapsed < LIMIT - 30


def test_a_worker_that_dies_is_reported_by_the_server_when_the_launcher_does_not_clean_up(tmp_path):
    r, elapsed = mpirun(["tests/system/faulty_train.py", "die", "2", "--set", "run.rounds=20",
                         "--set", "run.timeout=3"], tmp_path, mpirun_options=["-disable-auto-cleanup"])
    assert r.returncode != 0, r.stderr
    line = first_psgrad_line(r.stderr)
    assert line == ("psgrad: error on rank 0 (round 2): PsgradError: timed out after 3 s waiting for agents [1] "
                    "on ranks [2]"), r.stderr
    assert elapsed < LIMIT - 30


@pytest.mark.parametrize("args,message", [
    (["--resume", "nowhere/run"], "cannot resume: nowhere/run is not a run folder"),
    (["--config", "nowhere.yaml"], "config file nowhere.yaml does not exist"),
    (["--set", "task.dataset=nowhere.svm"], "dataset 'nowhere.svm' is neither"),
])
def test_a_missing_file_ends_every_rank_with_status_2_and_one_line(tmp_path, args, message):
    r, _ = mpirun(["-m", "psgrad.train", *args], tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
