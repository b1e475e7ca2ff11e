"""figures/grad_norms.png: the global gradient norm (before clipping) against tokens seen, per run, and
the activation scale (RMS) in a second panel when metrics.csv has an `act_rms` column. Lines are means
over seeds, bands ± 1 std over seeds."""
from __future__ import annotations

from picollm.plots import SLIDE, log_y, model_styles, plt, save, tokens_axis
from picollm.plots.loss_curves import band_note, mean_and_band, over_seeds, read_metrics


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 5) -> None:
    """metrics: {run: {seed: metrics.csv path}}."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    panels = [("grad_norm", "Global gradient norm, before clipping")]
    if "act_rms" in frame and frame["act_rms"].notna().any():
        panels.append(("act_rms", "RMS of the activations entering the LM head"))
    fig, axes = plt.subplots(1, len(panels), figsize=SLIDE, squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        shown = set()
        for name, group in frame.groupby("model", sort=False):
            if group[column].notna().any():
                last = over_seeds(group, column)["mean"].iloc[-1]
                shown.add(mean_and_band(ax, group, column, smooth, styles[name]["color"],
                                        f"{name} (last {last:.3g})"))
        log_y(ax)
        ax.set(xlabel="tokens seen", title=title)
        tokens_axis(ax)
        ax.legend(title="; ".join(sorted(shown)), fontsize="small" if len(metrics) <= 4 else "x-small",
                  title_fontsize="x-small")
    tokens = int(frame["tokens_seen"].max())
    fig.suptitle(f"Training dynamics — {experiment}, {tokens:,} training tokens per model\n{band_note(frame)}",
                 fontsize="medium")
    fig.tight_layout()
    save(fig, out, experiment, provenance)
