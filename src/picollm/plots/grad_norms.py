"""figures/grad_norms.png: the global gradient norm (before clipping) against tokens seen, per model, and
the activation scale (RMS) in a second panel when metrics.csv has an `act_rms` column."""
from __future__ import annotations

import matplotlib.ticker
import seaborn as sns

from picollm.plots import plt, save, smoothed, tokens_axis
from picollm.plots.loss_curves import read_metrics


def plot(metrics: dict, out, experiment: str, smooth: int = 5, provenance=None) -> None:
    """metrics: {model name: metrics.csv path}."""
    frame = read_metrics(metrics)
    palette = dict(zip(metrics, sns.color_palette("tab10", len(metrics))))
    panels = [("grad_norm", "global gradient norm (before clipping)")]
    if "act_rms" in frame and frame["act_rms"].notna().any():
        panels.append(("act_rms", "RMS of the activations entering the LM head"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (column, label) in zip(axes[0], panels):
        for name, group in frame.groupby("model", sort=False):
            rows = group.dropna(subset=[column])
            if rows.empty:
                continue
            ax.plot(rows["tokens_seen"], rows[column], color=palette[name], alpha=0.3, lw=1)
            ax.plot(rows["tokens_seen"], smoothed(rows[column], smooth), color=palette[name], lw=1.8,
                    label=f"{name} (last {rows[column].iloc[-1]:.3g})")
        ax.set(xlabel="tokens seen", ylabel=label, yscale="log")
        tokens_axis(ax)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(f"{label} (faint: every logged step; solid: centred running mean)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    tokens = int(frame["tokens_seen"].max())
    fig.suptitle(f"Training dynamics — {experiment}, {tokens:,} training tokens per model", fontsize=10)
    fig.tight_layout()
    save(fig, out, experiment, provenance)
