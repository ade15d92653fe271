import csv

from psgrad.bench import main


def test_quick_codec_benchmark_writes_its_table_csvs_and_figure(tmp_path):
    assert main(["codecs", "--quick", "--out", str(tmp_path)]) == 0
    for f in ("codecs.md", "codecs_rate_error.csv", "codecs_speed.csv", "codecs_rate_error.png"):
        assert (tmp_path / f).stat().st_size > 0
    with open(tmp_path / "codecs_rate_error.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"codec", "params", "input", "d", "unbiased", "rate", "error", "bound", "ratio"}
    assert {r["input"] for r in rows} == {"gaussian", "onehot", "student_t", "flat", "sphere", "real"}
    with open(tmp_path / "codecs_speed.csv") as f:
        speed = list(csv.DictReader(f))
    assert set(speed[0]) == {"codec", "d", "memcpy_s", "encode_s", "decode_s", "encode_ratio", "decode_ratio",
                             "target"}
    import psgrad
    assert {r["codec"] for r in rows} == set(psgrad.codecs()) == {r["codec"] for r in speed}
