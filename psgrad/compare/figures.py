"""bits.png and rounds.png: the target metric of each contender's best grid point, with the target line.

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
import json
from pathlib import Path

import matplotlib
import yaml
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..plot import (LOG_METRICS, X_AXES, describe_task, finish, format_x, format_y, legend_label, metric_label,
                    save, split_common, title_of)
from ..runtime.results import read_metrics
from .spec import from_dict

STYLES = ("-", "--", "-.", ":")
SIGNS = {"at_most": "\u2264", "at_least": "\u2265"}


def figure(comparison, curves, x):
    """The Figure: ``curves`` = [(label, proposed, rows)], the target metric against ``x`` ('bits': the bits the
    target counts, or 'rounds')."""
    t = comparison.target
    axis = {"uplink": "bits", "downlink": "downlink", "total": "total"}[t.count] if x == "bits" else "rounds"
    column = X_AXES[axis][0]
    fields = [{"scheme": f"scheme {c.scheme}", "codec": f"codec {c.codec}"} for c in comparison.contenders]
    common, differing = split_common(fields)
    by_label = dict(zip((c.label for c in comparison.contenders), differing))
    fig = Figure(figsize=(8.0, 5.6), layout="constrained")
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab20"].colors
    plotted = []
    for i, (label, proposed, rows) in enumerate(curves):
        ev = [r for r in rows if t.metric in r]
        plotted += [r[column] for r in ev]
        name = legend_label(label, by_label.get(label, {}))
        # Proposed schemes solid and thick, baselines in varied dashes, so a printed grey copy still reads.
        ax.plot([r[column] for r in ev], [r[t.metric] for r in ev], color=colors[i % len(colors)],
                linestyle="-" if proposed else STYLES[1 + i % 3], linewidth=2.2 if proposed else 1.3,
                label=f"{name}, proposed" if proposed else name)
    ax.axhline(t.threshold, color="black", linewidth=0.8, linestyle=":",
               label=f"target: {metric_label(t.metric)} {SIGNS[t.direction]} {t.threshold:g}")
    format_x(ax, axis, plotted)
    format_y(ax, t.metric, t.metric in LOG_METRICS)
    if t.metric.endswith("accuracy"):
        lo = min([t.threshold] + [r[t.metric] for _, _, rows in curves for r in rows[-1:] if t.metric in r])
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    setting = title_of({**setting_of(comparison), **common})
    finish(fig, f"{setting}\nbest grid point of each contender", legend_columns=3)
    return fig


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

    The winners are the grid points table.csv names as each contender's best; their metrics come
    from ``folder/runs/<run>/metrics.csv``.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if not (folder / "compare.yaml").is_file() or not (folder / "table.csv").is_file():
        raise ConfigError(f"{folder} is not a finished comparison (it needs compare.yaml and table.csv)")
    data = yaml.safe_load((folder / "compare.yaml").read_text())
    data.update(name=folder.name, results_dir=str(folder.parent))
    comparison = from_dict(data)
    with open(folder / "table.csv") as f:
        best = {r["label"]: r["best_grid_point"] for r in csv.DictReader(f)}
    curves = []
    for c in comparison.contenders:
        point = next((p for p in c.points if p.describe() == best.get(c.label)), None)
        if point is None:
            raise ConfigError(f"{folder}/table.csv names no grid point of contender {c.label!r} that compare.yaml has")
        curves.append((c.label, c.proposed, read_metrics(folder / "runs" / point.run_name)))
    return [plot(comparison, curves, out_dir / f"{x}.png", x) for x in ("bits", "rounds")]
