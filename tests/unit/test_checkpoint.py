import io
import json
import pickle
from typing import NamedTuple

import numpy as np
import pytest

import psgrad
from psgrad import config
from psgrad.errors import ConfigError
from psgrad.runtime import checkpoint
from psgrad.runtime.loop import Stopped, build, resolve_workers, run_local
from psgrad.schemes import digest
from run_files import rows
from schemes_under_test import run_settings, under_test

TASK = ["task.name=logreg", "task.batch_size=16", "optim.momentum=0.9", "optim.schedule=cosine", "optim.lr=0.2",
        "run.workers=2", "run.agents_per_worker=2", "run.rounds=10", "run.eval_every=4", "run.digest_every=2",
        "run.log_every=1000"]


def make(tmp_path, name, *overrides):
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", f"run.name={name}", *TASK, *overrides]),
                          1)
    task, sc = build(cfg)
    return cfg, task, sc


def comparable(summary):
    return {k: v for k, v in summary.items() if k not in ("timings_s", "dir", "name", "peak_rss_mb")}


class Crash(Exception):
    pass


def crash_at(task, round_):
    """Make the task fail in the middle of round ``round_`` (after some agents already sent)."""
    original = task.local_grad

    def local_grad(agent, params, t=0, out=None, phases=None):
        if t == round_ and agent == 2:
            raise Crash("simulated node failure")
        return original(agent, params, t, out, phases)

    task.local_grad = local_grad


def assert_same_run(tmp_path, a, b, summary_a, summary_b, server_a, server_b):
    assert server_a.params.tobytes() == server_b.params.tobytes()
    assert server_a.ledger.totals == server_b.ledger.totals
    assert rows(tmp_path / a / "metrics.csv") == rows(tmp_path / b / "metrics.csv")
    assert rows(tmp_path / a / "agents.csv") == rows(tmp_path / b / "agents.csv")
    assert comparable(summary_a) == comparable(summary_b)


@pytest.mark.parametrize("scheme_name", under_test())
def test_a_run_that_crashed_mid_round_resumes_bit_identical_to_an_uninterrupted_run(tmp_path, scheme_name):
    sets = run_settings(scheme_name)
    cfg, task, sc = make(tmp_path, "ref", *sets)
    ref_summary, ref_server = run_local(cfg, task, sc, log=lambda line: None)

    cfg, task, sc = make(tmp_path, "run", *sets, "run.checkpoint_every=3")
    crash_at(task, 7)
    with pytest.raises(Crash):
        run_local(cfg, task, sc, log=lambda line: None)
    cfg, task, sc = make(tmp_path, "run", *sets, "run.checkpoint_every=3")
    resume = checkpoint.load(tmp_path / "run", cfg, sc, task)
    assert resume[0]["round"] == 6
    summary, server = run_local(cfg, task, sc, log=lambda line: None, resume=resume)
    assert_same_run(tmp_path, "ref", "run", ref_summary, summary, ref_server, server)


class StopAt:
    """A stop request that arrives during round ``round_`` (as SIGTERM would): true from its next check on."""

    def __init__(self, round_):
        self.round = round_
        self.calls = 0

    @property
    def requested(self):
        self.calls += 1
        return self.calls > self.round


def test_a_stop_request_checkpoints_at_the_next_boundary_and_the_run_resumes_exactly(tmp_path):
    cfg, task, sc = make(tmp_path, "ref")
    ref_summary, ref_server = run_local(cfg, task, sc, log=lambda line: None)
    cfg, task, sc = make(tmp_path, "run")
    with pytest.raises(Stopped) as info:
        run_local(cfg, task, sc, log=lambda line: None, stop=StopAt(5))
    assert info.value.round == 5 and info.value.path == tmp_path / "run" / checkpoint.FILE_NAME
    summary, server = run_local(cfg, task, sc, log=lambda line: None,
                                resume=checkpoint.load(tmp_path / "run", cfg, sc, task))
    assert_same_run(tmp_path, "ref", "run", ref_summary, summary, ref_server, server)


class Inner(NamedTuple):
    count: int
    scale: float


class Outer(NamedTuple):
    h: np.ndarray
    memory: tuple
    inner: Inner
    flag: bool


def frozen(a):
    a.setflags(write=False)
    return a


def test_a_nested_state_round_trips_by_field_path_with_types_from_the_template():
    state = Outer(np.arange(5, dtype=np.float32), (frozen(np.ones(5, np.float32)), np.zeros(5, np.float32)),
                  Inner(3, 0.1), True)
    arrays = {}
    tree = checkpoint.flatten(state, "s", arrays)
    meta, loaded = checkpoint.from_bytes(checkpoint.to_bytes({"tree": tree}, arrays), "test")
    template = Outer(np.zeros(5, np.float32), (), Inner(0, 0.0), False)
    back = checkpoint.fill(template, meta["tree"], loaded, "state")
    assert digest(back) == digest(state) and type(back.inner) is Inner
    assert [m.flags.writeable for m in back.memory] == [False, True]


def test_a_state_of_another_shape_or_field_set_is_a_config_error():
    arrays = {}
    tree = checkpoint.flatten(Inner(3, 0.1), "s", arrays)
    with pytest.raises(ConfigError, match="fields"):
        checkpoint.fill(Outer(np.zeros(5, np.float32), (), Inner(0, 0.0), False), tree, arrays, "state")
    arrays = {}
    tree = checkpoint.flatten(Outer(np.zeros(4, np.float32), (), Inner(0, 0.0), False), "s", arrays)
    with pytest.raises(ConfigError, match=r"float32\(4,\), expected float32\(5,\)"):
        checkpoint.fill(Outer(np.zeros(5, np.float32), (), Inner(0, 0.0), False), tree, arrays, "state")


def test_a_crash_while_writing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.write_atomic(path, b"good")

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint.write_atomic(path, b"half-written")
    assert path.read_bytes() == b"good"


@pytest.fixture
def stopped_run(tmp_path):
    cfg, task, sc = make(tmp_path, "run", "run.checkpoint_every=2", "run.rounds=4")
    with pytest.raises(Stopped):
        run_local(cfg, task, sc, log=lambda line: None, stop=StopAt(3))
    return tmp_path / "run"


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(3.0))
    return buf.getvalue()


def load_again(tmp_path, *overrides):
    cfg, task, sc = make(tmp_path, "run", "run.checkpoint_every=2", "run.rounds=4", *overrides)
    return checkpoint.load(tmp_path / "run", cfg, sc, task)


def test_a_checkpoint_of_another_config_is_refused(stopped_run, tmp_path):
    with pytest.raises(ConfigError, match="belongs to another config"):
        load_again(tmp_path, "optim.lr=0.3")


def test_operational_settings_may_change_on_resume(stopped_run, tmp_path):
    meta, _ = load_again(tmp_path, "run.timeout=7", "run.checkpoint_every=1", "run.log_every=5")
    assert meta["round"] == 3


def rewrite(run_dir, change, digest=True):
    """Change a checkpoint's content; ``digest``: store the content digest of the result (a consistent file)."""
    meta, arrays = checkpoint.from_bytes((run_dir / checkpoint.FILE_NAME).read_bytes(), "x")
    change(meta, arrays)
    if digest:
        meta["digest"] = checkpoint.content_digest(meta, arrays)
    checkpoint.write_atomic(run_dir / checkpoint.FILE_NAME, checkpoint.to_bytes(meta, arrays))


def test_a_checkpoint_of_another_format_version_is_refused(stopped_run, tmp_path):
    rewrite(stopped_run, lambda meta, arrays: meta.update(format=99))
    with pytest.raises(ConfigError, match="format 99"):
        load_again(tmp_path)


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],
    lambda b: b"",
    lambda b: b"PK\x03\x04" + bytes(100),
])
def test_a_damaged_checkpoint_file_is_a_config_error(stopped_run, tmp_path, damage):
    path = stopped_run / checkpoint.FILE_NAME
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ConfigError, match="checkpoint"):
        load_again(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", pickle.dumps({"round": 3}), _npy_bytes()],
                         ids=["empty", "text", "pickle", "npy"])
def test_a_file_that_is_not_a_zip_is_refused_in_one_line_that_suggests_no_unsafe_load(stopped_run, tmp_path,
                                                                                      content):
    (stopped_run / checkpoint.FILE_NAME).write_bytes(content)
    with pytest.raises(ConfigError, match="is not a psgrad checkpoint: not a zip archive") as e:
        load_again(tmp_path)
    assert "\n" not in str(e.value) and "pickle" not in str(e.value)


def test_a_checkpoint_whose_state_was_altered_fails_its_digest(stopped_run, tmp_path):
    rewrite(stopped_run, lambda meta, arrays: arrays["server/params"].__setitem__(0, 1.5), digest=False)
    with pytest.raises(ConfigError, match="content digest does not match"):
        load_again(tmp_path)


def test_a_checkpoint_missing_a_field_is_a_config_error(stopped_run, tmp_path):
    rewrite(stopped_run, lambda meta, arrays: meta["server"]["fields"].pop("ledger"))
    with pytest.raises(ConfigError, match="the server's state has fields"):
        load_again(tmp_path)


def test_a_checkpoint_without_a_workers_part_is_a_config_error(stopped_run, tmp_path):
    rewrite(stopped_run, lambda meta, arrays: meta["workers"].pop("2"))
    with pytest.raises(ConfigError, match="no state of worker rank 2"):
        load_again(tmp_path)


def test_the_checkpoint_holds_no_pickled_objects(stopped_run):
    with np.load(stopped_run / checkpoint.FILE_NAME, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        meta = json.loads(z[checkpoint.META].tobytes())
    assert meta["format"] == checkpoint.FORMAT_VERSION and meta["round"] == 3
