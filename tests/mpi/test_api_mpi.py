"""``psgrad.run`` under mpirun: every rank calls it, rank 0 gets the result, and it equals a local run."""
import numpy as np
import pytest

import psgrad

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(300)]


def job(root, name, **run):
    return {"run": {"results_dir": root, "name": name, "log_every": 1000, "rounds": 6, "digest_every": 1, **run},
            "scheme": {"name": "ef21", "codec": "topk", "codec_params": {"k": 5}}}


def test_psgrad_run_under_mpi_gives_rank_zero_the_result_of_the_local_run(mpi_comm, tmp_path):
    root = mpi_comm.bcast(str(tmp_path), root=0)
    result = psgrad.run(job(root, "mpi"), log=lambda line: None)
    if mpi_comm.Get_rank() != 0:
        assert result is None
        return
    local = psgrad.run(job(root, "local", workers=mpi_comm.Get_size() - 1), local=True, log=lambda line: None)
    assert result.summary["uplink_payload_bits"] == local.summary["uplink_payload_bits"]
    assert result.summary["agents"] == mpi_comm.Get_size() - 1
    assert np.array_equal(np.load(result.dir / "model.npy"), np.load(local.dir / "model.npy"))
    assert [m.get("test_loss") for m in result.metrics] == [m.get("test_loss") for m in local.metrics]


def test_a_config_error_under_mpi_is_raised_on_every_rank(mpi_comm, tmp_path):
    with pytest.raises(psgrad.ConfigError, match="run.rounds"):
        psgrad.run({"run": {"rounds": -1}}, log=lambda line: None)
