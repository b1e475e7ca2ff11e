"""figures/grad_norms.png: the global gradient norm (before clipping) against tokens seen, per run, and
the activation scale (RMS) in a second panel when metrics.csv has an `act_rms` column. On their log axes,
each seed's logged values are a faint line of their own, so that one seed's spike shows at its logged height
(a mean over seeds would shrink it); the solid lines are geometric means (over seeds, and running over steps),
in which one step's spike stays a bump, not a plateau the width of the running mean; bands ± 1 std of the
log over seeds."""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from picollm.plots import SLIDE, families, lines_note, log_y, model_styles, plt, save, tokens_axis
from picollm.plots.loss_curves import (band_note, mean_and_band, most_seeds, over_seeds, positive_log, read_metrics,
                                       tokens_note)


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 5) -> None:
    """metrics: {run: {seed: metrics.csv path}}. One legend right of the panels, off every curve, with each
    run's last value in each panel and its highest logged gradient norm (any seed's), the number that says
    whether a run blew up."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    panels = [("grad_norm", "Global gradient norm, before clipping", "L2 norm of all gradients", "norm")]
    if "act_rms" in frame and frame["act_rms"].notna().any():
        panels.append(("act_rms", "RMS of the activations\nentering the LM head", "root mean square", "RMS"))
    fig, axes = plt.subplots(1, len(panels), figsize=SLIDE, squeeze=False, layout="constrained")
    windows, lasts, peaks = set(), {name: [] for name in styles}, {}
    for ax, (column, title, ylabel, short) in zip(axes[0], panels):
        for name, group in frame.groupby("model", sort=False):
            if group[column].notna().any():
                logs = group.assign(**{column: positive_log(group[column])})
                last = np.exp(over_seeds(logs, column)["mean"].iloc[-1])
                lasts[name].append(f"{short} {last:.3g}")
                if column == "grad_norm":
                    peaks[name] = f";\nhighest norm {group[column].max():.3g}"
                windows.add(mean_and_band(ax, group, column, smooth, styles[name]["color"], name, geometric=True))
        log_y(ax)
        ax.set(xlabel="tokens seen", ylabel=f"{ylabel} (log scale)", title=title)
        tokens_axis(ax, ticks=3 if len(panels) > 1 else 5)
    handles = [Line2D([], [], color=styles[name]["color"], lw=2.5,
                      label=f"{name}\n(last {', '.join(lasts[name])}{peaks.get(name, '')})")
               for name in sum(families(styles), []) if lasts[name]]  # a model's sweep points right after it
    note = lines_note(windows, "geometric mean", most_seeds(frame)).replace("; ", "\n")
    fig.legend(handles=handles, loc="outside right center", title=note,
               fontsize="small" if len(handles) <= 4 else "x-small", title_fontsize="x-small")
    fig.suptitle(f"Training dynamics — {experiment}, {tokens_note(frame)}\n{band_note(frame, geometric=True)}",
                 fontsize="medium")
    save(fig, out, experiment, provenance)
