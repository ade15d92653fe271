"""Every scheme with every compatible registered codec through the local transport (300 rounds, digest every round)."""
import numpy as np
import pytest

import psgrad
from psgrad import config
from psgrad.runtime.loop import build, resolve_workers, run_local
from psgrad.schemes import codec_mismatch

VARIANTS = [
    ("direct", {}), ("ef", {}), ("ef21", {}), ("diana", {}), ("lag", {}),
    ("lag", {"eps": 0.0, "xi": 4.0, "max_silent": 5}),
    ("tpc", {}), ("tpc", {"p": 2, "coef_bits": 32, "eps": 0.05, "max_silent": 3}),
]
DIM = 10


def runs():
    for name, params in VARIANTS:
        for codec in psgrad.codecs():
            requires = psgrad.scheme(name, codec, **params).requires
            if codec_mismatch(psgrad.codec(codec), DIM + 1, requires) is None:
                yield name, params, codec


@pytest.mark.parametrize("name,params,codec", list(runs()), ids=lambda v: str(v))
def test_scheme_trains_linreg_for_300_rounds_with_agent_and_server_states_checked_every_round(
        tmp_path, name, params, codec):
    overrides = [f"run.results_dir={tmp_path}", "run.log_every=1000", "run.rounds=300", "run.digest_every=1",
                 "run.eval_every=300", "run.workers=2", "task.name=linreg", f"task.dim={DIM}", "optim.lr=0.05",
                 f"scheme.name={name}", f"scheme.codec={codec}"]
    cfg = resolve_workers(config.load(None, overrides), 1)
    cfg.scheme.params = dict(params)
    task, sc = build(cfg)
    summary, server = run_local(cfg, task, sc, log=lambda line: None)  # a digest mismatch raises MirrorError
    assert np.all(np.isfinite(server.params))
    assert summary["final"]["suboptimality"] < 0.5  # trained; lossy unbiased codecs keep a noise floor
