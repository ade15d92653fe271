import math
import re

import pytest

from psgrad import config, units
from psgrad.runtime.loop import build, resolve_workers, run_local


@pytest.mark.parametrize("value,text", [(0, "0 bit"), (5, "5 bit"), (3244, "3.24 kbit"), (999_960, "1 Mbit"),
                                        (21_457, "21.5 kbit"), (3.1e9, "3.1 Gbit"), (7.25e12, "7.25 Tbit")])
def test_bit_counts_read_with_a_decimal_prefix(value, text):
    assert units.bits(value) == text


@pytest.mark.parametrize("seconds,text", [(0.04, "0.0s"), (42, "42.0s"), (185, "3m05s"), (7620, "2h07m"),
                                          (math.nan, "?"), (math.inf, "?")])
def test_durations_read_in_seconds_minutes_or_hours(seconds, text):
    assert units.duration(seconds) == text


@pytest.mark.parametrize("task", ["logreg", "linreg"])
def test_console_lines_show_speed_eta_and_bits_with_units_within_100_columns(tmp_path, task):
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", "run.name=r", f"task.name={task}",
                                             "run.rounds=6", "run.log_every=3", "run.eval_every=3"]), 1)
    lines = []
    run_local(cfg, *build(cfg), log=lines.append)
    text = "\n".join(lines).splitlines()
    progress = [line for line in text if line.startswith("[")]
    # the "done:" line names the results folder, as long as tmp_path is
    assert len(progress) == 2 and all(len(line) <= 100 for line in text if not line.startswith("done:")), text
    assert re.match(r"\[6/6\] \d+\.\ds [\d.]+ r/s eta 0\.0s \| loss [\d.]+ test [\d.]+ .*\| up [\d.]+ kbit x[\d.]+$",
                    progress[-1]), progress[-1]
    assert any(line.startswith("uplink: ") and "kbit of payload" in line for line in text)


def test_tensorboard_events_hold_every_rounds_metrics_and_bits(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard package (pip install 'psgrad[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", "run.name=tb", "run.rounds=4",
                                             "run.eval_every=2", "run.tensorboard=true"]), 1)
    run_local(cfg, *build(cfg), log=lambda line: None)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    bits = events.Scalars("cum_up_payload_bits")
    assert [e.step for e in bits] == [0, 1, 2, 3, 4] and bits[0].value == 0 and bits[-1].value > 0
    assert [e.step for e in events.Scalars("test_accuracy")] == [0, 2, 4]
    assert (tmp_path / "tb" / "metrics.csv").is_file()


def test_tensorboard_without_its_package_is_one_config_error_naming_the_extra(tmp_path, monkeypatch):
    import builtins

    from psgrad.errors import ConfigError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", "run.name=tb", "run.rounds=2",
                                             "run.tensorboard=true"]), 1)
    with pytest.raises(ConfigError, match=r"pip install 'psgrad\[tensorboard\]'"):
        run_local(cfg, *build(cfg), log=lambda line: None)
