"""figures/grad_norms.png: the global gradient norm (before clipping) against tokens seen, per model, and
the activation scale (RMS) in a second panel when metrics.csv has an `act_rms` column."""
from __future__ import annotations

from picollm.plots import SLIDE, log_y, model_styles, plt, raw_and_smoothed, save, tokens_axis
from picollm.plots.loss_curves import read_metrics


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 5) -> None:
    """metrics: {model name: metrics.csv path}."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    panels = [("grad_norm", "Global gradient norm, before clipping")]
    if "act_rms" in frame and frame["act_rms"].notna().any():
        panels.append(("act_rms", "RMS of the activations entering the LM head"))
    fig, axes = plt.subplots(1, len(panels), figsize=SLIDE, squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        shown = set()
        for name, group in frame.groupby("model", sort=False):
            rows = group.dropna(subset=[column])
            if not rows.empty:
                shown.add(raw_and_smoothed(ax, rows["tokens_seen"], rows[column], smooth, styles[name]["color"],
                                           f"{name} (last {rows[column].iloc[-1]:.3g})"))
        log_y(ax)
        ax.set(xlabel="tokens seen", title=title)
        tokens_axis(ax)
        ax.legend(title="; ".join(sorted(shown)), fontsize="small", title_fontsize="x-small")
    tokens = int(frame["tokens_seen"].max())
    fig.suptitle(f"Training dynamics — {experiment}, {tokens:,} training tokens per model")
    fig.tight_layout()
    save(fig, out, experiment, provenance)
