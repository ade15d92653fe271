"""``python -m psgrad.compare.summary FOLDER...``: one Markdown row per finished comparison, TPC against the rest.

    python -m psgrad.compare.summary results/reference/*     # the README's summary table

Each FOLDER is a comparison's output (``table.csv``, ``sweep.csv``,
``compare.yaml``). A row gives, for fp32, the best baseline, the best TPC
contender and the best sparse_dither or spherical contender (not under
TPC), each at its winning grid point: the median uplink bits to target over
the seeds, its order-statistics interval (``table.median_interval``), how
many seeds reached the target, and the grid edge it sits on, if any. "Best"
is the fewest median bits (the table's own order).

The last three columns compare the best TPC contender with the best
baseline, the same two winning points counted three ways: uplink bits,
total (uplink + downlink) bits, and simulated seconds (when the runs have a
clock). Each is the median over seeds of the per-seed ratio, the two
contenders paired by seed (both ran on the same seeds), with its interval.
A seed the TPC contender misses counts as an infinite ratio, one only the
baseline misses as zero, and equal counts (both at round 0) as one.

A comparison whose target counts something other than uplink bits (the
downlink comparisons count total bits) is left out, with a line on stderr.
A folder written before seeds existed (no interval columns) still gives its
row, without intervals.
"""
import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

from .. import config as config_mod
from ..errors import ConfigError
from ..tasks.linreg import SYNTHETIC
from .figures import SIGNS
from .spec import DIRECTIONS
from .table import format_bits, median_interval

# The contenders a row names: column header -> which rows of table.csv compete for it.
GROUPS = {
    "fp32": lambda r: r["label"] == "fp32",
    "best baseline": lambda r: r["proposed"] != "True",
    "best TPC": lambda r: r["scheme"] == "tpc",
    "best sparse_dither / spherical": lambda r: r["scheme"] != "tpc" and r["codec"] in ("sparse_dither", "spherical"),
}
# The counts the ratio columns compare: header -> sweep.csv column.
RATIOS = {"uplink": "bits_to_target", "total bits": "total_bits_to_target", "simulated s": "seconds_to_target"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load(folder):
    """``(source, table rows, sweep rows)`` of one comparison folder; ConfigError naming what is missing."""
    folder = Path(folder)
    missing = [n for n in ("compare.yaml", "table.csv", "sweep.csv") if not (folder / n).is_file()]
    if missing:
        raise ConfigError(f"{folder}: not a finished comparison (no {', '.join(missing)})")
    source = config_mod.read_yaml(folder / "compare.yaml", "comparison file")
    return source, read_csv(folder / "table.csv"), read_csv(folder / "sweep.csv")


def best(rows, group):
    """The row of ``group`` with the fewest median bits to target (reached first), or None."""
    members = [r for r in rows if GROUPS[group](r)]
    reached = [r for r in members if r["reached"] == "True"]
    if reached:
        return min(reached, key=lambda r: int(r["bits_to_target"]))
    return members[0] if members else None


def cell(row, named=True):
    """``median (low - high), k/S seeds, label, edge``: one contender's winning point."""
    if row is None:
        return "-"
    seeds = row.get("seeds_reached", "")
    if row["reached"] != "True":
        text = f"not reached ({seeds}; best {float(row['best_metric']):.4g})"
    else:
        text = format_bits(int(row["bits_to_target"]))
        low, high = row.get("bits_to_target_low", ""), row.get("bits_to_target_high", "")
        if low and seeds != "1/1":
            text += f" ({format_bits(int(low))} - {format_bits(int(high)) if high else 'not reached'})"
        text += f", {seeds}"
    if named:
        text += f", {row['label']}"
    if row.get("edge"):
        text += f", edge {row['edge'].replace('; ', ', ')}"
    return text


def paired_ratio(sweep, a, b, column):
    """``(median, low, high, seeds)`` over seeds of ``a``'s ``column`` / ``b``'s at their winning points, paired by
    seed; None when the runs lack the count (seconds without a clock) or their seeds do not pair."""
    def per_seed(label):
        return {r.get("seed", "0"): r for r in sweep if r["label"] == label and r["best"] == "True"}
    top, bottom = per_seed(a["label"]), per_seed(b["label"])
    if not top or top.keys() != bottom.keys():
        return None
    ratios = []
    for seed in sorted(top, key=int):
        x, y = _count(top[seed], column), _count(bottom[seed], column)
        if x is None or y is None:
            return None
        ratios.append(math.inf if math.isinf(x) else 1.0 if x == y else math.inf if y == 0 else x / y)
    low, high, _ = median_interval(ratios)
    return statistics.median(ratios), low, high, len(ratios)


def _count(run, column):
    """A sweep.csv run's count to target: infinite if it missed the target, None if the run lacks the count."""
    if run["reached"] != "True":
        return math.inf
    return float(run[column]) if run.get(column) else None


def ratio_cell(sweep, tpc, baseline, column):
    if tpc is None or baseline is None:
        return "-"
    got = paired_ratio(sweep, tpc, baseline, column)
    if got is None:
        return "-"
    mid, low, high, n = got

    def fmt(v):
        return "inf" if math.isinf(v) else f"{v:.3g}x"
    return fmt(mid) + (f" ({fmt(low)} - {fmt(high)})" if n > 1 else "")


def title(source):
    """``logreg breast_cancer, Dirichlet(0.5), 64 agents, GD, train_loss <= 0.055``, from the comparison's base
    (synthetic linreg: its heterogeneity, since each agent draws its own data and no partition applies; charlm:
    a client per speaking role; a sampled cohort and local steps where the base has them)."""
    cfg = config_mod.from_dict(source.get("base") or {})
    t, r = cfg.task, cfg.run
    data = f"d={t.dim}" if t.name == "linreg" else t.dataset
    split = {"iid": "iid", "dirichlet": f"Dirichlet({t.alpha:g})", "classes": f"{t.classes_per_agent} classes"}
    synthetic = t.name == "linreg" and t.dataset in SYNTHETIC
    split = (f"heterogeneity {t.heterogeneity:g}" if synthetic else "a client per role" if t.name == "charlm"
             else split[t.partition])
    agents = r.clients or (r.workers or 8) * r.agents_per_worker
    cohort = f" ({r.clients_per_round} a round)" if r.clients_per_round else ""
    steps = f", {t.local_steps} local steps" if t.local_steps else ""
    target = source["target"]
    direction = next(k for k in DIRECTIONS if k in target)
    return (f"{t.name} {data}, {split}, {agents} agents{cohort}, "
            f"{'GD' if t.batch_size == 0 else f'SGD (batch {t.batch_size}{steps})'}, "
            f"{target['metric']} {SIGNS[direction]} {target[direction]:g}")


def summary(folders, note=None):
    """The Markdown table (header and one row per comparison counting uplink bits), as a string."""
    heads = ["experiment", "seeds", *GROUPS, *(f"TPC vs best baseline, {k}" for k in RATIOS)]
    lines = ["| " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * (len(heads) - 2)]
    for folder in folders:
        source, rows, sweep = load(folder)
        count = source["target"].get("count", "uplink")
        if count != "uplink":
            if note is not None:
                note(f"{folder}: left out, its target counts {count} bits")
            continue
        picked = {g: best(rows, g) for g in GROUPS}
        tpc, baseline = picked["best TPC"], picked["best baseline"]
        seeds = rows[0].get("seeds") or rows[0].get("seeds_reached", "1/1").split("/")[1]
        lines.append("| " + " | ".join([
            f"[{title(source)}]({Path(folder).as_posix()}/table.md)", seeds,
            *(cell(picked[g], named=g != "fp32") for g in GROUPS),
            *(ratio_cell(sweep, tpc, baseline, column) for column in RATIOS.values())]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m psgrad.compare.summary", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="finished comparison folders, e.g. results/reference/*")
    args = p.parse_args(argv)
    folders = [f for f in args.folders if Path(f).is_dir()]
    try:
        text = summary(folders, note=lambda line: print(line, file=sys.stderr))
    except ConfigError as e:
        print(f"psgrad.compare.summary: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
