"""Bits to target over seeds, the choice of each contender's best grid point, and the comparison table.

Only evaluated rounds count (no interpolation): a run's bits-to-target is
its cumulative payload bits at the first round whose evaluated metric meets
the target, counted as the target says (``count``: uplink, downlink or
their total; or ``time``, the simulated seconds of a run with a clock), and
its rounds-to-target is that round. Every count to target is given at the
winning point, with its interval: uplink, downlink and total bits, and the
simulated seconds when the runs have a clock (metrics.csv's ``sim_time``;
see the ``clock`` section of a run config). Round 0 (the initial model, zero
bits) counts like any other.

Seeds: every grid point runs on ``seeds`` seeds. Its numbers are medians
over them (``summarize``), a seed that misses the target counting as
infinitely many bits, so the median reaches the target only when more than
half of the seeds do. The interval around each median count is the
distribution-free order-statistics interval (``median_interval``).

Best grid point: fewest median bits-to-target; among grid points whose
median does not reach the target (or tie on bits), the best median final
metric; on a complete tie the first in grid order. The ratio column divides
a contender's median bits-to-target by the fewest of any baseline (a
contender not marked ``proposed``).
"""
import csv
import math
import statistics

from .spec import COUNTS, edges

# A contender's tuning cost, summed over every run it was evaluated on: name -> that run's share.
COSTS = {
    "evaluated_runs": lambda r: 1,
    "evaluated_rounds": lambda r: r["rounds_run"],
}
# The counts to target that get an interval: every count of COUNTS (simulated seconds only with a clock).
COUNTED = tuple(c.column for c in COUNTS.values())
TO_TARGET = ("bits_to_target", *COUNTED, "rounds_to_target", "wire_bytes_to_target")
INTERVALS = tuple(f"{k}_{end}" for k in ("bits_to_target", *COUNTED) for end in ("low", "high"))
TOTALS = ("total_uplink_bits", "total_downlink_bits", "uplink_bits_per_coordinate")
COLUMNS = ("label", "scheme", "codec", "proposed", "best_grid_point", "edge", "grid_points", "seeds",
           *COSTS, "reached", "seeds_reached", "bits_to_target", "bits_to_target_low", "bits_to_target_high",
           "interval_coverage", *TO_TARGET[1:], *INTERVALS[2:], "ratio_to_best_baseline", "final_metric",
           "best_metric",
           *TOTALS, "diverged_seeds", "diverged_round")
SWEEP_COLUMNS = ("label", "grid_point", "grid_step", "seed", "run", "reached", *TO_TARGET, "final_metric",
                 "best_metric", *TOTALS, "rounds_run", "diverged_round", "best")


def bits_at(row, count):
    """What ``count`` (a key of ``COUNTS``) has summed up to a metrics.csv row: cumulative payload bits (an int),
    or simulated seconds (None for a run without a clock)."""
    if count == "time":
        return row.get("sim_time")
    return int(sum(row.get(column, 0) for column in COUNTS[count].columns))


def reach(rows, target):
    """First evaluated row of ``rows`` (metrics.csv as dicts of floats) that meets ``target``, or None."""
    for r in rows:
        if target.metric in r and target.met(r[target.metric]):
            return r
    return None


def run_result(rows, target, summary):
    """One run's numbers: bits, wire bytes, simulated seconds and rounds to target, final and best metric, totals.

    ``seconds_to_target`` is None when the run has no clock (no ``sim_time`` column).
    """
    evaluated = [r[target.metric] for r in rows if target.metric in r]
    if not evaluated:
        raise ValueError(f"no evaluated round has metric {target.metric!r}")
    hit = reach(rows, target)
    best = evaluated[0]
    for v in evaluated[1:]:
        if target.better(v, best):
            best = v
    return {
        "reached": hit is not None,
        "bits_to_target": bits_at(hit, target.count) if hit else None,
        **{c.column: bits_at(hit, name) if hit else None for name, c in COUNTS.items()},
        "rounds_to_target": int(hit["round"]) if hit else None,
        "wire_bytes_to_target": int(hit["cum_up_wire_bytes"]) if hit else None,
        "final_metric": evaluated[-1],
        "best_metric": best,
        "total_uplink_bits": int(summary["uplink_payload_bits"]),
        "total_downlink_bits": int(summary["downlink_payload_bits"]),
        "uplink_bits_per_coordinate": float(summary["bits_per_coordinate"]),
        "rounds_run": int(rows[-1]["round"]) if rows else 0,
        "diverged_round": None,
    }


def diverged_result(rows, target):
    """A run stopped by a non-finite gradient: what it reached before, and a NaN final metric.

    Its folder holds metrics.csv up to the last complete round but no summary.
    """
    last = rows[-1] if rows else {}
    up = int(last.get("cum_up_payload_bits", 0))
    fake = {"uplink_payload_bits": up, "downlink_payload_bits": int(last.get("cum_down_payload_bits", 0)),
            "bits_per_coordinate": math.nan}
    return {**run_result(rows, target, fake), "final_metric": math.nan,
            "diverged_round": int(last.get("round", 0)) + 1}


def better_run(a, b, target):
    """Whether run result ``a`` beats ``b``: fewer bits to target, else (tie or neither reached) better final."""
    if a["reached"] != b["reached"]:
        return a["reached"]
    if a["reached"] and a["bits_to_target"] != b["bits_to_target"]:
        return a["bits_to_target"] < b["bits_to_target"]
    return target.better(a["final_metric"], b["final_metric"])


def best_index(results, target):
    """Index of the winning grid point (the first one on a complete tie)."""
    best = 0
    for i in range(1, len(results)):
        if better_run(results[i], results[best], target):
            best = i
    return best


def summarize(runs, target):
    """One grid point's numbers over its seeds' results ``runs``: the median of each.

    To-target columns count a seed that missed as infinite (None if the median is, or if a seed that reached
    the target lacks the count: seconds without a clock); final and best metric
    count NaN (diverged) as the worst value; totals take the median of the finite values. ``reached``: the
    median bits reach the target, i.e. more than half of the seeds do.
    """
    worst = math.inf if target.direction == "at_most" else -math.inf
    out = {}
    for k in TO_TARGET:
        values = to_target(runs, k)
        out[k] = None if None in values else _finite(statistics.median(values))
    for k in ("final_metric", "best_metric"):
        m = statistics.median([worst if math.isnan(r[k]) else r[k] for r in runs])
        out[k] = m if math.isfinite(m) else math.nan
    for k in TOTALS:
        finite = [r[k] for r in runs if math.isfinite(r[k])]
        out[k] = statistics.median(finite) if finite else math.nan
    diverged = [r["diverged_round"] for r in runs if r["diverged_round"] is not None]
    reached = sum(r["reached"] for r in runs)
    return {**out, "reached": out["bits_to_target"] is not None, "seeds_reached": f"{reached}/{len(runs)}",
            "diverged_seeds": len(diverged), "diverged_round": min(diverged) if diverged else None}


def median_interval(values, level=0.95):
    """``(low, high, coverage)``: a distribution-free interval for the median of the population ``values`` sample.

    With the n values sorted, x(1) <= ... <= x(n), the interval [x(k), x(n+1-k)] holds the population median
    with probability at least 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2) (exactly, for a continuous distribution;
    the sign-test interval). ``k`` is the largest with coverage >= ``level``; when even k = 1, [min, max], falls
    short (n <= 5) it is [min, max] with its smaller coverage: 5 values give 93.75%, 4 give 87.5%.
    """
    n, xs = len(values), sorted(values)

    def coverage(k):
        return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


def to_target(runs, k):
    """Column ``k`` of each seed's result, infinite where the seed missed the target."""
    return [r[k] if r["reached"] else math.inf for r in runs]


def point_results(comparison, point, results):
    """The results of every seed of one grid point, in seed order."""
    return [results[r.run_name] for r in comparison.seeded(point)]


def winner(comparison, contender, results):
    """The contender's best grid point and its summary over seeds."""
    summaries = [summarize(point_results(comparison, p, results), comparison.target) for p in contender.points]
    i = best_index(summaries, comparison.target)
    return contender.points[i], summaries[i]


def table_rows(comparison, results):
    """One row per contender: its best grid point's medians over seeds, intervals, edges and tuning cost."""
    rows = []
    for c in comparison.contenders:
        point, summary = winner(comparison, c, results)
        seeds = point_results(comparison, point, results)
        intervals = {}
        for k in ("bits_to_target", *COUNTED):
            values = to_target(seeds, k)
            low, high, cover = (None, None, None) if None in values else median_interval(values)
            intervals.update({f"{k}_low": _finite(low), f"{k}_high": _finite(high)})
            if k == "bits_to_target":
                intervals["interval_coverage"] = cover
        every = [r for p in c.points for r in point_results(comparison, p, results)]
        rows.append({
            "label": c.label, "scheme": c.scheme, "codec": c.codec, "proposed": c.proposed,
            "best_grid_point": point.describe(), "best_run": point.run_name,
            "edge": "; ".join(f"{path}={side}" for path, side in edges(c, point)),
            "grid_points": len(c.points), "seeds": comparison.seeds,
            **{name: sum(share(r) for r in every) for name, share in COSTS.items()},
            **summary, **intervals, "ratio_to_best_baseline": None,
        })
    base = [r["bits_to_target"] for r in rows if not r["proposed"] and r["reached"]]
    if base:
        for r in rows:
            if r["reached"]:
                # A baseline that reaches the target with 0 bits (round 0) makes every ratio meaningless.
                r["ratio_to_best_baseline"] = r["bits_to_target"] / min(base) if min(base) else math.inf
    return rows


def sweep_rows(comparison, results):
    """Every run (contender, grid point, seed), with the extension step that added its point and the winner marked."""
    out = []
    for c in comparison.contenders:
        best, _ = winner(comparison, c, results)
        for p in c.points:
            for run in comparison.seeded(p):
                out.append({"label": c.label, "grid_point": p.describe(), "grid_step": c.step[p.run_name],
                            "seed": run.cfg.run.seed, "run": run.run_name, **results[run.run_name],
                            "best": p is best})
    return out


def _finite(v):
    return v if v is not None and math.isfinite(v) else None


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in columns})


def markdown(comparison, rows, meta):
    """table.md: the setting, the rule, and one line per contender (winners of the tuning grid).

    Three counts to target at the same (winning) point: the bits the target counts, with its interval in a
    column of its own; the other of uplink and total bits; and simulated seconds when the runs have a clock,
    these two with their intervals in brackets. Intervals and seeds reached appear only with more than one seed.
    """
    t, many = comparison.target, comparison.seeds > 1
    clock = any(p.cfg.clock.enabled for p in comparison.points)
    cover = f"{100 * rows[0]['interval_coverage']:.6g}%" if rows else ""
    others = [c for c in ("uplink", "total") if c != t.count] + (["time"] if clock and t.count != "time" else [])
    bracket = f" (median, {cover} interval)" if many else ""
    columns = [
        ("contender", "---", lambda r: f"**{r['label']}**" if r["proposed"] else r["label"]),
        ("best grid point", "---", lambda r: r["best_grid_point"]),
        ("on grid edge", "---", lambda r: r["edge"].replace("; ", ", ")),
        ("runs (points x seeds)", "---:", lambda r: f"{r['evaluated_runs']} ({r['grid_points']}x{r['seeds']})"),
        (f"{COUNTS[t.count].label} to target" + (f", median of {comparison.seeds} seeds" if many else ""), "---:",
         lambda r: _target_cell(r, t.count)),
        *([(f"{cover} interval", "---:", lambda r: _interval_cell(r, t.count)),
           ("seeds reached", "---:", lambda r: r["seeds_reached"])] if many else []),
        *[(f"{COUNTS[c].label} to target" + bracket, "---:", lambda r, c=c: _with_interval(r, c, many))
          for c in others],
        ("rounds", "---:", lambda r: _number(r["rounds_to_target"])),
        ("vs best baseline", "---:",
         lambda r: "" if r["ratio_to_best_baseline"] is None else f"{r['ratio_to_best_baseline']:.3g}x"),
        (f"final {t.metric}", "---:", lambda r: f"{r['final_metric']:.4g}"),
        ("uplink bits/coord", "---:", lambda r: f"{r['uplink_bits_per_coordinate']:.3g}"),
    ]
    lines = [f"# {comparison.name}: {COUNTS[t.count].label} to reach {t}", "", meta, "",
             "| " + " | ".join(h for h, _, _ in columns) + " |",
             "|" + "|".join(a for _, a, _ in columns) + "|"]
    for r in sorted(rows, key=_order):
        lines.append("| " + " | ".join(cell(r) for _, _, cell in columns) + " |")
    return "\n".join(lines) + "\n"


def _target_cell(r, count):
    cell = _amount(r["bits_to_target"], count) if r["reached"] else f"not reached (best {r['best_metric']:.4g})"
    if r["diverged_round"] is not None:
        seeds = f"{r['diverged_seeds']} of {r['seeds']} seeds diverged, first" if r["seeds"] > 1 else "diverged"
        cell += f" ({seeds} in round {r['diverged_round']})"
    return cell


def _interval_cell(r, count):
    low, high = r["bits_to_target_low"], r["bits_to_target_high"]
    if low is None:
        return ""
    return f"{_amount(low, count)} - {_amount(high, count) if high is not None else 'not reached'}"


def _with_interval(r, count, many):
    """``median (low - high)`` of ``count``, empty where the median missed the target or the count is absent."""
    k = COUNTS[count].column
    if r[k] is None:
        return ""
    if not many:
        return _amount(r[k], count)
    high = r[f"{k}_high"]
    return f"{_amount(r[k], count)} ({_amount(r[f'{k}_low'], count)} - " \
           f"{_amount(high, count) if high is not None else 'not reached'})"


def _number(v):
    return "" if v is None else f"{v:g}"


def _order(r):
    """Reached first, by bits; then the rest by label."""
    return (not r["reached"], r["bits_to_target"] if r["reached"] else 0, r["label"])


def _amount(v, count):
    """A to-target amount of ``count`` for the table: bits with a unit prefix, or simulated seconds."""
    if count != "time":
        return format_bits(v)
    return "" if v is None else f"{v:.3g} s"


def format_bits(n):
    if n is None:
        return ""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v
