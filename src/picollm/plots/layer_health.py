"""figures/layer_health.png: inside each Transformer block, against tokens seen: the gradient norm of the
attention weights, of the MLP weights (both before clipping), and the RMS of the residual stream after the
block, one panel each on log axes, from models/<run>/layer_health.csv.

Colour is depth (first block light, last dark, the same in every panel); line style is the run, so seed
replicates of one model overlay. A block whose gradients climb while the others stay flat, or a residual
scale that keeps growing with depth, is the exploding case; norms sinking decades below the others, the
vanishing one. Runs without Transformer blocks (header-only files) are left out.
"""
from __future__ import annotations

import matplotlib.lines
import pandas as pd

from picollm.plots import SLIDE, log_y, plt, save, smoothed, smoothing_window, tokens_axis
from picollm.tables import path_seed, run_order, seed_note, train_tokens_note

PANELS = [("attn_grad_norm", "Attention weights:\ngradient norm", "gradient norm"),
          ("mlp_grad_norm", "MLP weights:\ngradient norm", "gradient norm"),
          ("resid_rms", "Residual stream after\nthe block: RMS", "root mean square")]
LINESTYLES = ["-", "--", ":", "-."]


def flat(inputs: dict) -> dict:
    """{run: path} as given, or {run: {seed: path}} (replicates) as {"run seed N": path}."""
    return {f"{run} seed {seed}" if isinstance(v, dict) else run: path
            for run, v in inputs.items() for seed, path in (v.items() if isinstance(v, dict) else [(None, v)])}


def read_health(inputs: dict) -> pd.DataFrame:
    frames = [pd.read_csv(inputs[run]).assign(run=run) for run in run_order(inputs)]  # d_model=32 before 128
    return pd.concat(frames, ignore_index=True)


def plot(inputs: dict, out, experiment: str, provenance=None, *, smooth: int = 5) -> None:
    """inputs: {run: layer_health.csv path} or {run: {seed: layer_health.csv path}}."""
    inputs = flat(inputs)
    frame = read_health(inputs)
    runs = [r for r in run_order(inputs) if (frame["run"] == r).any()]
    fig, axes = plt.subplots(1, len(PANELS), figsize=SLIDE, sharex=True, layout="constrained")
    if not runs:
        fig.text(0.5, 0.5, "no Transformer runs: nothing to show", ha="center", va="center", fontsize=20)
        for ax in axes:
            ax.set_axis_off()
        fig.suptitle(f"Layer health — {experiment}")
        save(fig, out, experiment, provenance)
        return
    n_blocks = int(frame["block"].max()) + 1
    import seaborn as sns  # here, not at the top: its import costs a second, and only this figure needs it

    colors = sns.color_palette("crest", n_blocks)  # light to dark, no end too pale to see on white
    styles = {run: LINESTYLES[i % len(LINESTYLES)] for i, run in enumerate(runs)}
    for ax, (column, title, quantity) in zip(axes, PANELS):
        for (run, block), group in frame.groupby(["run", "block"], sort=False):
            window = smoothing_window(len(group), smooth)
            x, y = group["tokens_seen"], group[column]
            if window > 1:  # every logged step faint, its running mean solid
                ax.plot(x, y, color=colors[block], alpha=0.2, lw=1)
            ax.plot(x, smoothed(y, window), color=colors[block], ls=styles[run], lw=2.5)
        log_y(ax)
        ax.set(title=title, xlabel="tokens seen", ylabel=f"{quantity} (log scale)")
        tokens_axis(ax, ticks=3)  # three panels side by side
    legend(fig, colors, styles)
    tokens = train_tokens_note(frame.groupby("run", sort=False)["tokens_seen"].max().to_dict())
    seeds = seed_note(path_seed(path) for path in inputs.values())
    fig.suptitle(f"Layer health per Transformer block — {experiment}\n{tokens}, {seeds}", fontsize="medium")
    save(fig, out, experiment, provenance)


def legend(fig, colors, styles: dict) -> None:
    """One legend under the panels: a swatch per block and, with several runs, a line style per run."""
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=4, label=f"block {i}") for i, c in enumerate(colors)]
    if len(styles) > 1:
        handles += [matplotlib.lines.Line2D([], [], color="0.3", ls=ls, lw=2.5, label=run)
                    for run, ls in styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize="small", frameon=False,
               title="colour: depth (block 0 nearest the input)" + ("; line style: run" if len(styles) > 1 else ""),
               title_fontsize="small")
