import csv

from psgrad.bench import main


def test_quick_codec_benchmark_writes_its_table_csvs_and_figure(tmp_path):
    assert main(["codecs", "--quick", "--out", str(tmp_path)]) == 0
    for f in ("codecs.md", "codecs_rate_error.csv", "codecs_speed.csv", "codecs_rate_error.png",
              "codecs_dominance.csv"):
        assert (tmp_path / f).stat().st_size > 0
    with open(tmp_path / "codecs_rate_error.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"codec", "params", "input", "d", "unbiased", "rate", "error", "bound", "ratio",
                            "scaled_error"}
    assert {r["input"] for r in rows} == {"gaussian", "onehot", "student_t", "flat", "sphere", "real"}
    with open(tmp_path / "codecs_speed.csv") as f:
        speed = list(csv.DictReader(f))
    assert set(speed[0]) == {"codec", "d", "memcpy_s", "encode_s", "decode_s", "encode_ratio", "decode_ratio",
                             "target"}
    import psgrad
    assert {r["codec"] for r in rows} == set(psgrad.codecs()) == {r["codec"] for r in speed}
    with open(tmp_path / "codecs_dominance.csv") as f:
        dom = list(csv.DictReader(f))
    assert {r["input"] for r in dom} == {r["input"] for r in rows}
    assert {r["met"] for r in dom} <= {"yes", "no"}
    assert "Do the operators dominate?" in (tmp_path / "codecs.md").read_text()


def test_operator_error_at_a_rate_is_the_best_point_below_or_the_time_sharing_line_to_the_next():
    from psgrad.bench.codecs import error_at, operator_curve
    front = operator_curve([(0.1, 10.0, "a"), (0.2, 12.0, "worse"), (0.5, 2.0, "b"), (1.0, 0.5, "c")])
    assert [p[2] for p in front] == ["a", "b", "c"]
    assert error_at(front, 0.05) == (None, "no operator point at or below this rate")
    err, how = error_at(front, 0.2)  # a quarter of the way from a to b
    assert abs(err - 8.0) < 1e-12 and "shared" in how
    assert error_at(front, 2.0)[0] == 0.5
