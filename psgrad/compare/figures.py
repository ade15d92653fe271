"""bits.png and rounds.png: the target metric of each contender's best grid point, with the target line.

With several seeds each contender is drawn as its median curve with a band:
at every evaluated round, the median over seeds of the metric against the
median of the x value (cumulative bits, or the round), and the band from the
smallest to the largest metric over seeds at that round. A seed that
diverged leaves the rounds after it to the seeds that reached them.

The axes, title and legend follow ``psgrad.plot``: bits with decimal
prefixes on a symlog axis that shows round 0, the metric in words, the task
and number of agents in the title (with the scheme or codec when every
contender shares it), and each contender's scheme and codec in the legend
where its label does not already name them.

A finished comparison folder (compare.yaml, table.csv and the winners' run
folders under runs/) can be drawn again without running anything::

    python -c "from psgrad.compare.figures import redraw; redraw('results/reference/linreg', '/tmp/linreg')"
"""
import csv
import statistics
import json
from pathlib import Path

import matplotlib
import yaml
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..plot import (LOG_METRICS, X_AXES, describe_task, finish, format_x, format_y, legend_label, metric_label,
                    save, split_common, title_of)
from ..runtime.results import read_metrics
from .spec import COUNTS, from_dict

STYLES = ("-", "--", "-.", ":")
SIGNS = {"at_most": "\u2264", "at_least": "\u2265"}


def figure(comparison, curves, x):
    """The Figure: ``curves`` = [(label, proposed, [rows of each seed])], the target metric against ``x``
    ('bits': what the target counts, bits or simulated seconds; or 'rounds')."""
    t = comparison.target
    axis = COUNTS[t.count].axis if x == "bits" else "rounds"
    column = X_AXES[axis][0]
    fields = [{"scheme": f"scheme {c.scheme}", "codec": f"codec {c.codec}"} for c in comparison.contenders]
    common, differing = split_common(fields)
    by_label = dict(zip((c.label for c in comparison.contenders), differing))
    fig = Figure(figsize=(8.0, 5.6), layout="constrained")
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab20"].colors
    plotted = []
    for i, (label, proposed, runs) in enumerate(curves):
        xs, mid, low, high = median_curve(runs, t.metric, column)
        plotted += xs
        name = legend_label(label, by_label.get(label, {}))
        color = colors[i % len(colors)]
        # Proposed schemes solid and thick, baselines in varied dashes, so a printed grey copy still reads.
        ax.plot(xs, mid, color=color, linestyle="-" if proposed else STYLES[1 + i % 3],
                linewidth=2.2 if proposed else 1.3, label=f"{name}, proposed" if proposed else name)
        if len(runs) > 1:
            ax.fill_between(xs, low, high, color=color, alpha=0.18, linewidth=0)
    ax.axhline(t.threshold, color="black", linewidth=0.8, linestyle=":",
               label=f"target: {metric_label(t.metric)} {SIGNS[t.direction]} {t.threshold:g}")
    format_x(ax, axis, plotted)
    format_y(ax, t.metric, t.metric in LOG_METRICS)
    if t.metric.endswith("accuracy"):
        lo = min([t.threshold] + [r[t.metric] for _, _, runs in curves for rows in runs for r in rows[-1:]
                                  if t.metric in r])
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    setting = title_of({**setting_of(comparison), **common})
    seeds = len(curves[0][2]) if curves else 1
    how = f", median and range over {seeds} seeds" if seeds > 1 else ""
    finish(fig, f"{setting}\nbest grid point of each contender{how}", legend_columns=3)
    return fig


def median_curve(runs, metric, column):
    """``(x, median, low, high)`` per evaluated round over the seeds' metrics rows ``runs`` (see the module doc)."""
    by_round = {}
    for rows in runs:
        for r in rows:
            if metric in r:
                by_round.setdefault(r["round"], []).append((r[column], r[metric]))
    rounds = sorted(by_round)
    xs = [statistics.median(x for x, _ in by_round[k]) for k in rounds]
    values = [[v for _, v in by_round[k]] for k in rounds]
    return xs, [statistics.median(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def plot(comparison, curves, out, x):
    """Write ``figure(comparison, curves, x)`` to ``out`` and return ``out``."""
    return save(figure(comparison, curves, x), out)


def setting_of(comparison):
    """The task and, from the first finished run's summary.json, the number of agents, as title fields."""
    cfg = comparison.points[0].cfg
    fields = {"task": describe_task({"name": cfg.task.name, "dataset": cfg.task.dataset, "dim": cfg.task.dim,
                                     "batch_size": cfg.task.batch_size})}
    for p in comparison.points:
        summary = Path(p.cfg.run.results_dir) / p.run_name / "summary.json"
        if summary.is_file():
            fields["agents"] = f"{json.loads(summary.read_text())['agents']} agents"
            break
    return fields


def redraw(folder, out_dir):
    """Draw bits.png and rounds.png of the finished comparison in ``folder`` into ``out_dir``; return their paths.

    The winners' runs (every seed) are the rows sweep.csv marks best; their metrics come from
    ``folder/runs/<run>/metrics.csv``. A record written before ``seeds`` existed may carry ``repeats``
    (extra seeds of the winner only, picked on the first seed); it is read as one seed per grid point.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if not (folder / "compare.yaml").is_file() or not (folder / "sweep.csv").is_file():
        raise ConfigError(f"{folder} is not a finished comparison (it needs compare.yaml and sweep.csv)")
    data = yaml.safe_load((folder / "compare.yaml").read_text())
    data.pop("repeats", None)
    data.update(name=folder.name, results_dir=str(folder.parent))
    comparison = from_dict(data)
    with open(folder / "sweep.csv") as f:
        best = [r for r in csv.DictReader(f) if r["best"] == "True"]
    curves = []
    for c in comparison.contenders:
        runs = [r["run"] for r in best if r["label"] == c.label]
        if not runs:
            raise ConfigError(f"{folder}/sweep.csv marks no best run of contender {c.label!r}")
        curves.append((c.label, c.proposed, [read_metrics(folder / "runs" / run) for run in runs]))
    return [plot(comparison, curves, out_dir / f"{x}.png", x) for x in ("bits", "rounds")]
