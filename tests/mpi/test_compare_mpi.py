"""A comparison under MPI equals the same comparison in one process: ``mpirun -n 3 python -m pytest --with-mpi
-m mpi tests/mpi/test_compare_mpi.py``."""
import csv
import filecmp

import pytest

from psgrad.compare import from_dict, run_comparison
from run_files import rows

pytestmark = [pytest.mark.mpi(min_size=3), pytest.mark.timeout(300)]


def comparison(root, workers):
    return from_dict({
        "name": "tiny",
        "results_dir": root,
        "base": {"task": {"name": "logreg", "dataset": "breast_cancer"},
                 "optim": {"lr": 0.5}, "run": {"rounds": 6, "eval_every": 1, "workers": workers}},
        "target": {"metric": "test_accuracy", "at_least": 0.9},
        "seeds": 2, "grid_policy": "extend", "grid_extend_max": 1,  # rank 0 decides extensions for every rank
        "contenders": [
            {"label": "fp32", "scheme": "direct", "grid": {"optim.lr": [0.5, 1.0]}},
            {"label": "fp16", "scheme": "direct", "codec": "fp16", "proposed": True,
             "grid": {"optim.lr": [0.5, 1.0]}},
        ],
    })


def test_comparison_under_mpi_writes_the_same_tables_and_runs_as_in_one_process(mpi_comm, tmp_path):
    root = mpi_comm.bcast(str(tmp_path), root=0)
    workers = mpi_comm.Get_size() - 1
    under_mpi = run_comparison(comparison(f"{root}/mpi", workers), mpi_comm, progress=False)
    if mpi_comm.Get_rank() != 0:
        assert under_mpi is None
        return
    local = run_comparison(comparison(f"{root}/local", workers), None, progress=False)
    assert under_mpi == local
    a, b = tmp_path / "mpi" / "tiny", tmp_path / "local" / "tiny"
    for name in ("table.csv", "sweep.csv", "table.md"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    with open(a / "sweep.csv") as f:
        runs = [r["run"] for r in csv.DictReader(f)]
    assert {"fp32-lr1-seed1", "fp32-lr2"} <= set(runs)  # a second seed and an extension step ran
    for run in runs:
        assert rows(a / "runs" / run / "metrics.csv") == rows(b / "runs" / run / "metrics.csv")
        assert rows(a / "runs" / run / "agents.csv") == rows(b / "runs" / run / "agents.csv")
