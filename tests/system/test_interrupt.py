"""Ctrl-C on a real training process: the first stops it at a round boundary with a checkpoint, the second at once."""
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(300)


def start(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "psgrad.train", "--local", "--set", f"run.results_dir={tmp_path}",
           "--set", "run.name=r", "--set", "run.rounds=1000000", "--set", "task.name=linreg",
           "--set", "task.dataset=synthetic",
           "--set", "run.log_every=1000000", "--set", "run.eval_every=1000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "r" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") > 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc


def test_ctrl_c_stops_at_a_round_boundary_with_a_checkpoint_and_one_line(tmp_path):
    proc = start(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("psgrad: stopped on SIGINT after "), err
    assert f"--resume {tmp_path / 'r'}" in lines[0]
    assert (tmp_path / "r" / "checkpoint.npz").is_file()


def test_a_second_ctrl_c_stops_at_once_with_one_line(tmp_path):
    proc = start(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (75, 130), err  # the first may already have stopped it
    assert len(err.strip().splitlines()) == 1, err


def test_sigterm_in_the_first_second_stops_at_round_0_with_a_checkpoint(tmp_path):
    # The handler is in place within milliseconds: ``import psgrad`` imports neither numba nor torch
    cmd = [sys.executable, "-m", "psgrad.train", "--local", "--set", f"run.results_dir={tmp_path}",
           "--set", "run.name=r", "--set", "task.name=linreg", "--set", "task.dataset=synthetic"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert err.startswith("psgrad: stopped on SIGTERM after 0 rounds; checkpoint written to "), err
    assert (tmp_path / "r" / "checkpoint.npz").is_file()
