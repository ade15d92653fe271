import subprocess
import sys

import pytest

from psgrad import config
from psgrad.errors import ConfigError


def test_the_built_in_default_needs_no_file():
    cfg = config.load()
    assert cfg == config.Config()


def test_the_default_job_is_the_reproducible_mnist_mlp_also_found_in_configs():
    cfg = config.load(config.DEFAULT_JOB)
    assert (cfg.task.name, cfg.task.dataset, cfg.scheme.name, cfg.run.name) == ("mlp", "mnist", "tpc", "default")
    assert cfg.run.reproducible
    assert (config.DEFAULT_JOB.parents[1] / "configs" / "default.yaml").resolve() == config.DEFAULT_JOB


def test_reproducible_mode_on_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="run.reproducible: true covers torch on the CPU only, got task.device="):
        config.load(None, ["run.reproducible=true", "task.device=cuda"])


def test_yaml_file_and_overrides_compose(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  rounds: 7\n  seed: 3\nscheme:\n  codec: fp16\n")
    cfg = config.load(p, ["run.rounds=9", "optim.lr=1", "scheme.codec_params={levels: 4}"])
    assert (cfg.run.rounds, cfg.run.seed, cfg.scheme.codec) == (9, 3, "fp16")
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.scheme.codec_params == {"levels": 4}


def test_saved_config_loads_back_to_the_same_hash(tmp_path):
    cfg = config.load(None, ["run.rounds=5", "task.name=linreg"])
    config.dump(cfg, tmp_path / "c.yaml")
    again = config.load(tmp_path / "c.yaml")
    assert again == cfg and config.config_hash(again) == config.config_hash(cfg)


def test_hash_changes_with_any_value():
    assert config.config_hash(config.load()) != config.config_hash(config.load(None, ["run.seed=1"]))


@pytest.mark.parametrize("text,value", [("1e-3", 1e-3), ("1E-3", 1e-3), ("1.0e6", 1e6), ("5e+2", 500.0), (".5", 0.5),
                                        ("2.5E-1", 0.25), ("3", 3.0), ("1_000e-3", 1.0)])
def test_every_way_of_writing_a_number_is_a_float_in_overrides_and_files(text, value, tmp_path):
    assert config.load(None, [f"optim.lr={text}"]).optim.lr == value
    p = tmp_path / "c.yaml"
    p.write_text(f"optim:\n  lr: {text}\nscheme:\n  codec_params: {{threshold: -{text}}}\n")
    cfg = config.load(p)
    assert cfg.optim.lr == value and isinstance(cfg.optim.lr, float)
    assert cfg.scheme.codec_params == {"threshold": -value}


def test_numbers_in_comparison_overrides_are_floats_too():
    assert config.parse_override("a.b=1e-3", "a.b=value", "a.b=1")[1] == 1e-3
    assert config.parse_override("a.b=1e3", "a.b=value", "a.b=1")[1] == 1000.0
    assert config.parse_override("a.b=1e", "a.b=value", "a.b=1")[1] == "1e"  # not a number: text
    assert config.parse_override("a.b=e5", "a.b=value", "a.b=1")[1] == "e5"


def test_a_whole_float_is_accepted_where_an_int_is_expected():
    cfg = config.load(None, ["run.rounds=1e3", "run.seed=2.0"])
    assert (cfg.run.rounds, cfg.run.seed) == (1000, 2) and type(cfg.run.rounds) is int


@pytest.mark.parametrize("override,message", [
    ("run.nope=1", r"run: unknown key nope; valid: name, seed, rounds"),
    ("nope.x=1", r"config: unknown key nope; valid: task, scheme, downlink, optim, run"),
    ("run.rounds=abc", r"run.rounds: expected int, got 'abc'"),
    ("run.rounds=2.5", r"run.rounds: expected int"),
    ("run.rounds=true", r"run.rounds: expected int"),
    ("run.rounds=1e-3", r"run.rounds: expected int, got 0.001"),
    ("optim.lr=.inf", r"optim.lr: expected a finite float, got inf"),
    ("run.timeout=.nan", r"run.timeout: expected a finite float, got nan"),
    ("run.rounds=0", r"run.rounds: expected a value > 0, got 0"),
    ("optim.lr=-1", r"optim.lr: expected a value > 0"),
    ("optim.momentum=1.5", r"optim.momentum: expected a value in \[0, 1\)"),
    ("task.partition=zipf", r"task.partition: expected one of iid, dirichlet, classes, got 'zipf'"),
    ("run.aggregate=max", r"run.aggregate: expected one of mean, weighted"),
    ("run.name=../x", r"run.name: expected a plain folder name"),
    ("rounds=3", r"must look like section.key=value"),
    ("run.rounds", r"must look like section.key=value"),
    ("scheme.codec_params=3", r"scheme.codec_params: expected dict"),
    ("run.reproducible=1", r"run.reproducible: expected bool"),
])
def test_bad_values_name_the_key_and_what_was_expected(override, message):
    with pytest.raises(ConfigError, match=message):
        config.load(None, [override])


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("run: 3\n")
    with pytest.raises(ConfigError, match="run: expected a mapping"):
        config.load(scalar)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config.load(lst)


@pytest.mark.parametrize("args,message", [
    (["--set", "run.rounds=0"], "run.rounds: expected a value > 0"),
    (["--set", "scheme.codec=nope"], "unknown codec 'nope'; known:"),
    (["--set", "task.name=nope"], "unknown task 'nope'"),
    (["--config", "/nonexistent.yaml"], "does not exist"),
])
def test_train_prints_one_line_and_exits_2_on_a_config_error(args, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "psgrad.train", "--local", *args], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=_env())
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("psgrad: config error"), r.stderr


def _env():
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
