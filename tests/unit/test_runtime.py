import csv
import json

import numpy as np
import pytest

import psgrad

from psgrad import config, wire
from psgrad.errors import MirrorError, WireError
from psgrad.runtime.loop import agent_layout, build, resolve_workers, run_local
from psgrad.runtime.kernels import axpy
from psgrad.runtime.server import Inbox, Server
from psgrad.runtime.worker import Worker


def make_cfg(tmp_path, *overrides):
    cfg = config.load(None, [f"run.results_dir={tmp_path}", "run.log_every=1000", "scheme.name=direct",
                             "scheme.codec=fp32", *overrides])
    return resolve_workers(cfg, 1)


def run(tmp_path, *overrides):
    cfg = make_cfg(tmp_path, *overrides)
    task, sc = build(cfg)
    summary, server = run_local(cfg, task, sc, log=lambda line: None)
    return cfg, summary, server


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", [
    ["task.name=linreg", "optim.lr=0.05"],
    ["task.name=logreg", "task.dataset=breast_cancer"],
    ["task.name=logreg", "task.dataset=digits", "optim.lr=0.5"],
    ["task.name=mlp", "task.dataset=digits", "optim.lr=0.5", "task.batch_size=32"],
    ["task.name=cnn", "task.dataset=digits", "optim.lr=0.3", "run.workers=2"],
])
def test_local_training_reduces_the_loss_on_every_task(tmp_path, task):
    _, summary, _ = run(tmp_path, "run.rounds=40", "run.eval_every=40", *task)
    rows = read_csv(tmp_path / "default" / "metrics.csv")
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    assert summary["final"]["train_loss"] == pytest.approx(float(rows[-1]["train_loss"]))


def test_fp32_bits_are_exactly_32_per_coordinate_and_wire_bytes_add_up(tmp_path):
    cfg, summary, server = run(tmp_path, "run.rounds=5", "run.digest_every=2", "run.workers=3",
                               "run.agents_per_worker=2")
    d, n = server.d, 6
    assert summary["uplink_payload_bits"] == 32 * d * n * 5
    assert summary["compression_vs_fp32"] == 1.0
    digests = sum(1 for t in range(5) if t % 2 == 0 or t == 4)
    assert summary["uplink_wire_bytes"] == n * 5 * (wire.HEADER_BYTES + 4 * d) + n * digests * 32
    assert summary["downlink_payload_bits"] == 32 * d * n * 5
    assert summary["downlink_wire_bytes"] == 3 * 5 * (wire.HEADER_BYTES + 4 * d)
    msgs = read_csv(tmp_path / "default" / "agents.csv")
    assert len(msgs) == n * 5
    for m in msgs:
        assert int(m["wire_bytes"]) == int(m["received_bytes"])
        assert int(m["wire_bytes"]) * 8 == sum(int(m[k]) for k in ("payload_bits", "header_bits", "padding_bits",
                                                                     "digest_bits"))


def test_fp16_halves_the_payload(tmp_path):
    _, summary, server = run(tmp_path, "run.rounds=3", "scheme.codec=fp16")
    assert summary["uplink_payload_bits"] == 16 * server.d * 8 * 3
    assert summary["compression_vs_fp32"] == 2.0


def test_psgrad_run_writes_config_metrics_summary_and_plot_and_returns_them(tmp_path):
    result = psgrad.run({"run": {"results_dir": str(tmp_path), "log_every": 1000, "rounds": 4, "eval_every": 2},
                         "scheme": {"name": "direct", "codec": "fp32"}}, local=True, log=lambda line: None)
    folder = tmp_path / "default"
    assert result.dir == folder
    cfg = make_cfg(tmp_path, "run.rounds=4", "run.eval_every=2")
    assert config.load(folder / "config.yaml") == cfg
    rows = read_csv(folder / "metrics.csv")
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [r["test_accuracy"] != "" for r in rows] == [True, False, True, False, True]
    assert [("test_accuracy" in r) for r in result.metrics] == [True, False, True, False, True]
    assert int(rows[-1]["cum_up_payload_bits"]) == sum(int(r["up_payload_bits"]) for r in rows)
    assert json.loads((folder / "summary.json").read_text()) == result.summary
    assert (folder / "metrics.png").stat().st_size > 10_000


def test_aggregate_does_not_depend_on_arrival_order(tmp_path):
    cfg = make_cfg(tmp_path, "run.workers=4", "run.rounds=2")
    task, sc = build(cfg)
    layout = agent_layout(4, 4)
    results = []
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        server = Server(cfg, task, sc, layout)
        workers = [Worker(cfg, task, sc, r, [r - 1]) for r in range(1, 5)]
        for t in range(2):
            model = server.model_frame(t)
            frames = [list(w.serve_round(t, model, None))[0] for w in workers]
            for i in order:
                server.receive(t, frames[i], i + 1)
            server.finish_round(t)
        results.append(server.params.copy())
    assert np.array_equal(results[0], results[1])


def _one_round_frames(tmp_path):
    cfg = make_cfg(tmp_path, "run.workers=2", "run.rounds=2")
    task, sc = build(cfg)
    server = Server(cfg, task, sc, agent_layout(2, 2))
    workers = [Worker(cfg, task, sc, r, [r - 1]) for r in (1, 2)]
    model = server.model_frame(0)
    return server, [list(w.serve_round(0, model, None))[0] for w in workers]


def test_server_rejects_a_message_from_the_wrong_rank_round_or_twice(tmp_path):
    server, frames = _one_round_frames(tmp_path)
    with pytest.raises(WireError, match="claims agent 0"):
        server.receive(0, frames[0], 2)
    with pytest.raises(WireError, match="for round 0 arrived in round 1"):
        server.receive(1, frames[0], 1)
    server.receive(0, frames[0], 1)
    with pytest.raises(WireError, match="second message from agent 0"):
        server.receive(0, frames[0], 1)
    with pytest.raises(WireError, match=r"without messages from agents \[1\]"):
        server.finish_round(0)


def _direct_fp32_round(tmp_path, *overrides):
    cfg = make_cfg(tmp_path, "run.workers=3", "run.rounds=2", *overrides)
    task, sc = build(cfg)
    server = Server(cfg, task, sc, agent_layout(3, 3))
    model = server.model_frame(0)
    frames = [list(Worker(cfg, task, sc, r, [r - 1]).serve_round(0, model, None))[0] for r in (1, 2, 3)]
    expected = np.zeros(server.d, np.float32)
    for w, f in zip(server.weights, frames):
        axpy(expected, w, wire.parse(f).payload.view(np.float32))
    return server, frames, expected


def _into_inbox(server, frame):
    """``frame`` as the MPI driver hands it over: received into a buffer lent by the server's inbox."""
    buf = server.inbox.take(len(frame))
    buf[:] = frame
    return buf


def test_direct_fp32_payloads_are_added_where_they_were_received_by_the_pass_that_checks_them(tmp_path):
    server, frames, expected = _direct_fp32_round(tmp_path)
    assert server.raw
    early = _into_inbox(server, frames[2])
    server.receive(0, early, 3)  # before its turn: it waits, unchecked, in the buffer it arrived in
    assert list(server.pending) == [2] and server.pending[2].buf is early and server.inbox.owns(early)
    server.receive(0, _into_inbox(server, frames[0]), 1)  # its turn: the pass that checks it adds it
    assert len(server.inbox.free) == 1 and list(server.pending) == [2]
    server.receive(0, frames[1], 2)  # not an inbox buffer: only read during the call
    assert server.pending == {} and server.inbox.lent == {} and len(server.inbox.free) == 2
    assert np.array_equal(server.acc, expected)


def test_a_payload_held_back_from_a_buffer_the_server_does_not_own_is_copied(tmp_path):
    server, frames, expected = _direct_fp32_round(tmp_path)
    mine = frames[2].copy()
    server.receive(0, mine, 3)
    mine[:] = 0  # the caller reuses its buffer
    for r in (1, 2):
        server.receive(0, frames[r - 1], r)
    assert np.array_equal(server.acc, expected)


def test_the_inbox_lends_each_buffer_once_and_reuses_what_comes_back():
    inbox = Inbox(limit=100)
    a, b = inbox.take(40), inbox.take(60)
    assert a.shape == (40,) and b.shape == (60,) and not np.shares_memory(a, b)
    assert inbox.owns(a) and inbox.owns(b) and not inbox.owns(np.empty(40, np.uint8))
    inbox.give_back(a)
    inbox.give_back(a)  # twice, or a buffer it never lent: nothing happens
    inbox.give_back(np.empty(8, np.uint8))
    assert not inbox.owns(a) and len(inbox.free) == 1
    c = inbox.take(30)  # fits in the buffer given back
    assert np.shares_memory(c, a) and inbox.free == []
    inbox.give_back(c)
    d = inbox.take(50)  # too large for it: a new buffer, the small one dropped
    assert not np.shares_memory(d, a) and inbox.free == [] and inbox.owns(d)
    big = inbox.take(101)  # over the limit: received whole to be refused, not pooled
    assert big.shape == (101,) and not inbox.owns(big)


def _corrupted(frame):
    bad = frame.copy()
    bad[wire.HEADER_BYTES + 5] ^= 1
    return bad


def test_a_corrupted_fp32_payload_is_found_by_its_summing_pass_or_before_any_later_error(tmp_path):
    server, frames, _ = _direct_fp32_round(tmp_path)
    with pytest.raises(WireError, match="check mismatch"):
        server.receive(0, _into_inbox(server, _corrupted(frames[0])), 1)  # its turn: the summing pass
    server, frames, _ = _direct_fp32_round(tmp_path / "2")
    server.receive(0, _into_inbox(server, _corrupted(frames[2])), 3)  # held back, not checked yet
    with pytest.raises(WireError, match=r"rank 3 in round 0: check mismatch") as e:
        server.receive(0, frames[0], 2)  # wrong rank: the held-back corruption is reported first
    assert e.value.psgrad_where == (2, 0)
    server, frames, _ = _direct_fp32_round(tmp_path / "3")
    server.receive(0, _into_inbox(server, _corrupted(frames[2])), 3)
    with pytest.raises(WireError, match="check mismatch"):
        server.finish_round(0)  # instead of "closed without messages from agents [0, 1]"


def test_under_drop_a_corrupted_fp32_message_leaves_the_sum_and_the_inbox_intact(tmp_path):
    server, frames, expected = _direct_fp32_round(tmp_path, "run.bad_message=drop")
    server.receive(0, _into_inbox(server, _corrupted(frames[0])), 1)  # dropped (logged): checked on arrival
    assert server.inbox.lent == {} and np.array_equal(server.acc, np.zeros(server.d, np.float32))
    for r in (2, 1, 3):
        server.receive(0, _into_inbox(server, frames[r - 1]), r)
    assert server.inbox.lent == {} and np.array_equal(server.acc, expected)


def test_a_direct_agent_does_not_reconstruct(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, "run.workers=2", "run.rounds=1")
    task, sc = build(cfg)
    worker = Worker(cfg, task, sc, 1, [0])
    server = Server(cfg, task, sc, agent_layout(2, 2))
    monkeypatch.setattr(type(sc), "reconstruct", lambda *a: pytest.fail("the agent reconstructed"))
    assert len(list(worker.serve_round(0, server.model_frame(0), None))) == 1


def test_a_diverged_mirror_is_caught_by_its_digest(tmp_path):
    server, frames = _one_round_frames(tmp_path)
    f = wire.parse(frames[1])
    bad_digest = bytes(32)
    forged = wire.pack(wire.Kind.UPDATE, 0, 1, f.payload, f.nbits, loss=f.loss, digest=bad_digest)
    with pytest.raises(MirrorError, match="agent 1, round 0"):
        server.receive(0, forged, 2)


def test_a_nan_gradient_stops_the_worker_naming_agent_and_round(tmp_path):
    cfg = make_cfg(tmp_path, "run.workers=1", "run.rounds=1")
    task, sc = build(cfg)
    server = Server(cfg, task, sc, agent_layout(1, 1))
    worker = Worker(cfg, task, sc, 1, [0])
    server.params[:] = np.nan
    with pytest.raises(Exception, match="not finite") as info:
        list(worker.serve_round(0, server.model_frame(0), None))
    assert info.value.psgrad_where == (0, 0)


def test_all_finite_finds_a_nan_or_an_infinity_anywhere():
    from psgrad.runtime.kernels import all_finite

    assert all_finite(np.zeros(0, np.float32)) and all_finite(np.arange(100, dtype=np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        for i in (0, 57, 99):
            x = np.ones(100, np.float32)
            x[i] = bad
            assert not all_finite(x)


@pytest.mark.parametrize("byte", [2, wire.HEADER_BYTES + 9])  # the wire version, a model coordinate
def test_a_corrupted_model_frame_is_named_as_the_servers_frame_of_its_round_not_an_agent(tmp_path, byte):
    cfg = make_cfg(tmp_path, "run.workers=1", "run.rounds=3")
    task, sc = build(cfg)
    server = Server(cfg, task, sc, agent_layout(1, 1))
    worker = Worker(cfg, task, sc, 1, [0])
    frame = server.model_frame(2).copy()
    frame[byte] ^= 1
    with pytest.raises(WireError, match="bad model frame from the server in round 2: ") as info:
        worker.serve_round(2, frame, None)
    assert info.value.psgrad_where == (None, 2)
    assert "agent" not in str(info.value) and "the model, round 2" in str(info.value)
