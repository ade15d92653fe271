"""Stateful schemes on real MPI ranks: ``mpirun -n 3 python -m pytest --with-mpi tests/mpi/test_schemes_mpi.py``.

A representative set (a private accumulator, shifts, a trigger, the predictor) must give the very same
model and bit counts over MPI as in one process, with every agent's state digest checked every round.
"""
from pathlib import Path

import pytest

from psgrad import config
from psgrad.runtime.loop import build, resolve_workers, run_local, run_mpi
from run_files import rows

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(300)]


@pytest.mark.parametrize("scheme,params", [
    ("ef", {}), ("ef21", {}), ("diana", {}), ("lag", {"eps": 0.2}),
    ("tpc", {"p": 3, "eps": 0.1, "max_silent": 4}), ("tpc", {"p": 2, "coef_bits": 32, "xi": 1.0}),
])
def test_scheme_over_mpi_equals_the_local_run_bit_for_bit(mpi_comm, tmp_path, scheme, params):
    root = mpi_comm.bcast(str(tmp_path), root=0)
    base = [f"run.results_dir={root}", "run.log_every=1000", "run.rounds=25", "run.digest_every=1",
            "run.agents_per_worker=2", "task.name=linreg", "optim.lr=0.05", f"scheme.name={scheme}",
            "scheme.codec=fp16" if scheme != "diana" else "scheme.codec=fp32"]
    cfg = resolve_workers(config.load(None, [*base, "run.name=mpi"]), mpi_comm.Get_size())
    cfg.scheme.params = dict(params)
    summary, node = run_mpi(cfg, *build(cfg), mpi_comm, log=lambda line: None)
    if mpi_comm.Get_rank() != 0:
        return
    local = resolve_workers(config.load(None, [*base, "run.name=local", f"run.workers={mpi_comm.Get_size() - 1}"]), 1)
    local.scheme.params = dict(params)
    local_summary, local_server = run_local(local, *build(local), log=lambda line: None)
    assert node.params.tobytes() == local_server.params.tobytes()
    assert rows(Path(root) / "mpi" / "agents.csv") == rows(Path(root) / "local" / "agents.csv")
    assert summary["uplink_payload_bits"] == local_summary["uplink_payload_bits"]
