"""bits.png and rounds.png: the target metric of each contender's best grid point, with the target line."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOG_METRICS = ("suboptimality", "train_loss", "test_loss")
STYLES = ("-", "--", "-.", ":")


def plot(comparison, curves, out, x):
    """One PNG: ``curves`` = [(label, proposed, rows)], metric against ``x`` ('bits' or 'rounds')."""
    t = comparison.target
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, (label, proposed, rows) in enumerate(curves):
        ev = [r for r in rows if t.metric in r]
        if x == "bits":
            ev = [r for r in ev if r["cum_up_payload_bits"] > 0]  # a log axis has no room for round 0
            xs = [r["cum_up_payload_bits"] for r in ev]
        else:
            xs = [r["round"] for r in ev]
        # Proposed schemes solid and thick, baselines in varied dashes, so a printed grey copy still reads.
        ax.plot(xs, [r[t.metric] for r in ev], color=colors[i % len(colors)],
                linestyle="-" if proposed else STYLES[1 + i % 3], linewidth=2.2 if proposed else 1.3,
                label=f"{label} (proposed)" if proposed else label)
    ax.axhline(t.threshold, color="black", linewidth=0.8, linestyle=":", label=f"target {t}")
    ax.set_xlabel("cumulative uplink payload bits (all agents)" if x == "bits" else "round")
    ax.set_ylabel(t.metric)
    if x == "bits":
        ax.set_xscale("log")
    if t.metric in LOG_METRICS:
        ax.set_yscale("log")
    elif t.metric.endswith("accuracy"):
        lo = min([t.threshold] + [r[t.metric] for _, _, rows in curves for r in rows[-1:] if t.metric in r])
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{comparison.name}: best grid point of each contender")
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
