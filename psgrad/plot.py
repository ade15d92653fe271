"""``python -m psgrad.plot RUN [RUN ...] [--out FILE]``: overlay runs, metrics versus bits and versus rounds.

Each run folder's metrics.csv gives, on evaluation rounds, the model's
metrics after the round's cumulative uplink payload bits.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runtime.results import read_metrics

PREFERRED = ("suboptimality", "train_loss", "test_loss", "test_accuracy")


def metrics_of(rows):
    """The metric columns present in evaluated rows, most telling first."""
    present = {k for r in rows for k in r}
    return [m for m in PREFERRED if m in present]


def plot_runs(run_dirs, out, labels=None):
    """Write one PNG: a row per metric, columns 'vs uplink bits' and 'vs rounds'."""
    runs = [(labels[i] if labels else Path(d).name, read_metrics(d)) for i, d in enumerate(run_dirs)]
    metrics = metrics_of(runs[0][1])
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.2 * len(metrics)), squeeze=False)
    for row, metric in zip(axes, metrics):
        for label, rows in runs:
            ev = [r for r in rows if metric in r]
            sent = [r for r in ev if r["cum_up_payload_bits"] > 0]  # a log axis has no room for round 0
            row[0].plot([r["cum_up_payload_bits"] for r in sent], [r[metric] for r in sent], marker=".", label=label)
            row[1].plot([r["round"] for r in ev], [r[metric] for r in ev], marker=".", label=label)
        for ax, xlabel in zip(row, ("cumulative uplink payload bits", "round")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric)
            if metric in ("suboptimality", "train_loss", "test_loss"):
                ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        row[0].set_xscale("log")
    axes[0][1].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m psgrad.plot", description="Overlay psgrad runs.")
    p.add_argument("runs", nargs="+", help="run folders (results/<name>)")
    p.add_argument("--out", default="results/plot.png", help="output PNG (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        out = plot_runs(args.runs, args.out)
    except FileNotFoundError as e:
        print(f"psgrad.plot: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
