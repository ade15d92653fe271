"""``python -m psgrad.plot RUN [RUN ...]``: overlay runs, metrics versus bits, rounds or time.

    python -m psgrad.plot results/a results/b                     # every metric vs uplink bits and vs rounds
    python -m psgrad.plot results/a results/b --labels tpc,fp16 --metrics test_accuracy --x bits --out fig.pdf

Each run folder's metrics.csv gives, on evaluated rounds, the model's
metrics after the round; config.yaml and summary.json give the task,
scheme, codec and number of agents. What all runs share is the figure's
title; what differs between them goes into the legend, after each run's
label.

Axes for print: bit counts with decimal prefixes (``10 k``, ``1 M``; the
unit is in the axis label), metric columns by their names in words, and at
most a handful of tick labels per log axis, so none overlap.

Round 0 (the initial model, zero bits sent) is drawn on the bits axes: they
are symmetric-log (``symlog``), linear from 0 up to ``linthresh``, the
smallest non-zero bit count drawn, and logarithmic above it. Every round
that sent bits therefore lies on the log part, and round 0 sits at a
labelled 0, a short linear strip (``LINSCALE`` decades wide) to the left.

This module also holds the axis, title and legend helpers that the
comparison figures (``psgrad.compare.figures``) use.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter, Locator, MaxNLocator, NullFormatter

from .errors import ConfigError
from .runtime.results import read_metrics
from .units import si

PREFERRED = ("suboptimality", "train_loss", "test_loss", "test_accuracy")
LOG_METRICS = ("suboptimality", "train_loss", "test_loss", "agent_loss")
METRIC_LABELS = {
    "suboptimality": "suboptimality f(w) - f*",
    "train_loss": "training loss",
    "test_loss": "test loss",
    "train_accuracy": "training accuracy",
    "test_accuracy": "test accuracy",
    "agent_loss": "mean agent loss",
}
# --x choice: (metrics.csv column, axis label, whether the column counts bits).
X_AXES = {
    "bits": ("cum_up_payload_bits", "uplink payload, all agents (bits)", True),
    "rounds": ("round", "round", False),
    "time": ("time_s", "wall-clock time (s)", False),
    "downlink": ("cum_down_payload_bits", "downlink payload, all agents (bits)", True),
    "total": ("cum_total_bits", "uplink + downlink payload, all agents (bits)", True),
    "sim_time": ("sim_time", "simulated time (s)", False),
}
DEFAULT_X = ("bits", "rounds")
MAX_TICKS = 6           # labelled ticks per log axis at most
LINSCALE = 0.4          # width of the linear strip [0, linthresh] of a bits axis, in decades
TITLE_FIELDS = ("task", "agents", "scheme", "codec")


def metric_label(name):
    """A metric column in words: ``train_loss`` -> ``training loss``."""
    return METRIC_LABELS.get(name, name.replace("_", " "))


# ---- ticks ---------------------------------------------------------------------------------------------------

def log_ticks(lo, hi, max_ticks=MAX_TICKS):
    """Tick positions in ``[lo, hi]`` (``0 < lo``) for a log axis, at most ``max_ticks`` of them.

    Steps: 1. powers of ten, every ``stride``-th decade so at most ``max_ticks`` remain; 2. if fewer
    than three lie in range, 1, 2 and 5 times the powers of ten, then 1, 2, 3 and 5 times (no
    closer: 9 and 10 would collide), then evenly spaced round numbers (a range under a factor of
    about 3); the first set with three to ``max_ticks`` ticks, else the fullest.
    """
    lo, hi = lo * (1 - 1e-9), hi * (1 + 1e-9)  # a tick on an end of the range counts despite rounding
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = [k for k in range(k0, k1 + 1) if lo <= 10.0 ** k <= hi]
    if len(decades) >= 3:
        stride = math.ceil(len(decades) / max_ticks)
        return [10.0 ** k for k in decades if k % stride == 0]
    candidates = [[m * 10.0 ** k for k in range(k0, k1 + 1) for m in subs if lo <= m * 10.0 ** k <= hi]
                  for subs in ((1, 2, 5), (1, 2, 3, 5))]
    candidates.append([t for t in MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi])
    for ticks in candidates:
        if 3 <= len(ticks) <= max_ticks:
            return ticks
    return max((t for t in candidates if len(t) <= max_ticks), key=len)


class ReadableLogLocator(Locator):
    """Major ticks of a log axis, or of a symlog bits axis (then 0 as well), from ``log_ticks``."""

    def __init__(self, linthresh=None):
        self.linthresh = linthresh

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        lo, hi = sorted((vmin, vmax))
        ticks = [0.0] if self.linthresh is not None and lo <= 0 <= hi else []
        lo = max(lo, self.linthresh or 0.0)
        if hi <= lo or lo <= 0:
            return ticks
        return ticks + log_ticks(lo, hi)


class MinorLogLocator(Locator):
    """Unlabelled minor ticks (for the grid): 1 to 9 times each power of ten, above ``linthresh`` if given."""

    def __init__(self, linthresh=None):
        self.linthresh = linthresh

    def __call__(self):
        lo, hi = sorted(self.axis.get_view_interval())
        lo = max(lo, self.linthresh or 0.0)
        if hi <= lo or lo <= 0:
            return []
        k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        if k1 - k0 > 12:  # a grid line per decade is enough over this many
            return [10.0 ** k for k in range(k0, k1 + 1)]
        return [m * 10.0 ** k for k in range(k0, k1 + 1) for m in range(1, 10) if lo <= m * 10.0 ** k <= hi]


class NumberFormatter(Formatter):
    """Tick labels of a metric: ``0.25``, ``40``; if any tick lies outside [1e-3, 1e4), every tick as
    ``2x10^-6`` in mathtext (one style per axis, not ``0.001`` next to ``10^-6``)."""

    ticks = ()

    def set_locs(self, locs):
        self.ticks = tuple(locs)

    def __call__(self, value, pos=None):
        scientific = any(v and not 1e-3 <= abs(v) < 1e4 for v in self.ticks)
        if value == 0:
            return "0"
        if not scientific:
            return f"{value:.4g}"
        k = math.floor(math.log10(abs(value)) + 1e-9)
        m = round(value / 10.0 ** k, 3)
        return f"$10^{{{k}}}$" if m == 1 else f"${m:g}\\times10^{{{k}}}$"


def bit_count(value, _pos=None):
    """A tick label of a bit count, with a decimal prefix: ``0``, ``500``, ``10 k``, ``2.5 M``."""
    return "0" if value == 0 else si(value).strip()


def format_x(ax, kind, xs):
    """Scale, ticks and label of the x axis ``kind`` (a key of ``X_AXES``) for the plotted values ``xs``."""
    _, label, counts_bits = X_AXES[kind]
    ax.set_xlabel(label)
    if not counts_bits:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=kind == "rounds"))
        return
    sent = [x for x in xs if x > 0]
    linthresh = min(sent) if sent else 1.0
    ax.set_xscale("symlog", linthresh=linthresh, linscale=LINSCALE)
    ax.xaxis.set_major_locator(ReadableLogLocator(linthresh))
    ax.xaxis.set_minor_locator(MinorLogLocator(linthresh))
    ax.xaxis.set_major_formatter(FuncFormatter(bit_count))
    ax.xaxis.set_minor_formatter(NullFormatter())
    # Start the axis at 0 plus a sliver of the linear strip, so the round-0 marker is whole.
    ax.set_xlim(-0.05 * linthresh, max(xs) * 1.3 if sent else linthresh)


def format_y(ax, metric, log):
    """Scale, ticks and label of a metric's y axis (log scale if ``log``)."""
    ax.set_ylabel(metric_label(metric))
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ReadableLogLocator())
        ax.yaxis.set_minor_locator(MinorLogLocator())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(NumberFormatter())
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


# ---- titles and legends --------------------------------------------------------------------------------------

def describe_task(task):
    """A task section of a run config in words: ``logreg on breast_cancer``, ``linreg on synthetic data (d=200)``."""
    name, dataset = task.get("name", "?"), task.get("dataset")
    text = name
    if name == "linreg":
        from .tasks.linreg import SYNTHETIC  # imports torch: only for the task that needs it

        dataset = "synthetic" if dataset in SYNTHETIC else dataset
    if dataset == "synthetic":
        text = f"{name} on synthetic data (d={task.get('dim')})"
    elif dataset:
        text = f"{name} on {dataset}"
    size = task.get("batch_size")
    if size:
        text += f", minibatch {size}"
    return text


def with_params(name, params):
    """``qsgd`` or, with parameters, ``qsgd(levels=2)``."""
    if not params:
        return str(name)
    return f"{name}(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in params.items()) + ")"


def run_fields(run_dir):
    """What a run folder's config.yaml and summary.json say about it, for titles and legends.

    ``{"task": "logreg on breast_cancer", "agents": "8 agents", "scheme": "scheme tpc",
    "codec": "codec qsgd(levels=2)"}``; a field the folder does not tell is left out.
    """
    run_dir = Path(run_dir)
    cfg, summary = {}, {}
    if (run_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
    fields = {}
    if "task" in cfg:
        fields["task"] = describe_task(cfg["task"])
    run = cfg.get("run", {})
    agents = summary.get("agents") or (run.get("workers") or 0) * run.get("agents_per_worker", 1)
    if agents:
        fields["agents"] = f"{agents} agents"
    scheme = cfg.get("scheme", {})
    if "name" in scheme:
        fields["scheme"] = "scheme " + with_params(scheme["name"], scheme.get("params"))
        fields["codec"] = "codec " + with_params(scheme.get("codec", "fp32"), scheme.get("codec_params"))
    return fields


def split_common(fields):
    """``(common, differing)`` of a list of field dicts: the fields every one has alike, and the rest of each."""
    common = {k: v for k, v in fields[0].items() if all(f.get(k) == v for f in fields[1:])}
    return common, [{k: v for k, v in f.items() if k not in common} for f in fields]


def title_of(common):
    """The figure title from the fields all runs share, in ``TITLE_FIELDS`` order."""
    return ", ".join(common[k] for k in TITLE_FIELDS if k in common)


def legend_label(label, differing):
    """``label`` followed by the differing fields whose value it does not already spell out.

    ``legend_label("a", {"codec": "codec fp16"}) == "a (codec fp16)"``;
    ``legend_label("tpc-fp16", {"scheme": "scheme tpc"}) == "tpc-fp16"`` (the label names tpc).
    """
    missing = [text for text in differing.values() if not _names(label, text.split(" ", 1)[-1])]
    return f"{label} ({'; '.join(missing)})" if missing else label


def _names(label, value):
    """Whether ``label`` contains ``value`` as a whole word (``clag-topk`` names topk, not lag)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", label) is not None


def finish(fig, title, legend_columns=4):
    """The title above the panels and one legend for the whole figure below them."""
    fig.suptitle(title, fontsize="medium")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), legend_columns),
               fontsize="small", frameon=False)


def save(fig, out):
    """Write ``fig`` to ``out``; the suffix picks the format (``.png`` raster, ``.pdf`` and ``.svg`` vector)."""
    out = Path(out)
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise ConfigError(f"--out {out}: unknown figure format {out.suffix!r}; use .png, .pdf or .svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


# ---- the figure of runs --------------------------------------------------------------------------------------

def metrics_of(rows):
    """The metric columns present in evaluated rows, most telling first."""
    present = {k for r in rows for k in r}
    return [m for m in PREFERRED if m in present]


def figure_runs(run_dirs, labels=None, metrics=None, xs=DEFAULT_X, log=False):
    """The Figure: a row per metric, a column per x axis in ``xs`` (keys of ``X_AXES``), one line per run.

    ``labels`` default to the folder names; ``metrics`` to those of ``PREFERRED`` the first run
    has; ``log`` puts every y axis on a log scale (losses and suboptimality always are). A column
    missing from a run's metrics.csv is a ConfigError naming the run, the column and the option.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"--labels: got {len(labels)} labels for {len(run_dirs)} runs")
    runs = [read_metrics(d) for d in run_dirs]
    metrics = list(metrics or metrics_of(runs[0]))
    if not metrics:
        raise ConfigError(f"{run_dirs[0]}/metrics.csv has none of the metrics {', '.join(PREFERRED)}; name some "
                          f"with --metrics")
    for d, rows in zip(run_dirs, runs):
        present = {k for r in rows for k in r}
        needed = [(m, "--metrics") for m in metrics] + [(X_AXES[x][0], f"--x {x}") for x in xs]
        for column, option in needed:
            if column not in present:
                raise ConfigError(f"{d}/metrics.csv has no column {column!r} ({option}); it has: "
                                  f"{', '.join(sorted(present))}")
    common, differing = split_common([run_fields(d) for d in run_dirs])
    names = labels or [d.name for d in run_dirs]
    names = [legend_label(n, diff) for n, diff in zip(names, differing)]

    fig = Figure(figsize=(5.0 * len(xs), 2.9 * len(metrics) + 0.9), layout="constrained")
    axes = fig.subplots(len(metrics), len(xs), squeeze=False)
    for row, metric in zip(axes, metrics):
        for ax, x in zip(row, xs):
            column = X_AXES[x][0]
            plotted = []
            for name, rows in zip(names, runs):
                ev = [r for r in rows if metric in r and column in r]
                plotted += [r[column] for r in ev]
                ax.plot([r[column] for r in ev], [r[metric] for r in ev], marker="." if len(ev) <= 60 else None,
                        linewidth=1.4, label=name)
            format_x(ax, x, plotted)
            format_y(ax, metric, log or metric in LOG_METRICS)
    finish(fig, title_of(common))
    return fig


def plot_runs(run_dirs, out, labels=None, metrics=None, xs=DEFAULT_X, log=False):
    """Write ``figure_runs(...)`` to ``out`` (.png or .pdf) and return ``out``."""
    return save(figure_runs(run_dirs, labels, metrics, xs, log), out)


def _list(text):
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m psgrad.plot", description="Overlay psgrad runs.")
    p.add_argument("runs", nargs="+", help="run folders (results/<name>)")
    p.add_argument("--labels", type=_list, help="legend labels, one per run, comma-separated (default: folder names)")
    p.add_argument("--metrics", type=_list,
                   help=f"metric columns, comma-separated (default: those of {','.join(PREFERRED)} present)")
    p.add_argument("--x", choices=tuple(X_AXES), action="append",
                   help="x axis: bits (cumulative uplink payload bits), rounds, time (wall-clock s), total "
                        "(uplink + downlink bits), sim_time; repeat for more columns (default: bits and rounds)")
    p.add_argument("--log", action="store_true", help="log scale on every y axis (losses always are)")
    p.add_argument("--out", default="results/plot.png",
                   help="output file; .png, or .pdf for vector graphics (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = plot_runs(args.runs, args.out, args.labels, args.metrics, tuple(args.x or DEFAULT_X), args.log)
    except (FileNotFoundError, ConfigError) as e:
        print(f"psgrad.plot: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
