"""figures/loss_curves.png: train and validation loss against tokens seen, per model.

Options: `ylim="auto"` zooms on the interesting region (the first steps' loss, about ln(vocab), would
squash the rest, so the first quarter of training runs off the top), or a (bottom, top) pair; `logy`
draws the loss on a log scale.
"""
from __future__ import annotations

import pandas as pd

from picollm.plots import SLIDE, log_y, model_styles, plt, raw_and_smoothed, save, tokens_axis


def read_metrics(metrics: dict) -> pd.DataFrame:
    frames = [pd.read_csv(path).assign(model=name) for name, path in metrics.items()]
    return pd.concat(frames, ignore_index=True)


def auto_ylim(frame: pd.DataFrame, skip: float = 0.25) -> tuple[float, float]:
    """From just below the lowest loss to the highest loss after the first `skip` of training."""
    later = frame[frame["tokens_seen"] >= skip * frame["tokens_seen"].max()]
    losses = later[["train_loss", "val_loss"]].stack()
    low, high = losses.min(), losses.max()
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 10, ylim=None,
         logy: bool = False) -> None:
    """metrics: {model name: metrics.csv path}."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    fig, ax = plt.subplots(figsize=SLIDE)
    shown = set()
    for name, group in frame.groupby("model", sort=False):
        train = group.dropna(subset=["train_loss"])
        val = group.dropna(subset=["val_loss"])
        final = val["val_loss"].iloc[-1] if len(val) else float("nan")
        shown.add(raw_and_smoothed(ax, train["tokens_seen"], train["train_loss"], smooth, styles[name]["color"],
                                   f"{name} train"))
        ax.plot(val["tokens_seen"], val["val_loss"], ls="--", marker=styles[name]["marker"],
                color=styles[name]["color"], ms=8, lw=1.5, label=f"{name} val (final {final:.3f})")
    if ylim is not None:
        ax.set_ylim(auto_ylim(frame) if ylim == "auto" else ylim)
    if logy:
        log_y(ax)
    tokens = int(frame["tokens_seen"].max())
    zoom = "\n(y zoomed: earlier, higher losses run off the top)" if ylim == "auto" else ""
    ax.set(xlabel="tokens seen", ylabel="cross-entropy (nats/token)",
           title=f"Loss curves — {experiment}, {tokens:,} training tokens per model{zoom}")
    tokens_axis(ax)
    ax.legend(title="train lines — " + "; ".join(sorted(shown)), fontsize="small", title_fontsize="small")
    save(fig, out, experiment, provenance)
