"""Protocol tests on real MPI ranks: ``mpirun -n 3 python -m pytest --with-mpi -m mpi tests/mpi``."""
from pathlib import Path

import numpy as np
import pytest

from psgrad import config
from psgrad.runtime.loop import build, resolve_workers, run_local, run_mpi
from run_files import rows

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(300)]


def shared_dir(comm, tmp_path):
    return comm.bcast(str(tmp_path), root=0)


def mpi_and_local(comm, tmp_path, *overrides):
    root = shared_dir(comm, tmp_path)
    base = [f"run.results_dir={root}", "run.log_every=1000", "scheme.name=direct", "scheme.codec=fp32", *overrides]
    cfg = resolve_workers(config.load(None, [*base, "run.name=mpi"]), comm.Get_size())
    task, sc = build(cfg)
    summary, node = run_mpi(cfg, task, sc, comm, log=lambda line: None)
    if comm.Get_rank() != 0:
        return None
    local_cfg = resolve_workers(config.load(None, [*base, "run.name=local", f"run.workers={comm.Get_size() - 1}"]), 1)
    local_summary, local_server = run_local(local_cfg, *build(local_cfg), log=lambda line: None)
    return Path(root), summary, node, local_summary, local_server


@pytest.mark.parametrize("overrides", [
    ("run.rounds=12", "scheme.codec=fp16"),
    ("run.rounds=12", "scheme.name=tpc", "scheme.codec=qsgd", "run.agents_per_worker=2"),
    ("run.rounds=8", "run.agents_per_worker=2", "task.name=linreg"),
    ("run.rounds=6", "task.name=mlp", "task.dataset=digits", "task.batch_size=16", "optim.momentum=0.9"),
    ("run.rounds=6", "task.name=mlp", "task.dataset=digits", "scheme.name=tpc", "scheme.codec=qsgd",
     "scheme.granularity=tensor", "scheme.min_size=20", "scheme.warmup_rounds=2", "run.digest_every=1"),
    ("run.rounds=6", "task.name=linreg", "scheme.name=ef21", "scheme.codec=topk", "downlink.scheme=ef21p",
     "downlink.codec=topk", "downlink.codec_params={ratio: 0.2}", "run.bad_message=drop", "run.digest_every=1"),
])
def test_mpi_run_equals_local_run_bit_for_bit(mpi_comm, tmp_path, overrides):
    out = mpi_and_local(mpi_comm, tmp_path, *overrides)
    if out is None:
        return
    root, summary, server, local_summary, local_server = out
    assert server.params.tobytes() == local_server.params.tobytes()
    assert rows(root / "mpi" / "metrics.csv") == rows(root / "local" / "metrics.csv")
    assert rows(root / "mpi" / "agents.csv") == rows(root / "local" / "agents.csv")
    for k in ("uplink_payload_bits", "uplink_wire_bytes", "downlink_payload_bits", "final"):
        assert summary[k] == local_summary[k]


def test_accounted_wire_bytes_equal_what_mpi_delivered(mpi_comm, tmp_path):
    out = mpi_and_local(mpi_comm, tmp_path, "run.rounds=5", "run.agents_per_worker=2", "run.digest_every=2")
    if out is None:
        return
    root, summary, server, _, _ = out
    messages = rows(root / "mpi" / "agents.csv")
    assert len(messages) == 5 * server.n_agents
    for m in messages:  # received_bytes is MPI's Get_count for that message
        assert int(m["wire_bytes"]) == int(m["received_bytes"])
    assert sum(int(m["received_bytes"]) for m in messages) == summary["uplink_wire_bytes"]
