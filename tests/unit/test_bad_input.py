"""Hostile or broken input gets a clear error naming agent and round, or (by policy) is dropped or skipped."""
import csv

import numpy as np
import pytest

import psgrad
from psgrad import config, wire
from psgrad.errors import DecodeError, PsgradError
from psgrad.runtime import worker as worker_mod
from psgrad.runtime.loop import build, resolve_workers, run_local
from psgrad.schemes import digest
from schemes_under_test import run_settings, under_test

BAD_AGENT, BAD_ROUND = 1, 2


def repack(buf, **changes):
    f = wire.parse(buf)
    fields = {"kind": f.kind, "round_": f.round, "agent": f.agent, "loss": f.loss, **changes}
    return wire.pack(fields["kind"], fields["round_"], fields["agent"], f.payload, f.nbits, loss=fields["loss"],
                     digest=f.digest, flags=f.flags & ~wire.FLAG_DIGEST)


def flip(buf, byte, bit=3):
    out = buf.copy()
    out[byte] ^= 1 << bit
    return out


CORRUPTIONS = {
    "payload bit flip": lambda b: flip(b, wire.HEADER_BYTES + 1),
    "header bit flip": lambda b: flip(b, 9),
    "truncated": lambda b: b[:-3],
    "oversized": lambda b: np.concatenate([b, np.zeros(7, np.uint8)]),
    "wrong version": lambda b: (lambda c: (c.__setitem__(2, 1), c)[1])(b.copy()),
    "unknown agent": lambda b: repack(b, agent=77),
    "wrong round": lambda b: repack(b, round_=BAD_ROUND + 1),
}


def corrupt_one_message(monkeypatch, how):
    original = worker_mod.Worker.updates

    def updates(self, t, params):
        for frame in original(self, t, params):
            if t == BAD_ROUND and wire.parse(frame).agent == BAD_AGENT:
                frame = how(frame)
            yield frame

    monkeypatch.setattr(worker_mod.Worker, "updates", updates)


def run(tmp_path, *overrides, task_hook=None):
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", "run.log_every=1000", "run.workers=3",
                                             "run.rounds=5", "run.digest_every=1", *overrides]), 1)
    task, sc = build(cfg)
    if task_hook:
        task_hook(task)
    summary, server = run_local(cfg, task, sc, log=lambda line: None)
    return cfg, summary, server


def metrics(tmp_path):
    with open(tmp_path / "default" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_bad_message_stops_the_run_naming_agent_and_round(tmp_path, monkeypatch, kind):
    corrupt_one_message(monkeypatch, CORRUPTIONS[kind])
    with pytest.raises(DecodeError) as info:
        run(tmp_path)
    text = f"{info.value} {getattr(info.value, 'psgrad_where', '')}"
    assert f"round {BAD_ROUND}" in text or f"round {BAD_ROUND + 1}" in text, text
    if kind not in ("truncated", "oversized", "header bit flip"):
        assert "agent 1" in text or "agent 77" in text, text


def drop_cases():
    """Every scheme with a payload bit flip; every corruption with the most stateful scheme."""
    richest = "tpc" if "tpc" in psgrad.schemes() else "direct"
    cases = [(s, "payload bit flip") for s in under_test()]
    return cases + [(richest, kind) for kind in CORRUPTIONS if (richest, kind) not in cases]


@pytest.mark.parametrize("scheme_name,kind", drop_cases())
def test_under_drop_a_bad_message_is_counted_and_every_mirror_stays_in_step(tmp_path, monkeypatch, kind,
                                                                           scheme_name):
    corrupt_one_message(monkeypatch, CORRUPTIONS[kind])
    seen = []
    original = worker_mod.Worker.accept_model

    def accept_model(self, t, buf):  # record the agents' states as each round starts
        out = original(self, t, buf)
        seen.append((t, {a: digest(self.states[a]) for a in self.agents}))
        return out

    monkeypatch.setattr(worker_mod.Worker, "accept_model", accept_model)
    cfg, summary, server = run(tmp_path, "run.bad_message=drop", *run_settings(scheme_name))
    rows = metrics(tmp_path)
    assert [int(r["dropped"]) for r in rows] == [0, 0, 0, 1, 0, 0]
    # Digests were sent every round and checked by the server, so the run finishing proves the mirrors agreed;
    # the dropped agent's state at round 3 is its state at round 2 (rolled back).
    by_round = {}
    for t, states in seen:
        by_round.setdefault(t, {}).update(states)
    assert by_round[BAD_ROUND + 1][BAD_AGENT] == by_round[BAD_ROUND][BAD_AGENT]
    messages = list(csv.DictReader(open(tmp_path / "default" / "agents.csv")))
    assert not any(m["round"] == str(BAD_ROUND) and m["agent"] == str(BAD_AGENT) for m in messages)
    assert len(messages) == 5 * 3 - 1


def nan_gradient_at(task, agent, round_):
    original = task.local_grad

    def local_grad(a, params, t=0, out=None, phases=None):
        loss, g = original(a, params, t, out, phases)
        if a == agent and t == round_:
            g = g.copy()
            g[0] = np.inf
        return loss, g

    task.local_grad = local_grad


def test_a_nonfinite_gradient_stops_the_run_by_default_naming_agent_and_round(tmp_path):
    with pytest.raises(PsgradError, match="not finite") as info:
        run(tmp_path, task_hook=lambda task: nan_gradient_at(task, 1, 2))
    assert info.value.psgrad_where == (1, 2)


@pytest.mark.parametrize("scheme_name", under_test())
def test_under_skip_a_nonfinite_gradient_sends_a_skipped_message_and_changes_no_state(tmp_path, scheme_name):
    cfg, summary, server = run(tmp_path, "run.nonfinite=skip", *run_settings(scheme_name),
                               task_hook=lambda task: nan_gradient_at(task, 1, 2))
    rows = metrics(tmp_path)
    assert [int(r["skipped"]) for r in rows] == [0, 0, 0, 1, 0, 0]
    messages = list(csv.DictReader(open(tmp_path / "default" / "agents.csv")))
    skipped = [m for m in messages if m["status"] == "skipped"]
    assert [(m["round"], m["agent"], m["payload_bits"]) for m in skipped] == [("2", "1", "0")]
    assert np.all(np.isfinite(server.params))


def nan_payload(buf):
    """The frame with every payload byte 0xFF (a NaN in fp32 and fp16) and a valid check: only decoding finds it."""
    f = wire.parse(buf)
    return wire.pack(f.kind, f.round, f.agent, np.full(f.payload.shape[0], 0xFF, np.uint8), f.nbits, loss=f.loss,
                     digest=f.digest, flags=f.flags & ~wire.FLAG_DIGEST)


NAN_CASES = [("direct", "fp32"), ("direct", "fp16"), ("ef", "fp32")]  # added as received; decoded; with state


@pytest.mark.parametrize("scheme_name,codec", NAN_CASES)
def test_a_payload_that_decodes_to_nan_stops_the_run_naming_agent_and_round(tmp_path, monkeypatch, scheme_name,
                                                                           codec):
    corrupt_one_message(monkeypatch, nan_payload)
    with pytest.raises(DecodeError, match="not finite") as info:
        run(tmp_path, f"scheme.name={scheme_name}", f"scheme.codec={codec}")
    assert info.value.psgrad_where == (BAD_AGENT, BAD_ROUND)


@pytest.mark.parametrize("scheme_name,codec", NAN_CASES)
def test_under_drop_a_payload_that_decodes_to_nan_is_dropped_and_charged_to_its_agent(tmp_path, monkeypatch,
                                                                                      scheme_name, codec):
    corrupt_one_message(monkeypatch, nan_payload)
    log = []
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", "run.log_every=1000", "run.workers=3",
                                             "run.rounds=5", "run.digest_every=1", "run.bad_message=drop",
                                             f"scheme.name={scheme_name}", f"scheme.codec={codec}"]), 1)
    task, sc = build(cfg)
    _, server = run_local(cfg, task, sc, log=log.append)
    assert [int(r["dropped"]) for r in metrics(tmp_path)] == [0, 0, 0, 1, 0, 0]
    assert [line for line in log if "dropped" in line] == [
        f"round {BAD_ROUND}: dropped a message from rank 2: agent {BAD_AGENT}, round {BAD_ROUND}: the update "
        f"decodes to values that are not finite (NaN or infinity)"]
    assert np.all(np.isfinite(server.params))
    messages = list(csv.DictReader(open(tmp_path / "default" / "agents.csv")))
    assert not any(m["round"] == str(BAD_ROUND) and m["agent"] == str(BAD_AGENT) for m in messages)


def test_under_drop_a_second_message_from_an_agent_is_dropped_and_counted(tmp_path, monkeypatch):
    original = worker_mod.Worker.updates

    def updates(self, t, params):
        for frame in original(self, t, params):
            yield frame
            if t == BAD_ROUND and wire.parse(frame).agent == BAD_AGENT:
                yield frame.copy()

    monkeypatch.setattr(worker_mod.Worker, "updates", updates)
    run(tmp_path, "run.bad_message=drop")
    assert [int(r["dropped"]) for r in metrics(tmp_path)] == [0, 0, 0, 1, 0, 0]
    messages = list(csv.DictReader(open(tmp_path / "default" / "agents.csv")))
    assert len(messages) == 5 * 3  # the first message of the agent counted
