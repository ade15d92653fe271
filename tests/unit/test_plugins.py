"""Plugins: codecs, schemes and tasks named by import path or entry point, their errors, and the example package.

The example package in examples/plugin is imported by path (always), and found by its entry points when it
is installed (``pip install -e examples/plugin``, done by launch/setup.sh); entry points of broken or
clashing packages come from fake distributions written to a temporary folder on ``sys.path``.
"""
import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import psgrad
from psgrad import plugins
from psgrad.bench.codecs import main as bench_codecs
from psgrad.config import TaskConfig
from psgrad.errors import ConfigError, DecodeError
from psgrad.schemes import digest
from psgrad.schemes.base import Context
from psgrad.tasks import Task, make_task

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin"
sys.path.insert(0, str(EXAMPLE))

from psgrad_example.codec import StochasticUniform  # noqa: E402

CODEC = "psgrad_example.codec:StochasticUniform"
SCHEME = "psgrad_example.scheme:DecayedShift"
TASK = "psgrad_example.task:build_wine_mlp"
KEY = psgrad.Key(seed=5, agent=1, round=2)


def installed():
    try:
        return metadata.distribution("psgrad-example-plugin")
    except metadata.PackageNotFoundError:
        return None


needs_install = pytest.mark.skipif(installed() is None, reason="psgrad-example-plugin is not installed "
                                   "(pip install -e examples/plugin, as launch/setup.sh does)")


@pytest.fixture
def fresh_entry_points():
    """Entry points read anew in the test and again after it (the test changes what is installed)."""
    plugins.refresh()
    yield
    plugins.refresh()


def fake_dist(root, name, version, groups):
    """Write an installed-distribution record ``name version`` declaring ``groups`` (group -> {name: value})."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()))


def one_line_error(call, *names):
    """The ConfigError ``call()`` raises, checked to be one line that contains every one of ``names``."""
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text, text
    for name in names:
        assert name in text, text
    return text


# --- names: built-in, import path, entry point ---

def test_registry_subpackages_are_reachable_and_list_their_names_when_called():
    import psgrad.codecs.qsgd
    assert psgrad.codecs.qsgd.Qsgd is psgrad.codecs.REGISTRY["qsgd"]
    assert psgrad.codecs() == psgrad.codecs.names() and "qsgd" in psgrad.codecs()
    assert psgrad.schemes() == psgrad.schemes.names() and "tpc" in psgrad.schemes()
    assert psgrad.tasks() == psgrad.tasks.names() and {"linreg", "logreg", "mlp", "cnn"} <= set(psgrad.tasks())


def test_import_paths_build_the_example_codec_scheme_and_task():
    c = psgrad.codec(CODEC, bits=3)
    assert isinstance(c, StochasticUniform) and c.bits == 3
    s = psgrad.scheme(SCHEME, CODEC, {"bits": 2}, decay=0.5)
    assert s.name == "decayed_shift" and s.codec.bits == 2 and s.decay == np.float32(0.5)
    task = make_task(TaskConfig(name=TASK, params={"hidden": 5}), n_agents=3, seed=0)
    assert isinstance(task, Task) and task.n_agents == 3 and task.d == 13 * 5 + 5 + 5 * 3 + 3


def test_a_plugins_parameters_are_checked_like_a_built_ins():
    one_line_error(lambda: psgrad.codec(CODEC, bitz=3), CODEC, "no parameter bitz", "valid: bits")
    one_line_error(lambda: psgrad.codec(CODEC, bits=40), CODEC, "bits must be in [1, 16]")
    one_line_error(lambda: psgrad.scheme(SCHEME, "fp32", decay=2.0), SCHEME, "decay must be in [0, 1]")


def test_an_unknown_name_lists_the_known_ones_and_the_import_path_form():
    text = one_line_error(lambda: psgrad.codec("nosuch"), "nosuch", "qsgd", "package.module:attr")
    assert "known:" in text


@needs_install
def test_installed_example_is_found_by_its_entry_point_names(fresh_entry_points):
    assert "stochastic_uniform" in psgrad.codecs()
    assert "decayed_shift" in psgrad.schemes()
    assert "wine_mlp" in psgrad.tasks()
    c = psgrad.codec("stochastic_uniform", bits=2)
    assert type(c).__name__ == "StochasticUniform" and c.payload_bits(10) == 52
    assert psgrad.scheme("decayed_shift", "stochastic_uniform").name == "decayed_shift"
    assert make_task(TaskConfig(name="wine_mlp"), 2, seed=1).name == "wine_mlp"


# --- every kind of bad plugin: one ConfigError line naming it ---

def test_a_missing_module_is_one_error_naming_the_plugin():
    one_line_error(lambda: psgrad.codec("no_such_package.mod:Codec"), "no_such_package.mod:Codec",
                   "cannot import module no_such_package.mod", "ModuleNotFoundError")


def test_a_module_that_raises_on_import_is_one_error_naming_the_plugin(tmp_path, monkeypatch):
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('no GPU here\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_error(lambda: psgrad.scheme("explodes_on_import:Scheme"), "explodes_on_import:Scheme",
                   "RuntimeError: no GPU here")


def test_a_missing_attribute_is_one_error_naming_the_plugin():
    one_line_error(lambda: psgrad.codec("psgrad_example.codec:Nope"), "psgrad_example.codec:Nope",
                   "has no attribute Nope")


@pytest.mark.parametrize("make,name,why", [
    (lambda n: psgrad.codec(n), SCHEME, "not a subclass of psgrad.Codec"),
    (lambda n: psgrad.scheme(n), CODEC, "not a subclass of psgrad.Scheme"),
    (lambda n: psgrad.codec(n), "psgrad_example.codec:HEADER_BITS", "neither a subclass of psgrad.Codec nor a builder"),
    (lambda n: psgrad.codec(n), "builtins:dict", "not a subclass of psgrad.Codec"),
    (lambda n: make_task(TaskConfig(name=n), 2, 0), "psgrad_example.codec:StochasticUniform",
     "not a subclass of psgrad.tasks.Task"),
])
def test_a_plugin_of_the_wrong_kind_is_one_error_naming_the_plugin(make, name, why):
    one_line_error(lambda: make(name), name, why)


@pytest.mark.parametrize("module, source, codec_why, task_why", [
    ("wrong_returns", "def codec():\n    return 'a string'\ndef task(cfg, n_agents, seed):\n    return None\n",
     "returned a str, not a psgrad.Codec", "returned a NoneType, not a psgrad.tasks.Task"),
    ("raising_builders", "def codec():\n    raise KeyError('missing table')\n"
                         "def task(cfg, n_agents, seed):\n    raise RuntimeError('data server down')\n",
     "its builder raised KeyError: 'missing table'", "its builder raised RuntimeError: data server down"),
])
def test_a_builder_that_returns_the_wrong_kind_or_raises_is_one_error_naming_the_plugin(tmp_path, monkeypatch, module,
                                                                                      source, codec_why, task_why):
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_error(lambda: psgrad.codec(f"{module}:codec"), f"{module}:codec", codec_why)
    one_line_error(lambda: make_task(TaskConfig(name=f"{module}:task"), 2, 0), f"{module}:task", task_why)


def test_a_plugin_tasks_own_check_of_its_params_is_one_error_naming_it():
    one_line_error(lambda: make_task(TaskConfig(name=TASK, params={"sort_by": "colour"}), 2, 0), TASK,
                   "sort_by must be a wine feature")


def test_an_entry_point_named_like_a_built_in_is_one_error_naming_its_package(tmp_path, monkeypatch,
                                                                              fresh_entry_points):
    fake_dist(tmp_path, "shadowing-plugin", "2.0", {"psgrad.codecs": {"qsgd": CODEC}})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    one_line_error(lambda: psgrad.codec("qsgd"), "codec 'qsgd'", "built-in", "shadowing-plugin 2.0",
                   "rename the entry point")
    assert psgrad.codec("fp32").name == "fp32"  # other names are unaffected


def test_two_packages_declaring_one_name_is_one_error_naming_both(tmp_path, monkeypatch, fresh_entry_points):
    fake_dist(tmp_path, "first-plugin", "1.0", {"psgrad.schemes": {"twice": SCHEME}})
    fake_dist(tmp_path, "second-plugin", "1.0", {"psgrad.schemes": {"twice": SCHEME}})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    one_line_error(lambda: psgrad.scheme("twice"), "scheme 'twice'", "first-plugin", "second-plugin")


def test_an_entry_point_that_cannot_load_is_one_error_naming_its_package(tmp_path, monkeypatch,
                                                                         fresh_entry_points):
    fake_dist(tmp_path, "broken-plugin", "0.3", {"psgrad.tasks": {"broken_task": "not_a_module_here:build",
                                                                  "no_attr_task": "psgrad_example.task:nope"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    assert {"broken_task", "no_attr_task"} <= set(psgrad.tasks())  # listing does not import
    one_line_error(lambda: make_task(TaskConfig(name="broken_task"), 2, 0), "task 'broken_task'",
                   "broken-plugin 0.3", "cannot be loaded", "ModuleNotFoundError")
    one_line_error(lambda: make_task(TaskConfig(name="no_attr_task"), 2, 0), "task 'no_attr_task'",
                   "cannot be loaded", "AttributeError")


def test_a_malformed_import_path_says_what_one_looks_like():
    for name in ("psgrad_example.codec:", ":StochasticUniform", "a:b:c"):
        one_line_error(lambda: psgrad.codec(name), repr(name), "package.module:attr")


# --- task.params ---

def test_built_in_tasks_refuse_task_params_and_plugin_tasks_take_them():
    one_line_error(lambda: make_task(TaskConfig(name="logreg", params={"hidden": 3}), 2, 0), "task 'logreg'",
                   "takes no task.params", "hidden")
    one_line_error(lambda: make_task(TaskConfig(name=TASK, params={"depth": 3}), 2, 0), TASK,
                   "unknown task.params depth")
    a = make_task(TaskConfig(name=TASK, params={"hidden": 4}), 2, seed=3)
    b = make_task(TaskConfig(name=TASK, params={"hidden": 6}), 2, seed=3)
    assert a.d == 13 * 4 + 4 + 4 * 3 + 3 and b.d == 13 * 6 + 6 + 6 * 3 + 3


def test_task_params_come_from_a_config_override():
    from psgrad import config
    cfg = config.load(None, [f"task.name={TASK}", "task.params={hidden: 7, sort_by: ''}", "task.params.hidden=9"])
    assert cfg.task.params == {"hidden": 9, "sort_by": ""}
    one_line_error(lambda: config.load(None, ["task.params=3"]), "task.params", "expected dict")


def test_the_example_task_partitions_the_training_samples_by_its_sort_feature():
    from sklearn.datasets import load_wine
    cfg = TaskConfig(name=TASK, test_fraction=0.25)
    task = make_task(cfg, 4, seed=2)
    data = load_wine()
    assert task.agent_sizes.sum() == len(data.target) - round(0.25 * len(data.target))
    # standardized alcohol is the first feature: the agents' ranges follow one another
    ranges = [(float(task.local_data(a)[0][:, 0].min()), float(task.local_data(a)[0][:, 0].max())) for a in range(4)]
    assert all(ranges[a][1] <= ranges[a + 1][0] for a in range(3)), ranges
    iid = make_task(replace(cfg, params={"sort_by": ""}), 4, seed=2)
    assert iid.local_data(0)[0][:, 0].max() > ranges[0][1]
    one_line_error(lambda: make_task(cfg, 500, seed=2), TASK, "fewer than the 500 agents")


# --- the example codec ---

def test_example_codec_payload_has_the_hand_packed_layout():
    c = StochasticUniform(bits=2)
    x = np.array([-2, 2, -2, 2, 2], np.float32)  # every coordinate at an end of the grid: levels 0 or 3
    enc = c.encode(x, KEY)
    assert enc.nbits == 32 + 2 * 5 == c.payload_bits(5)
    assert enc.data.tobytes() == np.float32(2).tobytes() + bytes([0b11001100, 0b00000011])
    assert np.array_equal(c.decode(enc.data, enc.nbits, 5, KEY), x)


@pytest.mark.parametrize("bits", [1, 3, 8, 16])
@pytest.mark.parametrize("d", [0, 1, 7, 100])
def test_example_codec_writes_exactly_its_declared_bits_with_zero_padding(bits, d):
    c = StochasticUniform(bits=bits)
    x = np.random.default_rng(d).standard_normal(d).astype(np.float32)
    enc = c.encode(x, KEY)
    assert enc.nbits == 32 + bits * d and len(enc.data) == (enc.nbits + 7) // 8
    if enc.nbits % 8:
        assert enc.data[-1] >> (enc.nbits % 8) == 0
    out = c.decode(enc.data, enc.nbits, d, KEY)
    assert out.dtype == np.float32 and out.shape == (d,)
    # every coordinate is one of the two grid points around it
    step = 2 * np.abs(x).max(initial=0) / (2 ** bits - 1)
    assert np.all(np.abs(out - x) <= step * (1 + 1e-5) + 1e-30)


def test_example_codec_is_unbiased_within_its_declared_omega():
    c = StochasticUniform(bits=2)
    x = np.random.default_rng(1).standard_t(3, 64).astype(np.float32)
    n = 2000
    s = np.array([c.decode(*c.encode(x, psgrad.Key(round=r))[:2], 64, psgrad.Key(round=r)) for r in range(n)],
                 np.float64)
    err = ((s - x) ** 2).sum(1)
    assert err.mean() <= c.omega(64) * (x.astype(np.float64) ** 2).sum()
    # if E[C(x)] = x the mean of n decodes is about err / n away (squared); a bias would show above 2.5x
    assert ((s.mean(0) - x) ** 2).sum() < 2.5 * err.mean() / n


def test_example_codec_decoder_refuses_wrong_lengths_and_bad_scales():
    c = StochasticUniform(bits=3)
    enc = c.encode(np.ones(10, np.float32), KEY)
    for nbits in (enc.nbits - 1, enc.nbits + 1, 0):
        with pytest.raises(DecodeError, match="expected 62"):
            c.decode(np.zeros(9, np.uint8), nbits, 10, KEY)
    with pytest.raises(DecodeError, match="expected 59"):
        c.decode(enc.data, enc.nbits, 9, KEY)
    for scale in (-1.0, np.inf, np.nan, -0.0):
        data = enc.data.copy()
        data[:4] = np.array([scale], "<f4").view(np.uint8)
        with pytest.raises(DecodeError, match="scale"):
            c.decode(data, enc.nbits, 10, KEY)


# --- the example scheme ---

def test_example_scheme_mirrors_agree_and_zero_decay_is_plain_compression():
    rng = np.random.default_rng(4)
    s = psgrad.scheme(SCHEME, CODEC, {"bits": 4}, decay=0.8)
    plain = psgrad.scheme(SCHEME, CODEC, {"bits": 4}, decay=0.0)
    d = 50
    agent, _ = s.init(d)
    server, _ = s.init(d)
    zero, _ = plain.init(d)
    g = rng.standard_normal(d).astype(np.float32)
    for t in range(5):
        g = (g + 0.1 * rng.standard_normal(d)).astype(np.float32)
        ctx = Context(psgrad.Key(seed=1, agent=0, round=t), d)
        payload = s.encode(agent, None, g, ctx)
        assert payload.nbits == 32 + 4 * d
        g_agent, agent = s.reconstruct(agent, payload, ctx)
        g_server, server = s.reconstruct(server, payload, ctx)
        assert digest(agent) == digest(server) and g_agent.tobytes() == g_server.tobytes()
        p0 = plain.encode(zero, None, g, ctx)
        assert np.array_equal(plain.reconstruct(zero, p0, ctx)[0], psgrad.codec(CODEC, bits=4).decode(
            *psgrad.codec(CODEC, bits=4).encode(g, ctx.key)[:2], d, ctx.key))


def test_example_scheme_refuses_a_biased_codec():
    one_line_error(lambda: psgrad.scheme(SCHEME, "topk").init(10), "decayed_shift", "needs a unbiased codec")


# --- fingerprint ---

def test_fingerprint_lists_every_entry_point_with_its_package_and_version_sorted(tmp_path, monkeypatch,
                                                                                  fresh_entry_points):
    before = plugins.fingerprint()
    fake_dist(tmp_path, "zeta-plugin", "1.2", {"psgrad.tasks": {"zt": TASK}, "psgrad.codecs": {"zc": CODEC}})
    fake_dist(tmp_path, "alpha-plugin", "0.9", {"psgrad.codecs": {"ac": CODEC}, "unrelated.group": {"x": "a:b"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    after = plugins.fingerprint()
    added = [r for r in after if r not in before]
    assert added == [
        {"group": "psgrad.codecs", "name": "ac", "value": CODEC, "dist": "alpha-plugin", "version": "0.9"},
        {"group": "psgrad.codecs", "name": "zc", "value": CODEC, "dist": "zeta-plugin", "version": "1.2"},
        {"group": "psgrad.tasks", "name": "zt", "value": TASK, "dist": "zeta-plugin", "version": "1.2"},
    ]
    assert after == sorted(after, key=lambda r: (r["group"], r["name"], r["value"], r["dist"], r["version"]))
    assert json.loads(json.dumps(after)) == after
    assert {"ac", "zc"} <= set(psgrad.codecs()) and "zt" in psgrad.tasks()


def test_fingerprint_changes_with_a_plugins_version(tmp_path, monkeypatch, fresh_entry_points):
    fake_dist(tmp_path / "a", "versioned-plugin", "1.0", {"psgrad.codecs": {"vc": CODEC}})
    fake_dist(tmp_path / "b", "versioned-plugin", "1.1", {"psgrad.codecs": {"vc": CODEC}})
    with monkeypatch.context() as m:
        m.syspath_prepend(str(tmp_path / "a"))
        plugins.refresh()
        one = plugins.fingerprint()
    with monkeypatch.context() as m:
        m.syspath_prepend(str(tmp_path / "b"))
        plugins.refresh()
        other = plugins.fingerprint()
    assert one != other and [r["version"] for r in one if r["name"] == "vc"] == ["1.0"]


@needs_install
def test_fingerprint_names_the_installed_example_package(fresh_entry_points):
    version = installed().version
    ours = [r for r in plugins.fingerprint() if r["dist"] == "psgrad-example-plugin"]
    assert [(r["group"], r["name"], r["version"]) for r in ours] == [
        ("psgrad.codecs", "stochastic_uniform", version), ("psgrad.schemes", "decayed_shift", version),
        ("psgrad.tasks", "wine_mlp", version)]


# --- the command line ---

def test_codec_benchmark_accepts_a_plugin_codec_and_refuses_a_bad_name(tmp_path, capsys):
    assert bench_codecs(["--quick", "--out", str(tmp_path), "--codecs", f"{CODEC},fp32"]) == 0
    with open(tmp_path / "codecs_rate_error.csv") as f:
        assert {r["codec"] for r in csv.DictReader(f)} == {CODEC, "fp32"}
    with pytest.raises(SystemExit):
        bench_codecs(["--quick", "--out", str(tmp_path), "--codecs", "nosuch.mod:X"])
    assert "cannot import module nosuch.mod" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["import path", pytest.param("entry point", marks=needs_install)])
def test_a_training_job_runs_the_plugin_task_scheme_and_codec_with_exact_bits(tmp_path, how):
    names = ((TASK, SCHEME, CODEC) if how == "import path" else ("wine_mlp", "decayed_shift", "stochastic_uniform"))
    rounds, workers, bits = 4, 3, 3
    sets = [f"task.name={names[0]}", f"scheme.name={names[1]}", f"scheme.codec={names[2]}",
            f"scheme.codec_params={{bits: {bits}}}", "scheme.params={decay: 0.5}", "task.params={hidden: 6}",
            f"run.rounds={rounds}", f"run.workers={workers}", f"run.results_dir={tmp_path}", "run.name=plugin"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "psgrad.train", "--local", *(a for s in sets for a in ("--set", s))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "plugin" / "summary.json").read_text())
    d = 13 * 6 + 6 + 6 * 3 + 3
    per_message = StochasticUniform(bits=bits).payload_bits(d)
    assert (summary["task"], summary["scheme"], summary["codec"], summary["d"]) == ("wine_mlp", *names[1:], d)
    assert summary["uplink_payload_bits"] == rounds * workers * per_message
    with open(tmp_path / "plugin" / "agents.csv") as f:
        assert {int(r["payload_bits"]) for r in csv.DictReader(f)} == {per_message}
