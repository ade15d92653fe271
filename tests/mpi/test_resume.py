"""Checkpoint and resume on real MPI ranks: ``mpirun -n 3 python -m pytest --with-mpi -m mpi tests/mpi``."""
from pathlib import Path

import pytest

from psgrad import config
from psgrad.runtime import checkpoint
from psgrad.runtime.loop import NoStop, Stopped, build, resolve_workers, run_local, run_mpi
from run_files import rows
from schemes_under_test import run_settings, under_test

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(300)]

TASK = ["task.name=logreg", "task.batch_size=16", "optim.momentum=0.9", "run.agents_per_worker=2", "run.rounds=8",
        "run.eval_every=3", "run.digest_every=2", "run.log_every=1000"]


class StopAt:
    """True from the ``n``-th check on: a SIGTERM that reaches only this rank."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    @property
    def requested(self):
        self.calls += 1
        return self.calls >= self.n


@pytest.mark.parametrize("scheme_name", under_test())
def test_an_mpi_run_stopped_by_one_worker_resumes_equal_to_an_uninterrupted_local_run(mpi_comm, tmp_path,
                                                                                      scheme_name):
    comm = mpi_comm
    root = Path(comm.bcast(str(tmp_path), root=0))
    sets = [f"run.results_dir={root}", *TASK, *run_settings(scheme_name)]
    cfg = resolve_workers(config.load(None, [*sets, "run.name=mpi"]), comm.Get_size())
    task, sc = build(cfg)
    # Worker rank 1 gets "SIGTERM" while computing round 4; its messages ask the server to stop
    with pytest.raises(Stopped) as info:
        run_mpi(cfg, task, sc, comm, log=lambda line: None, stop=StopAt(5) if comm.Get_rank() == 1 else NoStop())
    assert info.value.round == 5
    comm.Barrier()
    resume = checkpoint.load(root / "mpi", cfg, sc, task)
    summary, node = run_mpi(cfg, task, sc, comm, log=lambda line: None, resume=resume)
    if comm.Get_rank() != 0:
        return
    local_cfg = resolve_workers(config.load(None, [*sets, "run.name=local", f"run.workers={comm.Get_size() - 1}"]), 1)
    local_summary, local_server = run_local(local_cfg, *build(local_cfg), log=lambda line: None)
    assert node.params.tobytes() == local_server.params.tobytes()
    for name in ("metrics.csv", "agents.csv"):
        assert rows(root / "mpi" / name) == rows(root / "local" / name)
    for k in ("uplink_payload_bits", "uplink_wire_bytes", "downlink_payload_bits", "final", "agent_loss"):
        assert summary[k] == local_summary[k]
