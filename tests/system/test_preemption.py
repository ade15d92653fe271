"""Preemption on real mpirun jobs: SIGKILL at an arbitrary moment, or SIGTERM, then ``--resume``.

A resumed job must end with the model, metrics.csv, agents.csv and bit counts
of the same job never interrupted (computed here in one process: an MPI run
equals a local run bit for bit).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from psgrad import config
from psgrad.runtime import checkpoint
from psgrad.runtime.loop import build, resolve_workers, run_local
from run_files import rows

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 120
# On top of the default job (what psgrad.train runs without --config), in the test's own process's CPU kernels.
SETTINGS = ["run.reproducible=false", "task.name=logreg",
            "task.batch_size=16", "optim.momentum=0.9", "run.agents_per_worker=2",
            "run.rounds=9", "run.eval_every=2", "run.digest_every=3", "run.checkpoint_every=2", "run.log_every=1000"]


def launch(args, fault_dir, **env):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PSGRAD_FAULT_DIR": str(fault_dir),
           **env}
    return subprocess.Popen(["mpirun", "-n", "3", sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for(path, proc):
    deadline = time.monotonic() + LIMIT
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def run_job(tmp_path, name, fault_round, **env):
    fault_dir = tmp_path / f"fault-{name}"
    fault_dir.mkdir()
    sets = [f"--set={s}" for s in [*SETTINGS, f"run.results_dir={tmp_path}", f"run.name={name}"]]
    proc = launch(["tests/system/faulty_train.py", "pause", "1", *sets], fault_dir,
                  PSGRAD_FAULT_ROUND=str(fault_round), **env)
    wait_for(fault_dir / "paused", proc)
    return proc, fault_dir


def resume(tmp_path, name):
    t0 = time.monotonic()
    r = subprocess.run(["mpirun", "-n", "3", sys.executable, "-m", "psgrad.train", "--resume", str(tmp_path / name)],
                       capture_output=True, text=True, timeout=LIMIT, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t0


def uninterrupted(tmp_path):
    settings = [*SETTINGS, f"run.results_dir={tmp_path}", "run.name=ref", "run.workers=2"]
    cfg = resolve_workers(config.load(config.DEFAULT_JOB, settings), 1)
    return run_local(cfg, *build(cfg), log=lambda line: None)


def assert_equal_to_uninterrupted(tmp_path, name):
    ref_summary, ref_server = uninterrupted(tmp_path)
    for f in ("metrics.csv", "agents.csv"):
        assert rows(tmp_path / name / f) == rows(tmp_path / "ref" / f)
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    skip = ("timings_s", "peak_rss_mb", "dir", "name")  # measurements of this process, not of the run
    assert {k: v for k, v in summary.items() if k not in skip} == {k: v for k, v in json.loads(
        json.dumps(ref_summary)).items() if k not in skip}
    assert np.load(tmp_path / name / "model.npy").tobytes() == ref_server.params.tobytes()


def test_a_job_killed_with_sigkill_mid_round_resumes_bit_identical(tmp_path):
    proc, fault_dir = run_job(tmp_path, "killed", fault_round=5)  # rank 1 stalls inside round 5
    # Kill everything at once, as a node failure would: mpirun and every rank, no chance to clean up
    for pid_file in fault_dir.glob("pid.*"):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    proc.kill()
    proc.communicate()
    meta, _ = checkpoint.from_bytes((tmp_path / "killed" / checkpoint.FILE_NAME).read_bytes(), "test")
    assert meta["round"] == 4
    assert len(rows(tmp_path / "killed" / "metrics.csv")) == 6  # rounds 0-5: more than the checkpoint holds
    resume(tmp_path, "killed")
    assert_equal_to_uninterrupted(tmp_path, "killed")


def test_sigterm_stops_every_rank_at_a_round_boundary_with_a_checkpoint_and_status_75(tmp_path):
    proc, _ = run_job(tmp_path, "stopped", fault_round=3, PSGRAD_PAUSE="2")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # mpirun forwards it to every rank
    out, err = proc.communicate(timeout=LIMIT)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 75, err
    first = next(line for line in err.splitlines() if line.startswith("psgrad:"))
    assert first.startswith("psgrad: stopped on SIGTERM after 4 rounds; checkpoint written to "), err
    assert elapsed < 30
    meta, _ = checkpoint.from_bytes((tmp_path / "stopped" / checkpoint.FILE_NAME).read_bytes(), "test")
    assert (meta["round"], meta["reason"]) == (4, "stop")
    resume(tmp_path, "stopped")
    assert_equal_to_uninterrupted(tmp_path, "stopped")
    assert not np.isnan(json.loads((tmp_path / "stopped" / "summary.json").read_text())["agent_loss"])
