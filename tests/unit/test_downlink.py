"""The downlink: the model through a scheme and codec, the workers' copy mirrored, every bit counted."""
import numpy as np
import pytest

import psgrad
from psgrad import config, wire
from psgrad.errors import DecodeError, MirrorError
from psgrad.runtime.downlink import Downlink, split_bits, with_bits
from psgrad.runtime.loop import Stopped, agent_layout, build, resolve_workers
from psgrad.runtime.server import Server
from psgrad.runtime.worker import Worker

EF21P = {"scheme": "ef21p", "codec": "topk", "codec_params": {"ratio": 0.2}}


def job(tmp_path, name="r", downlink=EF21P, **run):
    return {"task": {"name": "linreg"}, "optim": {"lr": 0.2}, "scheme": {"name": "ef21", "codec": "topk"},
            "downlink": downlink,
            "run": {"results_dir": str(tmp_path), "name": name, "log_every": 1000, "rounds": 6, "workers": 2,
                    "agents_per_worker": 2, "digest_every": 1, **run}}


def quiet(*args, **kwargs):
    return psgrad.run(*args, local=True, log=lambda line: None, **kwargs)


@pytest.mark.parametrize("nbits", [0, 1, 7, 8, 9, 63, 64, 1000])
@pytest.mark.parametrize("n_extra", [0, 1, 5, 8, 13])
def test_drop_bits_follow_the_payload_bit_exactly_and_split_back(nbits, n_extra):
    rng = np.random.default_rng(nbits * 31 + n_extra)
    data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
    if nbits % 8:
        data[-1] &= (1 << nbits % 8) - 1  # a payload's padding bits are zero
    extra = rng.integers(0, 2, n_extra).astype(np.uint8)
    joined, total = with_bits(psgrad.Encoded(data, nbits), extra)
    assert total == nbits + n_extra and len(joined) == (total + 7) // 8
    bits = np.unpackbits(joined, bitorder="little")
    assert np.array_equal(bits[:nbits], np.unpackbits(data, bitorder="little")[:nbits])
    assert np.array_equal(bits[nbits:total], extra) and not bits[total:].any()
    payload, pbits, back = split_bits(joined, total, n_extra)
    assert pbits == nbits and payload.tobytes() == data.tobytes() and np.array_equal(back, extra)


def test_the_default_downlink_is_the_models_float32_bytes():
    cfg = config.load(None, [])
    down = Downlink(cfg, 5)
    w = np.arange(5, dtype=np.float32)
    payload, w_hat = down.encode(w, 0)
    assert payload.nbits == 160 and payload.data.tobytes() == w.tobytes() and w_hat is w
    assert down.digest() is None  # nothing to mirror


def test_ef21p_sends_the_compressed_difference_and_both_sides_hold_the_same_copy():
    cfg = config.from_dict({"downlink": EF21P})
    server, worker = Downlink(cfg, 50), Downlink(cfg, 50)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(50).astype(np.float32)
    for t in range(20):
        w = (w + 0.01 * rng.standard_normal(50)).astype(np.float32)
        payload, w_hat = server.encode(w, t)
        assert payload.nbits < 32 * 50 / 2
        assert np.array_equal(worker.decode(payload.data, payload.nbits, t), w_hat)
        assert worker.digest() == server.digest()
    assert np.linalg.norm(w - w_hat) < 0.05 * np.linalg.norm(w)  # the error is fed back: w_hat follows w


def test_a_run_with_ef21p_counts_each_frames_bits_for_every_agent_and_totals_both_directions(tmp_path):
    r = quiet(job(tmp_path))
    rows = r.metrics[1:]
    assert all(row["down_payload_bits"] % 4 == 0 for row in rows)  # one frame, counted for each of 4 agents
    assert all(row["down_wire_bytes"] == 2 * wire.frame_bytes(row["down_payload_bits"] // 4) for row in rows)
    assert r.summary["downlink_payload_bits"] == sum(row["down_payload_bits"] for row in rows)
    assert r.summary["downlink_payload_bits"] < 32 * 50 * 4 * 6 / 2
    assert r.summary["total_payload_bits"] == r.summary["uplink_payload_bits"] + r.summary["downlink_payload_bits"]
    assert r.metrics[-1]["cum_total_bits"] == r.summary["total_payload_bits"]


def test_drop_bits_ride_after_a_compressed_model_payload(tmp_path):
    plain = quiet(job(tmp_path, "plain"))
    drop = quiet(job(tmp_path, "drop", bad_message="drop"))
    assert np.array_equal(np.load(plain.dir / "model.npy"), np.load(drop.dir / "model.npy"))
    assert drop.summary["downlink_payload_bits"] == plain.summary["downlink_payload_bits"] + 4 * 4 * 6


class StopAt:
    def __init__(self, folder, rounds):
        self.metrics, self.rounds = folder / "metrics.csv", rounds

    @property
    def requested(self):
        return self.metrics.exists() and len(self.metrics.read_text().splitlines()) > self.rounds + 1


@pytest.mark.parametrize("downlink", [EF21P, {"scheme": "ef", "codec": "scaled_sign"},
                                      {"scheme": "direct", "codec": "qsgd"}])
def test_kill_and_resume_with_a_compressed_downlink_is_bit_identical(tmp_path, downlink):
    with pytest.raises(Stopped):
        quiet(job(tmp_path / "a", downlink=downlink, rounds=8, checkpoint_every=2),
              stop=StopAt(tmp_path / "a" / "r", 3))
    resumed = quiet(resume=tmp_path / "a" / "r")
    whole = quiet(job(tmp_path / "b", downlink=downlink, rounds=8, checkpoint_every=2))
    assert np.array_equal(np.load(resumed.dir / "model.npy"), np.load(whole.dir / "model.npy"))
    assert (resumed.dir / "metrics.csv").read_text().count("\n") == (whole.dir / "metrics.csv").read_text().count("\n")
    for key in ("uplink_payload_bits", "downlink_payload_bits", "final"):
        assert resumed.summary[key] == whole.summary[key]


def one_round(tmp_path):
    cfg = resolve_workers(config.from_dict(job(tmp_path, workers=2, agents_per_worker=1)), 1)
    task, sc = build(cfg)
    layout = agent_layout(2, 2)
    return Server(cfg, task, sc, layout), [Worker(cfg, task, sc, r, [r - 1]) for r in (1, 2)]


def test_a_worker_whose_model_copy_drifted_is_named_by_the_digest_check(tmp_path):
    server, workers = one_round(tmp_path)
    frame = server.model_frame(0)
    params, _ = workers[1].accept_model(0, frame)
    state = workers[1].downlink.state
    workers[1].downlink.state = state._replace(**{state._fields[0]: getattr(state, state._fields[0]) + 1})
    for w in workers:
        p = w.accept_model(0, frame)[0] if w is workers[0] else params
        for f in w.updates(0, p):
            if w is workers[1]:
                with pytest.raises(MirrorError, match="rank 2's model copy"):
                    server.receive(0, f, w.rank)
            else:
                server.receive(0, f, w.rank)


@pytest.mark.parametrize("downlink", [EF21P, {"scheme": "direct", "codec": "qsgd"},
                                      {"scheme": "ef21p", "codec": "rotated_sign", "codec_params": {"scale": "mse"}}])
def test_garbage_model_payloads_are_decode_errors_on_the_worker_never_a_crash(downlink):
    cfg = config.from_dict({"downlink": downlink})
    rng = np.random.default_rng(7)
    for trial in range(200):
        down = Downlink(cfg, 40)
        nbits = int(rng.integers(0, 3000))
        data = rng.integers(0, 256, (nbits + 7) // 8, dtype=np.uint8)
        if nbits % 8:
            data[-1] &= (1 << nbits % 8) - 1
        try:
            w_hat = down.decode(data, nbits, trial)
        except DecodeError:
            continue
        assert w_hat.shape == (40,) and w_hat.dtype == np.float32


def test_a_corrupt_model_payload_stops_the_run_naming_the_round_not_an_agent(tmp_path):
    server, workers = one_round(tmp_path)
    frame = server.model_frame(0)
    bad = wire.pack(wire.Kind.MODEL, 0, wire.ALL_AGENTS, np.zeros(1, np.uint8), 3)  # 3 bits: no topk payload
    with pytest.raises(DecodeError, match="bad model payload from the server in round 0") as e:
        workers[0].accept_model(0, bad)
    assert e.value.psgrad_where == (None, 0)
    assert workers[1].accept_model(0, frame)[0].shape == (server.d,)


def test_a_downlink_codec_its_scheme_refuses_is_a_config_error(tmp_path):
    with pytest.raises(psgrad.ConfigError, match="scheme 'ef21' needs a contractive codec"):
        quiet(job(tmp_path, downlink={"scheme": "ef21p", "codec": "qsgd"}))
