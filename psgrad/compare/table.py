"""Bits to target, the choice of each contender's best grid point, and the comparison table.

Only evaluated rounds count (no interpolation): a run's bits-to-target is
its cumulative payload bits at the first round whose evaluated metric meets
the target, counted as the target says (``count``: uplink, downlink or
their total), and its rounds-to-target is that round. The three counts to
target are all given. Round 0 (the initial model, zero bits) counts like
any other.

Best grid point: fewest bits-to-target; among grid points that never reach
the target (or tie on bits), the best final metric. The ratio column
divides a contender's bits-to-target by the fewest bits-to-target of any
baseline (a contender not marked ``proposed``).
"""
import csv
import math
import statistics

from .spec import COUNTS

COLUMNS = ("label", "scheme", "codec", "proposed", "best_grid_point", "reached", "bits_to_target",
           "uplink_bits_to_target", "downlink_bits_to_target", "total_bits_to_target", "rounds_to_target", "wire_bytes_to_target", "ratio_to_best_baseline", "final_metric", "best_metric",
           "total_uplink_bits", "total_downlink_bits", "uplink_bits_per_coordinate", "diverged_round", "seeds_reached",
           "bits_to_target_median", "bits_to_target_min", "bits_to_target_max")
SWEEP_COLUMNS = ("label", "grid_point", "run", "reached", "bits_to_target", "uplink_bits_to_target",
                 "downlink_bits_to_target", "total_bits_to_target", "rounds_to_target",
                 "wire_bytes_to_target", "final_metric", "best_metric", "total_uplink_bits", "total_downlink_bits",
                 "uplink_bits_per_coordinate", "diverged_round", "best")


def bits_at(row, count):
    """Cumulative payload bits of ``count`` (uplink, downlink or total) in a metrics.csv row."""
    up, down = int(row.get("cum_up_payload_bits", 0)), int(row.get("cum_down_payload_bits", 0))
    return {"uplink": up, "downlink": down, "total": up + down}[count]


def reach(rows, target):
    """First evaluated row of ``rows`` (metrics.csv as dicts of floats) that meets ``target``, or None."""
    for r in rows:
        if target.metric in r and target.met(r[target.metric]):
            return r
    return None


def run_result(rows, target, summary):
    """One run's numbers: bits, wire bytes and rounds to target, final and best metric, totals."""
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
        **{f"{c}_bits_to_target": bits_at(hit, c) if hit else None for c in COUNTS},
        "rounds_to_target": int(hit["round"]) if hit else None,
        "wire_bytes_to_target": int(hit["cum_up_wire_bytes"]) if hit else None,
        "final_metric": evaluated[-1],
        "best_metric": best,
        "total_uplink_bits": int(summary["uplink_payload_bits"]),
        "total_downlink_bits": int(summary["downlink_payload_bits"]),
        "uplink_bits_per_coordinate": float(summary["bits_per_coordinate"]),
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


def table_rows(comparison, results, repeats):
    """One row per contender from ``results[run_name]`` and ``repeats[label]`` (results of extra seeds)."""
    target = comparison.target
    rows = []
    for c in comparison.contenders:
        res = [results[p.run_name] for p in c.points]
        i = best_index(res, target)
        r = res[i]
        seeds = [r, *repeats.get(c.label, [])]
        bits = [s["bits_to_target"] for s in seeds if s["reached"]]
        rows.append({
            "label": c.label, "scheme": c.scheme, "codec": c.codec, "proposed": c.proposed,
            "best_grid_point": c.points[i].describe(), **r,
            "ratio_to_best_baseline": None,
            "seeds_reached": f"{len(bits)}/{len(seeds)}",
            "bits_to_target_median": statistics.median(bits) if bits else None,
            "bits_to_target_min": min(bits) if bits else None,
            "bits_to_target_max": max(bits) if bits else None,
        })
    base = [r["bits_to_target"] for r in rows if not r["proposed"] and r["reached"]]
    if base:
        for r in rows:
            if r["reached"]:
                # A baseline that reaches the target with 0 bits (round 0) makes every ratio meaningless.
                r["ratio_to_best_baseline"] = r["bits_to_target"] / min(base) if min(base) else math.inf
    return rows


def sweep_rows(comparison, results):
    """Every (contender, grid point) run, with the winner of each contender marked."""
    out = []
    for c in comparison.contenders:
        res = [results[p.run_name] for p in c.points]
        win = best_index(res, comparison.target)
        for i, (p, r) in enumerate(zip(c.points, res)):
            out.append({"label": c.label, "grid_point": p.describe(), "run": p.run_name, **r, "best": i == win})
    return out


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in columns})


def markdown(comparison, rows, meta):
    """table.md: the setting, the rule, and one line per contender (winners of the tuning grid)."""
    t = comparison.target
    lines = [
        f"# {comparison.name}: {t.count} bits to reach {t}",
        "",
        meta,
        "",
        f"| contender | best grid point | {t.count} bits to target | rounds | vs best baseline | "
        f"final {t.metric} | uplink to target | downlink to target | total to target | uplink bits/coord |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=_order):
        name = f"**{r['label']}**" if r["proposed"] else r["label"]
        if r["reached"]:
            bits, rounds = _bits(r["bits_to_target"]), str(r["rounds_to_target"])
            ratio = "" if r["ratio_to_best_baseline"] is None else f"{r['ratio_to_best_baseline']:.3g}x"
        else:
            bits, rounds, ratio = f"not reached (best {r['best_metric']:.4g})", "", ""
        if r["diverged_round"] is not None:
            bits += f" (diverged in round {r['diverged_round']})"
        if comparison.repeats > 1 and r["bits_to_target_median"] is not None:
            bits += (f" [{r['seeds_reached']} seeds: {_bits(r['bits_to_target_min'])}"
                     f"-{_bits(r['bits_to_target_max'])}]")
        elif comparison.repeats > 1:
            bits += f" [{r['seeds_reached']} seeds]"
        counts = " | ".join(_bits(r[f"{c}_bits_to_target"]) if r["reached"] else "" for c in COUNTS)
        lines.append(f"| {name} | {r['best_grid_point']} | {bits} | {rounds} | {ratio} | {r['final_metric']:.4g} | "
                     f"{counts} | {r['uplink_bits_per_coordinate']:.3g} |")
    return "\n".join(lines) + "\n"


def _order(r):
    """Reached first, by bits; then the rest by label."""
    return (not r["reached"], r["bits_to_target"] if r["reached"] else 0, r["label"])


def _bits(n):
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
