"""Figures, one module per figure; each reads only files on disk and stamps the experiment on the image."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")  # headless: rules run without a display
import matplotlib.pyplot as plt  # noqa: E402

from picollm.io import atomic_path  # noqa: E402


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
