import csv
import itertools
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from psgrad import plot
from psgrad.compare.figures import figure, redraw
from psgrad.compare.spec import from_dict

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference" / "linreg"


def fake_run(folder, codec="qsgd", scheme="tpc", rounds=40, first_bits=8000, extra=()):
    """A run folder as the runtime writes it: metrics.csv evaluated every 10 rounds, config.yaml, summary.json."""
    folder.mkdir(parents=True)
    columns = ["round", "cum_up_payload_bits", "time_s", "train_loss", "test_accuracy", *extra]
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for t in range(rounds + 1):
            evaluated = t % 10 == 0
            row = {"round": t, "cum_up_payload_bits": t * first_bits, "time_s": 0.1 * t,
                   "train_loss": 0.7 / (1 + t) if evaluated else "",
                   "test_accuracy": 0.5 + t / 100 if evaluated else "",
                   "sim_time": 0.2 * t, "cum_total_bits": 3 * t * first_bits}
            w.writerow([row[c] for c in columns])
    cfg = {"task": {"name": "logreg", "dataset": "breast_cancer", "batch_size": 0},
           "scheme": {"name": scheme, "codec": codec, "codec_params": {}, "params": {}},
           "run": {"workers": 4, "agents_per_worker": 2}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "summary.json").write_text(json.dumps({"task": "logreg", "agents": 8}))
    return folder


def tick_texts(ax, axis="x"):
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    return [t.get_text() for t in ticks if lo <= (t.get_position()[0 if axis == "x" else 1]) <= hi]


def overlapping_tick_labels(fig):
    """Pairs of visible tick labels on one axis whose drawn boxes intersect."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_visible() and t.get_text()]
            pairs += [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    return pairs


def test_options_parse_into_labels_metrics_x_axes_log_and_output():
    args = plot.parse_args(["r1", "r2", "--labels", "tpc, fp16", "--metrics", "test_accuracy,train_loss",
                            "--x", "time", "--x", "bits", "--log", "--out", "fig.pdf"])
    assert args.runs == ["r1", "r2"] and args.labels == ["tpc", "fp16"]
    assert args.metrics == ["test_accuracy", "train_loss"] and args.x == ["time", "bits"]
    assert args.log and args.out == "fig.pdf"
    default = plot.parse_args(["r1"])
    assert default.labels is None and default.metrics is None and default.x is None and not default.log


def test_an_unknown_x_axis_is_refused_with_status_2(capsys):
    with pytest.raises(SystemExit) as e:
        plot.parse_args(["r1", "--x", "wire"])
    assert e.value.code == 2 and "invalid choice: 'wire'" in capsys.readouterr().err


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_png_and_pdf_are_written(tmp_path, capsys, suffix, magic):
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b", codec="fp16")
    out = tmp_path / "sub" / f"fig{suffix}"
    assert plot.main([str(a), str(b), "--out", str(out)]) == 0
    assert out.read_bytes()[:len(magic)] == magic and out.stat().st_size > 5_000
    assert capsys.readouterr().out == f"wrote {out}\n"


@pytest.mark.parametrize("option, column", [(["--x", "total"], "cum_total_bits"), (["--x", "sim_time"], "sim_time"),
                                            (["--metrics", "test_accuracy,f1"], "f1")])
def test_a_missing_column_is_one_error_line_and_status_2(tmp_path, capsys, option, column):
    a = fake_run(tmp_path / "a")
    out = tmp_path / "fig.png"
    assert plot.main([str(a), *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("psgrad.plot: ") and f"no column {column!r}" in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [(["--labels", "x,y"], "--labels: got 2 labels for 1 runs"),
                                           (["--out", "fig.jpgx"], "unknown figure format '.jpgx'")])
def test_bad_labels_or_output_format_are_one_error_line(tmp_path, capsys, argv, message):
    a = fake_run(tmp_path / "a")
    assert plot.main([str(a), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_total_bits_and_simulated_time_are_accepted_when_metrics_csv_has_them(tmp_path):
    a = fake_run(tmp_path / "a", extra=("sim_time", "cum_total_bits"))
    fig = plot.figure_runs([a], xs=("total", "sim_time"))
    total, sim = fig.axes[:2]
    assert total.get_xlabel() == "uplink + downlink payload, all agents (bits)" and total.get_xscale() == "symlog"
    assert sim.get_xlabel() == "simulated time (s)"
    assert list(total.lines[0].get_xdata()) == [3 * 10 * 8000 * k for k in range(5)]


def test_axis_labels_name_the_metric_in_words_and_carry_units(tmp_path):
    a = fake_run(tmp_path / "a", first_bits=300_000)
    fig = plot.figure_runs([a], xs=("bits", "rounds", "time"))
    bits, rounds, time = fig.axes[:3]
    assert bits.get_xlabel() == "uplink payload, all agents (bits)"
    assert rounds.get_xlabel() == "round" and time.get_xlabel() == "wall-clock time (s)"
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss"] * 3 + ["test accuracy"] * 3
    # 3 M .. 12 M bits: decimal prefixes, 0 for round 0
    labels = tick_texts(bits)
    assert labels[0] == "0" and all(t.endswith(" M") for t in labels[1:]) and len(labels) >= 3, labels
    assert plot.metric_label("suboptimality") == "suboptimality f(w) - f*"


def test_the_title_names_task_agents_scheme_and_codec_of_one_run(tmp_path):
    fig = plot.figure_runs([fake_run(tmp_path / "a")])
    assert fig.get_suptitle() == "logreg on breast_cancer, 8 agents, scheme tpc, codec qsgd"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a"]


def test_several_runs_share_the_title_and_differ_in_the_legend(tmp_path):
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b", codec="fp16")
    fig = plot.figure_runs([a, b])
    assert fig.get_suptitle() == "logreg on breast_cancer, 8 agents, scheme tpc"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a (codec qsgd)", "b (codec fp16)"]
    # a label that names the codec does not repeat it
    fig = plot.figure_runs([a, b], labels=["qsgd", "half"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["qsgd", "half (codec fp16)"]


def test_round_0_is_plotted_at_zero_bits_inside_the_bits_axis(tmp_path):
    fig = plot.figure_runs([fake_run(tmp_path / "a")])
    bits = fig.axes[0]
    line = bits.lines[0]
    assert line.get_xdata()[0] == 0 and line.get_ydata()[0] == pytest.approx(0.7)
    lo, hi = bits.get_xlim()
    assert bits.get_xscale() == "symlog" and lo < 0 < 80_000 < hi
    # the linear strip ends at the first round that sent bits, so every such round is on the log part
    assert bits.xaxis.get_transform().linthresh == 80_000


@pytest.mark.parametrize("first_bits, rounds", [(8000, 40), (3, 300), (250_000, 1000), (1, 10)])
def test_no_two_tick_labels_overlap(tmp_path, first_bits, rounds):
    a, b = fake_run(tmp_path / "a", first_bits=first_bits, rounds=rounds), fake_run(tmp_path / "b", rounds=rounds)
    assert overlapping_tick_labels(plot.figure_runs([a, b], xs=("bits", "rounds", "time"))) == []


def test_the_overlap_check_finds_crowded_tick_labels():
    fig = Figure(figsize=(2, 2))
    ax = fig.subplots()
    ax.set_xticks(range(20), [f"{k} 000 000" for k in range(20)])
    assert len(overlapping_tick_labels(fig)) > 10


@settings(max_examples=300, deadline=None)
@given(st.floats(-15, 12), st.floats(0.02, 20))
def test_log_ticks_lie_in_range_and_are_few(lo_exp, decades):
    lo, hi = 10.0 ** lo_exp, 10.0 ** (lo_exp + decades)
    ticks = plot.log_ticks(lo, hi)
    assert 2 <= len(ticks) <= plot.MAX_TICKS, (lo, hi, ticks)
    assert ticks == sorted(ticks) and all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)


def test_one_label_style_per_axis():
    f = plot.NumberFormatter()
    f.set_locs([1e-6, 1e-3, 1.0])
    assert [f(v) for v in (1e-6, 1e-3, 1.0, 2e-6)] == ["$10^{-6}$", "$10^{-3}$", "$10^{0}$", "$2\\times10^{-6}$"]
    f.set_locs([0.2, 0.3, 0.5])
    assert [f(v) for v in (0.2, 0.3, 0.5, 0)] == ["0.2", "0.3", "0.5", "0"]


def test_comparison_figures_are_drawn_from_a_committed_comparison_folder(tmp_path):
    paths = redraw(REFERENCE, tmp_path)
    assert [p.name for p in paths] == ["bits.png", "rounds.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_comparison_figures_name_the_setting_in_the_title_and_scheme_or_codec_in_the_legend():
    data = yaml.safe_load((REFERENCE / "compare.yaml").read_text())
    data.update(results_dir=str(REFERENCE.parent))
    comparison = from_dict(data)
    rows = [{"round": 0.0, "cum_up_payload_bits": 0.0, "suboptimality": 1.0},
            {"round": 1.0, "cum_up_payload_bits": 640.0, "suboptimality": 0.5}]
    curves = [(c.label, c.proposed, [rows]) for c in comparison.contenders]
    fig = figure(comparison, curves, "bits")
    assert fig.get_suptitle() == "linreg on synthetic data (d=200), 8 agents\nbest grid point of each contender"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["fp32 (scheme direct)", "qsgd (scheme diana)"]
    assert "tpc-topk, proposed" in legend and "lag (codec fp32)" in legend and "clag-topk (scheme lag)" in legend
    assert legend[-1] == "target: suboptimality f(w) - f* \u2264 1e-06"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "uplink payload, all agents (bits)" and ax.get_xscale() == "symlog"
    assert ax.get_ylabel() == "suboptimality f(w) - f*"
    assert all(line.get_xdata()[0] == 0 for line in ax.lines[:-1])
    assert overlapping_tick_labels(fig) == []


def test_linreg_on_a_classification_dataset_name_is_described_as_its_synthetic_generator():
    assert plot.describe_task({"name": "linreg", "dataset": "breast_cancer", "dim": 50}) == \
        "linreg on synthetic data (d=50)"
    assert plot.describe_task({"name": "mlp", "dataset": "digits", "batch_size": 32}) == "mlp on digits, minibatch 32"
