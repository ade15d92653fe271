import copy
import csv
import json
import math
from pathlib import Path

import pytest

from psgrad.compare import __main__ as cli
from psgrad.compare import figures, summary
from psgrad.compare import from_dict, load, reach, run_comparison, run_result
from psgrad.compare.spec import Target, beyond
from psgrad.compare.sweep import check_target
from psgrad.compare.table import COLUMNS, best_index, format_bits, median_interval, summarize
from psgrad.errors import ConfigError
from psgrad.runtime.results import read_metrics

TINY = {
    "name": "tiny",
    "base": {"task": {"name": "linreg", "dim": 8, "samples_per_agent": 30},
             "run": {"rounds": 12, "eval_every": 1, "workers": 2}},
    "target": {"metric": "suboptimality", "at_most": 0.3},
    "contenders": [
        {"label": "fp32", "scheme": "direct", "codec": "fp32", "grid": {"optim.lr": [0.02, 0.1]}},
        {"label": "fp16", "scheme": "direct", "codec": "fp16", "proposed": True, "grid": {"optim.lr": [0.02, 0.1]}},
    ],
}


def tiny(tmp_path, fixed_lr=None, **changes):
    data = copy.deepcopy(TINY)
    if fixed_lr is not None:  # one grid point each: the quickest comparison
        for c in data["contenders"]:
            c["grid"] = {"optim.lr": [fixed_lr]}
    data["results_dir"] = str(tmp_path)
    data.update(changes)
    return from_dict(data)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def write_metrics(path, rows):
    cols = ["round", "cum_up_payload_bits", "cum_up_wire_bytes", *(["sim_time"] if "sim_time" in rows[0] else []),
            "test_loss"]
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols, restval="")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return read_metrics(path)


SUMMARY = {"uplink_payload_bits": 500, "downlink_payload_bits": 900, "bits_per_coordinate": 2.5}


def test_bits_to_target_are_the_cumulative_bits_of_the_first_evaluated_round_that_meets_it(tmp_path):
    rows = write_metrics(tmp_path, [
        {"round": 0, "cum_up_payload_bits": 0, "cum_up_wire_bytes": 0, "test_loss": 1.0},
        {"round": 1, "cum_up_payload_bits": 100, "cum_up_wire_bytes": 20},                 # not evaluated
        {"round": 2, "cum_up_payload_bits": 180, "cum_up_wire_bytes": 40, "test_loss": 0.5},
        {"round": 3, "cum_up_payload_bits": 250, "cum_up_wire_bytes": 60, "test_loss": 0.09},
        {"round": 4, "cum_up_payload_bits": 400, "cum_up_wire_bytes": 80, "test_loss": 0.2},
        {"round": 5, "cum_up_payload_bits": 500, "cum_up_wire_bytes": 99, "test_loss": 0.01},
    ])
    r = run_result(rows, Target("test_loss", 0.1, "at_most"), SUMMARY)
    assert (r["reached"], r["bits_to_target"], r["rounds_to_target"], r["wire_bytes_to_target"]) == (True, 250, 3, 60)
    assert (r["final_metric"], r["best_metric"]) == (0.01, 0.01)
    assert (r["total_uplink_bits"], r["total_downlink_bits"]) == (500, 900)
    # exactly at the threshold counts; a lower threshold is first met later
    assert run_result(rows, Target("test_loss", 0.5, "at_most"), SUMMARY)["bits_to_target"] == 180
    assert run_result(rows, Target("test_loss", 0.05, "at_most"), SUMMARY)["rounds_to_target"] == 5
    # the initial model meeting the target costs zero bits
    assert run_result(rows, Target("test_loss", 1.0, "at_most"), SUMMARY)["bits_to_target"] == 0
    # 'at least' reads the other way
    assert run_result(rows, Target("test_loss", 0.4, "at_least"), SUMMARY)["rounds_to_target"] == 0
    missed = run_result(rows, Target("test_loss", 0.001, "at_most"), SUMMARY)
    assert (missed["reached"], missed["bits_to_target"], missed["best_metric"]) == (False, None, 0.01)


def test_a_round_that_is_not_evaluated_never_counts_even_if_the_target_would_be_met_there(tmp_path):
    rows = write_metrics(tmp_path, [
        {"round": 0, "cum_up_payload_bits": 0, "cum_up_wire_bytes": 0, "test_loss": 1.0},
        {"round": 1, "cum_up_payload_bits": 10, "cum_up_wire_bytes": 5},
        {"round": 2, "cum_up_payload_bits": 20, "cum_up_wire_bytes": 9, "test_loss": 0.01},
    ])
    assert reach(rows, Target("test_loss", 0.1, "at_most"))["round"] == 2


def test_nan_never_meets_a_target_and_is_the_worst_value():
    t = Target("test_loss", 0.1, "at_most")
    assert not t.met(math.nan)
    assert t.better(5.0, math.nan) and not t.better(math.nan, 5.0)


def test_best_grid_point_is_fewest_bits_then_best_final_metric():
    t = Target("test_accuracy", 0.9, "at_least")
    res = [
        {"reached": False, "bits_to_target": None, "final_metric": 0.89},
        {"reached": True, "bits_to_target": 300, "final_metric": 0.91},
        {"reached": True, "bits_to_target": 200, "final_metric": 0.90},
        {"reached": True, "bits_to_target": 200, "final_metric": 0.95},
    ]
    assert best_index(res, t) == 3
    assert best_index([res[0], {"reached": False, "bits_to_target": None, "final_metric": 0.5}], t) == 0


def test_small_comparison_writes_a_table_consistent_with_its_runs(tmp_path):
    comparison = tiny(tmp_path)
    rows = run_comparison(comparison, progress=False)
    out = tmp_path / "tiny"
    table = read_csv(out / "table.csv")
    assert tuple(table[0]) == COLUMNS
    assert [r["label"] for r in table] == ["fp32", "fp16"]
    sweep = read_csv(out / "sweep.csv")
    assert len(sweep) == 4
    for row in table:
        runs = [s for s in sweep if s["label"] == row["label"]]
        winner = next(s for s in runs if s["best"] == "True")
        assert row["best_grid_point"] == winner["grid_point"]
        metrics = read_metrics(out / "runs" / winner["run"])
        summary = json.loads((out / "runs" / winner["run"] / "summary.json").read_text())
        first = next(m for m in metrics if "suboptimality" in m and m["suboptimality"] <= 0.3)
        assert row["reached"] == "True"
        assert int(row["bits_to_target"]) == first["cum_up_payload_bits"]
        assert int(row["rounds_to_target"]) == first["round"]
        assert float(row["final_metric"]) == summary["final"]["suboptimality"] == metrics[-1]["suboptimality"]
        assert int(row["total_uplink_bits"]) == summary["uplink_payload_bits"]
        assert int(row["total_downlink_bits"]) == summary["downlink_payload_bits"]
        # the winner needs no more bits than any other grid point that reached the target
        assert all(int(s["bits_to_target"]) >= int(row["bits_to_target"]) for s in runs if s["reached"] == "True")
    fp32, fp16 = table
    assert float(fp32["ratio_to_best_baseline"]) == 1.0
    # same trajectory to float16 rounding, half the bits per coordinate
    assert float(fp16["ratio_to_best_baseline"]) == pytest.approx(0.5, abs=0.05)
    assert float(fp16["uplink_bits_per_coordinate"]) == 16.0
    assert "| **fp16** |" in (out / "table.md").read_text()
    # no clock: no simulated seconds, and no column for them
    assert all(r["seconds_to_target"] == "" for r in table + sweep)
    assert "simulated s" not in (out / "table.md").read_text()
    for png in ("bits.png", "rounds.png"):
        assert (out / png).stat().st_size > 10_000
    assert rows[0]["label"] == "fp32"


def test_a_contender_that_misses_the_target_reports_its_best_value_and_no_ratio(tmp_path):
    comparison = tiny(tmp_path, fixed_lr=0.1, target={"metric": "suboptimality", "at_most": 1e-9})
    rows = run_comparison(comparison, progress=False)
    assert all(not r["reached"] and r["ratio_to_best_baseline"] is None for r in rows)
    assert "not reached (best" in (tmp_path / "tiny" / "table.md").read_text()


@pytest.mark.parametrize("change, message", [
    ({"target": {"metric": "suboptimality"}}, "exactly one of at_most, at_least"),
    ({"target": {"metric": "suboptimality", "at_most": 1, "at_least": 2}}, "exactly one of"),
    ({"target": {"metric": "suboptimality", "below": 1}}, "unknown key below"),
    ({"target": {"metric": "suboptimality", "at_most": "low"}}, "expected a finite number"),
    ({"contenders": []}, "non-empty list"),
    ({"colour": 1}, "unknown key colour"),
    ({"name": "a/b"}, "plain folder name"),
    ({"seeds": 0}, r"^seeds: expected an int >= 1"),
    ({"seeds": True}, "seeds: expected an int"),
    ({"repeats": 3}, "^repeats: no longer a key; write seeds: S instead"),
    ({"grid_policy": "grow"}, r"^grid_policy: expected one of fixed, extend, got 'grow'$"),
    ({"grid_extend_max": -1}, "^grid_extend_max: expected an int >= 0"),
    ({"base": {"scheme": {"name": "tpc"}}}, "must not set a scheme"),
    ({"base": {"run": {"rounds": -1}}}, "base: run.rounds"),
])
def test_bad_comparisons_say_what_is_wrong(tmp_path, change, message):
    data = copy.deepcopy(TINY)
    data.update(change)
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


@pytest.mark.parametrize("contender, message", [
    ({"grid": {"optim.lr": [0.1, 0.2, 0.3]}}, r"same number of points .*fp32: 2, fp16: 3"),
    ({"grid": {"optim.learning_rate": [0.1, 0.2]}}, r"contender 'fp16' at grid point optim.learning_rate=0.1: optim"),
    ({"grid": {"lr": [0.1, 0.2]}}, "dotted config path"),
    ({"grid": {"optimizer.lr": [0.1, 0.2]}}, "unknown section"),
    ({"grid": {"optim.lr": []}}, "non-empty list"),
    ({"grid": {"run.name": ["a", "b"]}}, "set by the comparison"),
    ({"label": "fp32"}, "duplicate label fp32"),
    ({"label": "a b"}, "label"),
    ({"proposed": "yes"}, "proposed: expected true or false"),
    ({"codecs": "fp16"}, "unknown key codecs"),
])
def test_bad_contenders_say_which_and_what(tmp_path, contender, message):
    data = copy.deepcopy(TINY)
    data["contenders"][1].update(contender)
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_unknown_codec_or_metric_stops_the_comparison_before_any_run(tmp_path):
    data = copy.deepcopy(TINY)
    data["results_dir"] = str(tmp_path)
    data["contenders"][1]["codec"] = "fp8"
    with pytest.raises(ConfigError, match="contender 'fp16'.*unknown codec 'fp8'"):
        run_comparison(from_dict(data), progress=False)
    data["contenders"][1].update(scheme="diana", codec="topk")  # diana needs an unbiased codec
    with pytest.raises(ConfigError, match="contender 'fp16'.*needs a unbiased codec"):
        run_comparison(from_dict(data), progress=False)
    with pytest.raises(ConfigError, match="evaluates train_loss, test_loss, suboptimality; got 'test_accuracy'"):
        run_comparison(tiny(tmp_path, target={"metric": "test_accuracy", "at_least": 0.9}), progress=False)
    assert not (tmp_path / "tiny" / "runs").exists()


def test_command_line_reports_a_bad_file_in_one_line_with_status_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntarget: {metric: suboptimality, at_most: 1e-3}\ncontenders: []\n")
    assert cli.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "contenders: expected a non-empty list" in err
    assert cli.main([str(tmp_path / "missing.yaml")]) == 2


def test_overrides_reach_the_base_config_and_yaml_exponents_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    data = copy.deepcopy(TINY)
    data["target"] = {"metric": "suboptimality", "at_most": "1e-3"}
    import yaml
    path.write_text(yaml.safe_dump(data))
    comparison = load(path, ["base.run.rounds=3", f"results_dir={tmp_path}"])
    assert comparison.target.threshold == 1e-3
    assert all(p.cfg.run.rounds == 3 for p in comparison.points)
    assert comparison.points[0].cfg.run.results_dir == str(tmp_path / "tiny" / "runs")


def test_seeds_run_every_grid_point_and_resume_skips_finished_runs(tmp_path):
    comparison = tiny(tmp_path, fixed_lr=0.1, seeds=2)
    rows = run_comparison(comparison, progress=False)
    runs = sorted(p.name for p in (tmp_path / "tiny" / "runs").iterdir())
    assert runs == ["fp16-lr0.1", "fp16-lr0.1-seed1", "fp32-lr0.1", "fp32-lr0.1-seed1"]
    assert all(r["seeds_reached"] == "2/2" for r in rows)
    stamp = (tmp_path / "tiny" / "runs" / "fp32-lr0.1" / "metrics.csv").stat().st_mtime_ns
    again = run_comparison(tiny(tmp_path, fixed_lr=0.1, seeds=2), progress=False, resume=True)
    assert (tmp_path / "tiny" / "runs" / "fp32-lr0.1" / "metrics.csv").stat().st_mtime_ns == stamp
    assert again == rows


def test_a_learning_rate_that_diverges_is_a_result_not_a_crash(tmp_path):
    rows = run_comparison(tiny(tmp_path, fixed_lr=50.0), progress=False)
    assert all(not r["reached"] and r["diverged_round"] > 0 and math.isnan(r["final_metric"]) for r in rows)
    assert "diverged in round" in (tmp_path / "tiny" / "table.md").read_text()


SHIPPED = sorted(Path(__file__).parents[2].glob("configs/compare/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_comparison_is_valid_fair_and_evaluates_every_round(path):
    comparison = load(path)
    assert comparison.seeds >= 5
    if comparison.target.count == "uplink":  # the README's summary: grids that bracket, a stated network, PowerSGD
        assert comparison.grid_policy == "extend" and comparison.points[0].cfg.clock.enabled
        if comparison.points[0].cfg.task.name in ("mlp", "cnn"):
            assert "powersgd" in {c.label for c in comparison.contenders}
    check_target(comparison, 1)  # builds every scheme and codec and checks the target metric exists
    assert comparison.out.parent == Path("results/compare") and comparison.out.name == path.stem
    # The MNIST comparisons (docs/tpc.md) evaluate every other round: 5 seeds of d = 25450 on one core.
    # Shakespeare (a GRU over 80-character windows, 10 clients x 5 local steps a round) every fourth.
    mnist, shakespeare = "_mnist_" in path.stem, path.stem.startswith("charlm")
    every = 4 if shakespeare else 2 if mnist else 1
    assert all(p.cfg.run.eval_every == every for p in comparison.points)
    labels = {c.label for c in comparison.contenders}
    if shakespeare:  # federated: cohorts of the clients, local steps, FedAvg's rule for absent clients
        cfg = comparison.points[0].cfg
        assert cfg.run.clients_per_round < cfg.run.clients and cfg.task.local_steps and cfg.run.absent == "skip"
        assert {"fp32", "qsgd", "topk-ef21", "sparse_dither", "powersgd", "tpc-qsgd"} <= labels
        assert {c.label for c in comparison.contenders if c.proposed} == {l for l in labels if l.startswith("tpc")}
        return
    if mnist:  # the strongest baselines, PowerSGD, and the strongest also on the agents' moving average
        assert {"fp32", "qsgd-diana", "topk-ef21", "rotated_sign-ef21", "sparse_dither-diana",
                "sparse_dither-diana-ema", "powersgd", "tpc-rotated_sign", "tpc-ema-rotated_sign"} <= labels
        assert {c.label for c in comparison.contenders if c.proposed} == {l for l in labels if l.startswith("tpc")}
        return
    if comparison.target.count == "total":  # a both-directions comparison: one uplink, fp32 vs EF21-P downlinks
        assert "fp32-downlink" in labels and all(p.cfg.downlink.scheme == "direct" for p in comparison.points
                                                 if p.label == "fp32-downlink")
        assert {c.label for c in comparison.contenders if c.proposed} == labels - {"fp32-downlink"}
        return
    assert {"fp32", "qsgd", "natural_dither", "topk-ef21", "randk", "rotated_sign-ef21", "lag", "clag-topk",
            "sparse_dither", "spherical", "tpc-fp32"} <= labels
    assert {c.label for c in comparison.contenders if c.proposed} == {
        label for label in labels if label.startswith(("tpc", "sparse_dither", "spherical"))}


def test_seeds_give_the_median_bits_its_order_statistics_interval_and_seeds_reached_of_the_per_seed_runs(tmp_path):
    comparison = tiny(tmp_path, fixed_lr=0.03, seeds=5, target={"metric": "suboptimality", "at_most": 0.4})
    run_comparison(comparison, progress=False)
    out = tmp_path / "tiny"
    sweep, table = read_csv(out / "sweep.csv"), read_csv(out / "table.csv")
    assert [r["seed"] for r in sweep] == ["0", "1", "2", "3", "4"] * 2
    for row in table:
        seeds = [r for r in sweep if r["label"] == row["label"]]
        bits = sorted(int(r["bits_to_target"]) if r["reached"] == "True" else math.inf for r in seeds)
        reached = sum(b < math.inf for b in bits)
        assert 0 < reached < 5  # some seeds miss the target: the case where the median must count them
        assert row["seeds_reached"] == f"{reached}/5"
        assert row["reached"] == str(bits[2] < math.inf)
        assert row["bits_to_target"] == (str(bits[2]) if bits[2] < math.inf else "")
        # 5 seeds: the order-statistics interval of the median is [min, max], coverage 1 - 2/2^5
        assert (row["bits_to_target_low"], row["bits_to_target_high"]) == (
            str(bits[0]), str(bits[4]) if bits[4] < math.inf else "")
        assert float(row["interval_coverage"]) == 0.9375
        assert (row["grid_points"], row["seeds"], row["evaluated_runs"], row["evaluated_rounds"]) == ("1", "5", "5",
                                                                                                      "60")
    text = (out / "table.md").read_text()
    assert "median of 5 seeds | 93.75% interval | seeds reached | total bits to target (median, 93.75% interval) |" \
        in text
    # the figures, drawn again from the folder, band every contender's 5 seeds
    fig = figures.figure(comparison, [(c.label, c.proposed, [read_metrics(out / "runs" / r["run"]) for r in sweep
                                                            if r["label"] == c.label]) for c in comparison.contenders],
                         "bits")
    assert len(fig.axes[0].collections) == 2 and "median and range over 5 seeds" in fig.get_suptitle()
    assert [p.name for p in figures.redraw(out, tmp_path / "again")] == ["bits.png", "rounds.png"]


def test_the_median_curve_takes_each_round_over_the_seeds_that_evaluated_it():
    runs = [[{"round": 0.0, "bits": 0.0, "loss": 1.0}, {"round": 1.0, "bits": 10.0},
             {"round": 2.0, "bits": 20.0, "loss": 0.5}],
            [{"round": 0.0, "bits": 0.0, "loss": 1.0}, {"round": 1.0, "bits": 14.0},
             {"round": 2.0, "bits": 30.0, "loss": 0.2}],
            [{"round": 0.0, "bits": 0.0, "loss": 3.0}]]  # diverged after round 0
    xs, mid, low, high = figures.median_curve(runs, "loss", "bits")
    assert xs == [0.0, 25.0] and mid == [1.0, 0.35] and low == [1.0, 0.2] and high == [3.0, 0.5]


@pytest.mark.parametrize("n, k, coverage", [(1, 1, 0.0), (4, 1, 0.875), (5, 1, 0.9375), (6, 1, 0.96875),
                                            (8, 1, 1 - 2 / 256), (9, 2, 1 - 2 * 10 / 512), (17, 5, None)])
def test_the_median_interval_is_the_widest_needed_order_statistics_pair_with_its_exact_binomial_coverage(n, k,
                                                                                                     coverage):
    values = [10 * i for i in range(n, 0, -1)]  # unsorted on purpose
    low, high, cover = median_interval(values)
    assert (low, high) == (10 * k, 10 * (n + 1 - k))
    exact = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2 ** n
    assert cover == exact and (coverage is None or cover == coverage)
    if n >= 6:  # the narrowest such pair: one order statistic further in falls below 95%
        assert cover >= 0.95 and 1 - 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2 ** n < 0.95


def test_a_winner_on_the_edge_of_a_numeric_grid_axis_is_flagged_and_an_interior_one_is_not(tmp_path):
    data = copy.deepcopy(TINY)
    data["results_dir"] = str(tmp_path)
    data["base"]["run"]["rounds"] = 20
    data["contenders"][0]["grid"] = {"optim.lr": [0.32, 0.64, 1.28]}  # 0.64: the best of three (1.28 diverges)
    data["contenders"][1]["grid"] = {"optim.lr": [0.04, 0.08, 0.16]}  # 0.16: the largest and best
    data["target"] = {"metric": "suboptimality", "at_most": 1e-3}
    rows = {r["label"]: r for r in run_comparison(from_dict(data), progress=False)}
    assert (rows["fp32"]["best_grid_point"], rows["fp32"]["edge"]) == ("lr=0.64", "")
    assert (rows["fp16"]["best_grid_point"], rows["fp16"]["edge"]) == ("lr=0.16", "optim.lr=max")
    assert "| lr=0.16 | optim.lr=max |" in (tmp_path / "tiny" / "table.md").read_text()


def extending(tmp_path, cap):
    """One contender whose bits-to-target optimum (lr 0.64; 1.28 diverges) lies far above its grid [0.04, 0.08]."""
    data = copy.deepcopy(TINY)
    data.update(results_dir=str(tmp_path), grid_policy="extend", grid_extend_max=cap,
                target={"metric": "suboptimality", "at_most": 1e-3})
    data["base"]["run"]["rounds"] = 20
    data["contenders"] = [{"label": "fp32", "scheme": "direct", "grid": {"optim.lr": [0.04, 0.08]}}]
    (row,) = run_comparison(from_dict(data), progress=False)
    return row, read_csv(tmp_path / "tiny" / "sweep.csv")


def test_extend_doubles_the_edge_value_until_the_winner_is_interior(tmp_path):
    row, sweep = extending(tmp_path, cap=5)
    lrs = [(r["grid_point"], r["grid_step"]) for r in sweep]
    assert lrs == [("lr=0.04", "0"), ("lr=0.08", "0"), ("lr=0.16", "1"), ("lr=0.32", "2"), ("lr=0.64", "3"),
                   ("lr=1.28", "4")]
    assert (row["best_grid_point"], row["edge"], row["reached"]) == ("lr=0.64", "", True)
    # each step ran because the best point of the grid so far was its largest value
    for step in range(1, 5):
        earlier = [r for r in sweep if int(r["grid_step"]) < step]
        results = [{"reached": r["reached"] == "True", "final_metric": float(r["final_metric"]),
                    "bits_to_target": int(r["bits_to_target"]) if r["bits_to_target"] else None} for r in earlier]
        assert best_index(results, Target("suboptimality", 1e-3, "at_most")) == len(earlier) - 1
    assert (row["grid_points"], row["evaluated_runs"], row["evaluated_rounds"]) == (6, 6, 120)
    assert "| 6 (6x1) |" in (tmp_path / "tiny" / "table.md").read_text()


def test_extend_stops_at_the_cap_and_the_winner_stays_flagged(tmp_path):
    row, sweep = extending(tmp_path, cap=2)
    assert [r["grid_point"] for r in sweep] == ["lr=0.04", "lr=0.08", "lr=0.16", "lr=0.32"]
    assert (row["best_grid_point"], row["edge"], row["evaluated_runs"]) == ("lr=0.32", "optim.lr=max", 4)


@pytest.mark.parametrize("values, side, new", [
    ([0.2, 0.4], "max", 0.8), ([0.2, 0.4], "min", 0.1), ([2, 8], "max", 16), ([3, 8], "min", 2), ([2, 8], "min", 1),
    ([1, 8], "min", None), ([0.0, 0.5], "min", None), ([-1, 1], "max", None), ([1, 2.5], "min", 0.5)])
def test_the_next_grid_value_is_twice_the_largest_or_half_the_smallest_and_integer_axes_stay_integer(values, side,
                                                                                                     new):
    got = beyond(values, side)
    assert got == new and type(got) is type(new)


def test_a_grid_point_reaches_the_target_only_when_more_than_half_of_its_seeds_do():
    t = Target("test_loss", 0.1, "at_most")
    runs = [{"reached": r, "bits_to_target": b, "final_metric": f, "best_metric": f, "diverged_round": d,
             **{k: b for k in ("uplink_bits_to_target", "downlink_bits_to_target", "total_bits_to_target",
                               "seconds_to_target", "rounds_to_target", "wire_bytes_to_target")},
             "total_uplink_bits": 10, "total_downlink_bits": 20, "uplink_bits_per_coordinate": 1.0}
            for r, b, f, d in [(True, 100, 0.05, None), (False, None, 0.2, None), (False, None, math.nan, 7),
                               (True, 300, 0.01, None)]]
    s = summarize(runs, t)
    # 2 of 4 seeds reached: the median (mean of the 2nd and 3rd of 100, 300, inf, inf) is infinite
    assert (s["reached"], s["bits_to_target"], s["seeds_reached"]) == (False, None, "2/4")
    # final metric: NaN counts as the worst; median of 0.01, 0.05, 0.2, worst is (0.05 + 0.2) / 2
    assert s["final_metric"] == pytest.approx(0.125)
    assert (s["diverged_seeds"], s["diverged_round"]) == (1, 7)
    s3 = summarize(runs[:1] + runs[3:] + runs[1:2], t)
    assert (s3["reached"], s3["bits_to_target"], s3["seeds_reached"]) == (True, 300, "2/3")


def test_seconds_to_target_are_the_simulated_time_of_the_first_evaluated_round_that_meets_it(tmp_path):
    rows = write_metrics(tmp_path, [
        {"round": 0, "cum_up_payload_bits": 0, "cum_up_wire_bytes": 0, "sim_time": 0.0, "test_loss": 1.0},
        {"round": 1, "cum_up_payload_bits": 100, "cum_up_wire_bytes": 20, "sim_time": 0.25},      # not evaluated
        {"round": 2, "cum_up_payload_bits": 180, "cum_up_wire_bytes": 40, "sim_time": 0.5, "test_loss": 0.05},
    ])
    assert run_result(rows, Target("test_loss", 0.1, "at_most"), SUMMARY)["seconds_to_target"] == 0.5
    assert run_result(rows, Target("test_loss", 0.01, "at_most"), SUMMARY)["seconds_to_target"] is None
    no_clock = [{k: v for k, v in r.items() if k != "sim_time"} for r in rows]
    assert run_result(no_clock, Target("test_loss", 0.1, "at_most"), SUMMARY)["seconds_to_target"] is None


CLOCK = {"uplink_mbps": 0.01, "downlink_mbps": 0.1, "samples_per_s": 1000.0}


def clocked(tmp_path, **changes):
    """Two contenders, one grid point each, 3 seeds, under a simulated network slow enough that bits cost time."""
    data = copy.deepcopy(TINY)
    data["base"]["clock"] = CLOCK
    data.update(results_dir=str(tmp_path), seeds=3, **changes)
    for c in data["contenders"]:
        c["grid"] = {"optim.lr": [0.1]}
    return data


def test_a_comparison_with_a_clock_gives_uplink_total_bits_and_simulated_seconds_at_the_same_winning_point(tmp_path):
    run_comparison(from_dict(clocked(tmp_path)), progress=False)
    out = tmp_path / "tiny"
    table, sweep = read_csv(out / "table.csv"), read_csv(out / "sweep.csv")
    for row in table:
        runs = [r for r in sweep if r["label"] == row["label"]]
        assert len(runs) == 3 and all(r["reached"] == "True" for r in runs)
        for r in runs:  # each seed's three counts come from one metrics.csv row: the one that reaches the target
            hit = read_metrics(out / "runs" / r["run"])[int(r["rounds_to_target"])]
            assert int(r["uplink_bits_to_target"]) == hit["cum_up_payload_bits"]
            assert int(r["total_bits_to_target"]) == hit["cum_up_payload_bits"] + hit["cum_down_payload_bits"]
            assert float(r["seconds_to_target"]) == hit["sim_time"] > 0
        for k in ("uplink_bits_to_target", "total_bits_to_target", "seconds_to_target"):
            values = sorted(float(r[k]) for r in runs)
            assert float(row[k]) == values[1]  # the median of 3
            assert (float(row[f"{k}_low"]), float(row[f"{k}_high"])) == (values[0], values[2])
    fp32, fp16 = table
    # the same trajectory, half the uplink bits: fp16 is faster on a slow uplink
    assert float(fp16["seconds_to_target"]) < float(fp32["seconds_to_target"])
    text = (out / "table.md").read_text()
    assert "simulated seconds to target (median, 75% interval) |" in text
    assert "Simulated clock: every client 0.01 Mbit/s up, 0.1 Mbit/s down, 1000 training samples/s" in text


def test_resume_keeps_a_diverged_run_without_running_it_again(tmp_path):
    rows = run_comparison(tiny(tmp_path, fixed_lr=50.0), progress=False)
    folder = tmp_path / "tiny" / "runs" / "fp32-lr50"
    assert "not finite" in json.loads((folder / "diverged.json").read_text())["error"]
    stamp = (folder / "metrics.csv").stat().st_mtime_ns
    assert run_comparison(tiny(tmp_path, fixed_lr=50.0), progress=False, resume=True) == rows
    assert (folder / "metrics.csv").stat().st_mtime_ns == stamp


def test_the_summary_gives_each_group_its_best_winner_and_tpc_against_the_best_baseline_paired_by_seed(tmp_path,
                                                                                                     capsys):
    data = clocked(tmp_path)
    data["contenders"] = [
        {"label": "fp32", "scheme": "direct", "grid": {"optim.lr": [0.1]}},
        {"label": "fp16", "scheme": "direct", "codec": "fp16", "grid": {"optim.lr": [0.1]}},
        {"label": "tpc-fp32", "scheme": "tpc", "proposed": True, "params": {"p": 2, "eps": 0.0, "xi": 0.3},
         "grid": {"optim.lr": [0.1]}},
        {"label": "spherical", "scheme": "diana", "codec": "spherical", "proposed": True,
         "grid": {"optim.lr": [0.1]}},
    ]
    run_comparison(from_dict(data), progress=False)
    out = tmp_path / "tiny"
    # the same comparison counting total bits: a downlink comparison, which the summary leaves out
    other = tmp_path / "total"
    other.mkdir()
    for name in ("table.csv", "sweep.csv"):
        (other / name).write_text((out / name).read_text())
    (other / "compare.yaml").write_text((out / "compare.yaml").read_text().replace(
        "metric: suboptimality", "metric: suboptimality\n  count: total"))
    assert summary.main([str(out), str(other), str(tmp_path / "not-a-folder")]) == 0
    printed = capsys.readouterr()
    assert printed.err == f"{other}: left out, its target counts total bits\n"
    head, rule, row = printed.out.splitlines()
    assert head.startswith("| experiment | seeds | fp32 | best baseline | best TPC | best sparse_dither / spherical |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == f"[linreg d=8, heterogeneity 1, 2 agents, GD, suboptimality \u2264 0.3]({out.as_posix()}/table.md)"
    assert cells[1] == "3"
    table = {r["label"]: r for r in read_csv(out / "table.csv")}
    sweep = read_csv(out / "sweep.csv")

    def expect(label, named=True):
        r = table[label]
        return (f"{format_bits(int(r['bits_to_target']))} ({format_bits(int(r['bits_to_target_low']))} - "
                f"{format_bits(int(r['bits_to_target_high']))}), {r['seeds_reached']}" + (f", {label}" if named else ""))
    base = min(("fp32", "fp16"), key=lambda k: int(table[k]["bits_to_target"]))
    assert base == "fp16"
    assert cells[2:6] == [expect("fp32", named=False), expect(base), expect("tpc-fp32"), expect("spherical")]
    for cell, column in zip(cells[6:], ("bits_to_target", "total_bits_to_target", "seconds_to_target")):
        def by_seed(label):
            return [float(r[column]) for r in sorted((r for r in sweep if r["label"] == label), key=lambda r: r["seed"])]
        ratios = sorted(a / b for a, b in zip(by_seed("tpc-fp32"), by_seed(base)))
        assert cell == f"{ratios[1]:.3g}x ({ratios[0]:.3g}x - {ratios[2]:.3g}x)"
    (tmp_path / "empty").mkdir()
    assert summary.main([str(tmp_path / "empty")]) == 2
    assert "empty: not a finished comparison (no compare.yaml, table.csv, sweep.csv)" in capsys.readouterr().err


def test_a_shipped_comparison_runs_as_a_smoke_version_of_one_round_one_seed_and_one_grid_point(tmp_path):
    # One file, every contender of it (PowerSGD included); the others share its code paths, and the test above
    # builds every scheme and codec of every file. A full shipped comparison is hundreds of runs: not for CI.
    path = Path(__file__).parents[2] / "configs/compare/mlp_digits_iid.yaml"
    first = {f"contenders.{i}.grid": "{" + ", ".join(f"{k}: [{v[0]}]" for k, v in c.get("grid", {}).items()) + "}"
             for i, c in enumerate(load(path).source["contenders"])}
    comparison = load(path, [f"results_dir={tmp_path}", "base.run.rounds=1", "seeds=1", "grid_policy=fixed",
                             *(f"{k}={v}" for k, v in first.items())])
    rows = run_comparison(comparison, progress=False)
    assert len(rows) == len(comparison.contenders) and all(r["evaluated_rounds"] == 1 for r in rows)
    assert all(r["seconds_to_target"] is None or r["seconds_to_target"] > 0 for r in rows)
