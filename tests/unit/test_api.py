"""``psgrad.run`` from Python: configs in every form, the user's own codec and scheme objects, errors."""
import numpy as np
import pytest

import psgrad
from psgrad import config
from psgrad.codecs.base import Codec, expect_bits
from psgrad.schemes.base import Scheme


def base(tmp_path, **run):
    return {"run": {"results_dir": str(tmp_path), "log_every": 1000, "rounds": 3, "workers": 2, **run}}


def quiet(config_, **kwargs):
    return psgrad.run(config_, local=True, log=lambda line: None, **kwargs)


class Fp16Truncate(Codec):
    """A codec of the user's own: the top 16 bits of each float32 (bfloat16 by truncation)."""

    name = "bf16trunc"
    unbiased = False

    def alpha(self, d):
        return 1 - 2.0**-14  # truncating 16 mantissa bits: each coordinate within a relative 2^-7

    def _encode(self, x, key):
        return (x.view(np.uint32) >> 16).astype("<u2").view(np.uint8), 16 * x.shape[0]

    def _decode(self, data, nbits, d, key):
        expect_bits(self.name, nbits, 16 * d)
        return (data[: 2 * d].view("<u2").astype(np.uint32) << 16).view(np.float32)


class Halve(Scheme):
    """A scheme of the user's own: sends C(g) and the server uses half of it (stateless)."""

    name = "halve"
    stateless = True

    def encode(self, state, private, g, ctx):
        return self.codec.encode(g, ctx.key)

    def reconstruct(self, state, payload, ctx):
        return np.float32(0.5) * self.codec.decode(payload.data, payload.nbits, ctx.d, ctx.key), state


def test_run_takes_a_dict_a_config_object_and_a_yaml_path_with_the_same_result(tmp_path):
    as_dict = quiet({**base(tmp_path), "scheme": {"name": "direct", "codec": "fp16"}})
    cfg = config.from_dict({**base(tmp_path, name="obj"), "scheme": {"name": "direct", "codec": "fp16"}})
    as_object = quiet(cfg)
    path = tmp_path / "job.yaml"
    config.dump(config.from_dict({**base(tmp_path, name="yaml"), "scheme": {"name": "direct", "codec": "fp32"}}),
                path)
    as_yaml = quiet(path, overrides=["scheme.codec=fp16"])
    for r in (as_object, as_yaml):
        assert r.summary["uplink_payload_bits"] == as_dict.summary["uplink_payload_bits"]
        assert np.array_equal(np.load(r.dir / "model.npy"), np.load(as_dict.dir / "model.npy"))
    assert as_dict.summary["uplink_payload_bits"] == 16 * as_dict.summary["d"] * 2 * 3


def test_a_codec_object_of_the_users_own_runs_with_exact_bits_and_is_recorded_in_the_config(tmp_path):
    r = quiet({**base(tmp_path), "scheme": {"name": "ef"}}, codec=Fp16Truncate())
    assert r.summary["codec"] == "bf16trunc" and r.summary["scheme"] == "ef"
    assert r.summary["uplink_payload_bits"] == 16 * r.summary["d"] * 2 * 3
    assert config.load(r.dir / "config.yaml").scheme.codec == "bf16trunc"


def test_a_scheme_object_of_the_users_own_changes_what_the_server_applies(tmp_path):
    full = quiet({**base(tmp_path, name="full"), "scheme": {"name": "direct", "codec": "fp32"}})
    half = quiet(base(tmp_path, name="half"), scheme=Halve(psgrad.codec("fp32")))
    lr_half = quiet({**base(tmp_path, name="lrhalf"), "scheme": {"name": "direct", "codec": "fp32"},
                     "optim": {"lr": 0.05}})
    assert half.summary["scheme"] == "halve"
    assert half.summary["uplink_payload_bits"] == full.summary["uplink_payload_bits"]
    # Halving every gradient is halving the learning rate (plain SGD): the same model, bit for bit.
    assert np.array_equal(np.load(half.dir / "model.npy"), np.load(lr_half.dir / "model.npy"))
    assert not np.array_equal(np.load(half.dir / "model.npy"), np.load(full.dir / "model.npy"))


def test_a_codec_its_scheme_refuses_is_a_config_error_before_any_round(tmp_path):
    with pytest.raises(psgrad.ConfigError, match="scheme 'ef21' needs a contractive codec"):
        quiet({**base(tmp_path), "scheme": {"name": "ef21", "codec": "sign"}})
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize("bad, match", [
    (42, "config must be a dict, a Config, a YAML path or None"),
    ({"run": {"rounds": 0}}, "run.rounds: expected a value > 0"),
    ("no/such/file.yaml", "config file no/such/file.yaml does not exist"),
])
def test_a_bad_config_is_one_config_error(bad, match):
    with pytest.raises(psgrad.ConfigError, match=match):
        quiet(bad)


def test_metrics_hold_every_round_and_the_result_is_rank_zeros(tmp_path):
    r = quiet({**base(tmp_path, rounds=4, eval_every=2), "scheme": {"name": "direct", "codec": "fp32"}})
    assert [int(m["round"]) for m in r.metrics] == [0, 1, 2, 3, 4]
    assert r.metrics[-1]["cum_up_payload_bits"] == r.summary["uplink_payload_bits"]


def test_tensor_granularity_runs_end_to_end_with_per_tensor_totals_that_sum_to_the_uplink(tmp_path):
    r = quiet({**base(tmp_path, digest_every=1), "task": {"name": "mlp", "dataset": "digits", "hidden": 8},
               "scheme": {"name": "tpc", "codec": "qsgd", "granularity": "tensor", "min_size": 11,
                          "warmup_rounds": 1}})
    per_tensor = r.summary["tensor_payload_bits"]
    assert set(per_tensor) >= {"0.weight", "2.weight", "framing"}
    assert sum(per_tensor.values()) == r.summary["uplink_payload_bits"]
    # the 10 biases of the last layer are below min_size (and the first round is warm-up): fp32 every round
    assert per_tensor["2.bias"] == 32 * 10 * 2 * 3
