"""``run.reproducible: true`` on child jobs that stand in for other CPUs.

A child started with ``ATEN_CPU_CAPABILITY=avx2`` runs torch's AVX2 kernels on an AVX-512 machine, as an
AVX2-only machine would; ``OPENBLAS_CORETYPE`` and ``NPY_DISABLE_CPU_FEATURES`` do the same for numpy's
BLAS and its own SIMD loops. With reproducible mode a child in one process on this CPU's kernels and one
under mpirun standing in for another CPU end with the same model and bits. (Without it the kernels show in
the bits: docs/reliability.md.)
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy._core._multiarray_umath import __cpu_dispatch__

import psgrad
from psgrad.reproducible import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 120
# The default job (reproducible), shortened; two workers, so that the mpirun child is 3 ranks.
SETTINGS = ["run.reproducible=true", "run.rounds=6", "run.eval_every=6", "run.log_every=1000", "run.workers=2"]
NATIVE = torch.backends.cpu.get_cpu_capability().lower()
# Every SIMD target numpy's loops may dispatch to above its baseline (numpy 2.4: X86_V3, X86_V4, AVX512_ICL, ...).
NUMPY_SIMD = ",".join(__cpu_dispatch__)
OTHER = {"avx512": "avx2", "avx2": "default"}.get(NATIVE)  # the narrower kernels a child stands in with
needs_simd = pytest.mark.skipif(OTHER is None, reason=f"torch runs {NATIVE} kernels here: no other instruction "
                                "set to stand in for")


def launch(tmp_path, name, mpi=False, **env):
    env = {**{k: v for k, v in os.environ.items() if k not in ENVIRONMENT}, "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1", **env}
    ranks = ["mpirun", "-n", "3"] if mpi else []
    args = [*ranks, sys.executable, "-m", "psgrad.train", *([] if mpi else ["--local"])]
    for s in [*SETTINGS, f"run.results_dir={tmp_path}", f"run.name={name}"]:
        args += ["--set", s]
    return name, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=ROOT)


def results(tmp_path, jobs):
    """``{name: (summary, model bytes)}`` once every job has ended with status 0."""
    out = {}
    for name, proc in jobs:
        try:
            _, err = proc.communicate(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, err
        folder = tmp_path / name
        out[name] = (json.loads((folder / "summary.json").read_text()), np.load(folder / "model.npy").tobytes())
    return out


@needs_simd
def test_reproducible_runs_end_alike_whatever_kernels_the_cpu_offers(tmp_path):
    # The stand-in is real: a child given the variable runs the other kernels unless psgrad says otherwise.
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True, timeout=LIMIT,
                           env={**os.environ, "ATEN_CPU_CAPABILITY": OTHER})
    assert probe.stdout.split() == [OTHER.upper()], probe.stderr
    jobs = [launch(tmp_path, "native"),
            launch(tmp_path, "other", mpi=True, ATEN_CPU_CAPABILITY=OTHER, OPENBLAS_CORETYPE="Prescott",
                   NPY_DISABLE_CPU_FEATURES=NUMPY_SIMD)]
    runs = results(tmp_path, jobs)
    (native, native_model), (other, other_model) = runs["native"], runs["other"]
    assert other_model == native_model
    for key in ("uplink_payload_bits", "uplink_wire_bytes", "final"):
        assert other[key] == native[key], key


@needs_simd
def test_reproducible_mode_refuses_a_torch_that_already_ran_other_kernels(tmp_path, monkeypatch):
    for key, value in ENVIRONMENT.items():  # restored after the test: later child jobs inherit os.environ
        monkeypatch.setenv(key, os.environ.get(key, value))
    torch.ones(2).sum()  # this process's kernels are chosen
    with pytest.raises(psgrad.ConfigError, match=f"{NATIVE.upper()} kernels.*ATEN_CPU_CAPABILITY=default"):
        psgrad.run({"task": {"name": "logreg"}, "run": {"reproducible": True, "rounds": 1,
                                                        "results_dir": str(tmp_path)}}, local=True)
