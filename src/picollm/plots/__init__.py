"""Figures, one module per figure; each reads only files on disk and stamps the experiment on the image."""
from __future__ import annotations

import json

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # headless: rules run without a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from picollm.io import atomic_path  # noqa: E402


def smoothed(series: pd.Series, smooth: int) -> pd.Series:
    """Centred running mean over at most `smooth` points and at most a tenth of the series: a trailing mean
    lags the raw curve (drawing train loss above validation loss), a wide one flattens the first steep drop."""
    window = max(1, min(smooth, len(series) // 10))
    return series.rolling(window, min_periods=1, center=True).mean()


def tokens_axis(ax) -> None:
    """Tokens seen on the x axis as 1,228,800 rather than 1.2e6."""
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))


def save(fig, path, experiment: str, provenance: dict | None = None) -> None:
    """Save a PNG atomically with the experiment in a corner and the provenance in its metadata.

    No timestamp goes into the file (matplotlib's 'Software' only), so rebuilding from the same data
    gives the same bytes.
    """
    fig.text(0.995, 0.005, f"experiment: {experiment}", ha="right", va="bottom", fontsize=7, color="0.4")
    metadata = {"Title": f"{experiment}", "Description": json.dumps(provenance or {}, default=str, sort_keys=True)}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
