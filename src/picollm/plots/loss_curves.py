"""figures/loss_curves.png: train (raw and smoothed) and validation loss against tokens seen, per model."""
from __future__ import annotations

import pandas as pd
import seaborn as sns

from picollm.plots import plt, save, smoothed, tokens_axis


def read_metrics(metrics: dict) -> pd.DataFrame:
    frames = [pd.read_csv(path).assign(model=name) for name, path in metrics.items()]
    return pd.concat(frames, ignore_index=True)


def plot(metrics: dict, out, experiment: str, smooth: int = 10, provenance=None) -> None:
    """metrics: {model name: metrics.csv path}."""
    frame = read_metrics(metrics)
    palette = dict(zip(metrics, sns.color_palette("tab10", len(metrics))))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, group in frame.groupby("model", sort=False):
        train = group.dropna(subset=["train_loss"])
        val = group.dropna(subset=["val_loss"])
        final = val["val_loss"].iloc[-1] if len(val) else float("nan")
        ax.plot(train["tokens_seen"], train["train_loss"], color=palette[name], alpha=0.25, lw=1)
        ax.plot(train["tokens_seen"], smoothed(train["train_loss"], smooth), color=palette[name], lw=1.8,
                label=f"{name} train (smoothed)")
        ax.plot(val["tokens_seen"], val["val_loss"], "o--", color=palette[name], ms=4, lw=1,
                label=f"{name} val (final {final:.3f})")
    tokens = int(frame["tokens_seen"].max())
    ax.set(xlabel="tokens seen", ylabel="cross-entropy (nats/token)",
           title=f"Loss curves — {experiment}, {tokens:,} training tokens per model")
    tokens_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out, experiment, provenance)
