"""Figures: each writes a PNG and an SVG beside it from files on disk; smoothing, zoom and labels behave;
seeds average into lines with bands or error bars."""
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from picollm.data.tokenizer import get_tokenizer
from picollm.models import build_model, checkpoint_dict
from picollm.plots import (DPI, PALETTE, SLIDE, STAMP_GAP, attention_heads, families, grad_norms, lines_note,
                           loss_curves, lr_schedule, model_styles, p_sweep, plt, raw_and_smoothed, run_label,
                           sample_comparison, sample_slide, save, shades, smoothing_window, snapshots, sweep)
from picollm.tables import ENDED_AT_ONCE

SLIDE_PX = SLIDE[0] * DPI  # a slide-wide figure's width in pixels


def assert_png_and_svg(png):
    assert png.stat().st_size > 1000
    assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def write_metrics(tmp_path, n_points: int = 40, seeds=(1, 2)) -> dict:
    """{model: {seed: metrics.csv}} with the columns training writes; the loss starts high (ln V) and drops,
    each seed a little differently."""
    paths = {}
    for i, name in enumerate(["kgram_mlp", "lstm", "transformer"]):
        for seed in seeds:
            step = np.arange(n_points) * 10
            noise = np.random.default_rng(seed).normal(0, 0.05, n_points)
            frame = pd.DataFrame({"step": step, "tokens_seen": step * 512,
                                  "train_loss": 2 + 8 * np.exp(-step / 50) + i / 10 + noise,
                                  "val_loss": np.where(step % 100 == 0, 2.2 + 8 * np.exp(-step / 50) + seed / 50,
                                                       np.nan),
                                  "lr": 1e-3 * np.minimum(1, (step + 1) / 50), "grad_norm": 1 + np.exp(-step / 30),
                                  "act_rms": 0.5 + step / 1000, "elapsed_s": step / 10})
            path = tmp_path / name / f"seed{seed}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            paths.setdefault(name, {})[str(seed)] = str(path)  # as JSON from the command line: string seeds
    return paths


def write_samples_csv(path, models=("kgram_mlp", "lstm", "transformer"), text=None) -> None:
    """tables/samples.csv: the lstm's samples are newlines (unless `text` = {model: text} says otherwise)."""
    def sample(m):
        return (text or {}).get(m, "\n" * 57 + "The" if m == "lstm" else " there was a girl. " * 8)
    rows = [{"model": m, "train_tokens": 512, "prompt": prompt, "decoding": d, "sample": 0, "seed": 1,
             "new_tokens": 60, "text": sample(m)}
            for m in models for prompt in ["Once upon a time", "Lily"] for d in ["greedy", "p=0.8", "p=0.95", "p=1"]]
    pd.DataFrame(rows).to_csv(path, index=False)


def saved_figures(module, monkeypatch) -> list:
    """The figures `module.plot` saves from now on, kept for a look at what they draw."""
    drawn, save = [], module.save
    monkeypatch.setattr(module, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    return drawn


def spike(metrics: dict, run: str, seed: str, column: str, value: float, row: int = 20) -> None:
    """Set one logged value of one seed of `run`, a spike the other seeds do not have."""
    rows = pd.read_csv(metrics[run][seed])
    rows.loc[row, column] = value
    rows.to_csv(metrics[run][seed], index=False)


def run_lines(ax, color) -> tuple[list, list]:
    """(faint, solid) lines of one run's colour: raw_and_smoothed gives only the faint ones an alpha."""
    lines = [line for line in ax.get_lines() if matplotlib.colors.same_color(line.get_color(), color)]
    return [line for line in lines if line.get_alpha()], [line for line in lines if not line.get_alpha()]


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def aspect(path) -> float:
    width, height = png_size(path)
    return width / height


def overlapping(texts, renderer) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap by more than a pixel."""
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-1)) for t in texts
             if t.get_visible() and t.get_text()]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


# What each style sets, as text, in a fresh interpreter (seaborn's set_theme changes the global rcParams), and
# whether a figure module imported seaborn or scipy.stats before this script did
RC_SET_BY = """
import json, sys, matplotlib as mpl
mpl.use("Agg")
import picollm.plots.loss_curves
from picollm.plots import TALK_WHITEGRID, PALETTE
loaded = {name: name in sys.modules for name in ("seaborn", "scipy.stats")}
def set_by(apply):
    mpl.rcdefaults()
    before = {k: str(v) for k, v in mpl.rcParams.items()}
    apply()
    return {k: str(v) for k, v in mpl.rcParams.items() if str(v) != before[k]}
ours = set_by(lambda: mpl.rcParams.update(TALK_WHITEGRID))
import seaborn as sns
theirs = set_by(lambda: sns.set_theme(context="talk", style="whitegrid", palette="tab10"))
palette = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]
print(json.dumps({"ours": ours, "theirs": theirs, "same_palette": palette == PALETTE, "loaded": loaded}))
"""


def test_the_slide_style_is_seaborns_talk_whitegrid_without_importing_seaborn():
    """Figures are drawn in seaborn's talk/whitegrid theme from a copy of its settings (importing seaborn costs
    every figure job a second): the copy sets what seaborn sets, but the colour map no figure uses."""
    styles = json.loads(subprocess.run([sys.executable, "-c", RC_SET_BY], capture_output=True, text=True,
                                       check=True).stdout)
    assert styles["theirs"].pop("image.cmap") == "rocket"
    assert styles["ours"] == styles["theirs"] and len(styles["ours"]) > 30
    assert styles["same_palette"]
    assert styles["loaded"] == {"seaborn": False, "scipy.stats": False}


def test_smoothing_only_with_enough_points():
    assert smoothing_window(20, 10) == 1  # a 2-point mean is the raw line in all but name
    assert smoothing_window(35, 10) == 3
    assert smoothing_window(1000, 10) == 10
    for n, lines, note in [(20, 1, "every logged step"), (200, 2, "mean of 10")]:
        fig, ax = plt.subplots()
        window = raw_and_smoothed(ax, pd.Series(range(n)), pd.Series(np.random.rand(n)), 10, "C0", "m")
        assert len(ax.lines) == lines and note in lines_note({window})
        plt.close(fig)
    # one wording for a figure whose runs are smoothed differently, or some not at all
    assert lines_note({1, 10, 5}) == ("faint: every logged step; solid: mean of 5 or 10; a solid line alone: every "
                                      "logged step (too few to smooth)")


def test_each_seed_has_a_faint_line_under_the_solid_mean():
    steps = pd.Series(range(200))
    seeds = [(steps, pd.Series(np.random.rand(200))) for _ in range(3)]
    mean = sum(y for _, y in seeds) / 3
    fig, ax = plt.subplots()
    assert raw_and_smoothed(ax, steps, mean, 10, "C0", "m", raw=seeds) == 10
    assert len(ax.lines) == 4 and [line.get_alpha() for line in ax.lines][-1] is None  # the solid line on top
    plt.close(fig)
    fig, ax = plt.subplots()  # too few steps to smooth: still each seed, under their (unsmoothed) mean
    assert raw_and_smoothed(ax, steps[:20], mean[:20], 10, "C0", "m", raw=[(x[:20], y[:20]) for x, y in seeds]) == 1
    assert len(ax.lines) == 4
    plt.close(fig)
    assert lines_note({10}, seeds=3) == "faint: every logged step of each seed; solid: mean of 10"
    assert lines_note({1}, seeds=2) == "faint: every logged step of each seed; solid: unsmoothed (too few steps)"
    assert lines_note({1, 5}, "geometric mean", seeds=2) == (
        "faint: every logged step of each seed; solid: geometric mean of 5; unsmoothed where too few steps")


def test_the_running_mean_starts_and_ends_at_the_data_and_is_pandas_centred_mean_between():
    """A falling loss curve's smoothed line starts at its first point, not at a mean of the later, lower ones."""
    from picollm.plots import smoothed
    loss = pd.Series(10 * np.exp(-np.arange(100) / 10) + np.random.default_rng(0).normal(0, 0.05, 100))
    for window in (5, 10):
        line = smoothed(loss, window)
        assert line.iloc[0] == pytest.approx(loss.iloc[0]) and line.iloc[-1] == pytest.approx(loss.iloc[-1], abs=1e-9)
        assert line.iloc[1] == pytest.approx(loss.iloc[:3].mean())
        centred = loss.rolling(window, center=True).mean()
        assert np.allclose(line[window:-window], centred[window:-window])
        assert abs(line.iloc[:5] - loss.iloc[:5]).max() < abs(loss.rolling(window, 1, center=True).mean().iloc[:5]
                                                              - loss.iloc[:5]).max() / 3
    gappy = pd.Series([1.0, np.nan, 3.0, 4.0])
    assert smoothed(gappy, 3).tolist() == [1.0, 2.0, 3.5, 4.0]  # a missing value is skipped, as pandas does


def test_loss_curves_of_many_runs_keep_the_slide_size(tmp_path, monkeypatch):
    """Past four runs the legend moves under the curves, in columns: the axes keep most of the slide's width
    (beside them, it left a blank block under itself) and the figure stays a slide in size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image
    metrics = write_metrics(tmp_path)
    metrics.update({f"transformer.d_model={d}": metrics["transformer"] for d in (16, 32, 64)})
    drawn, save = [], loss_curves.save
    monkeypatch.setattr(loss_curves, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    loss_curves.plot(metrics, tmp_path / "loss.png", "exp")
    width, height = Image.open(tmp_path / "loss.png").size
    assert width <= SLIDE[0] * DPI * 1.02 and height <= SLIDE[1] * DPI * 1.05, (width, height)  # the stamp above
    fig, = drawn
    ax, legend = fig.axes[0], fig.legends[0]
    canvas = FigureCanvasAgg(fig)  # saved and closed: laid out again on a canvas of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    assert ax.get_position().width > 0.8 and legend.get_window_extent(renderer).y1 < ax.get_tightbbox(renderer).y0
    texts = {t.get_text(): t.get_window_extent(renderer) for t in legend.get_texts()}
    key = next(text for text in texts if text.startswith("train — "))
    assert key.startswith("train — faint: every logged step\nof each seed;\nsolid: mean of")
    # the Transformer and its three sweep points in one column, the other models in another
    family = [box for text, box in texts.items() if text.startswith("transformer")]
    assert len(family) == 4 and len({round(box.x0) for box in family}) == 1
    assert len({round(box.x0) for text, box in texts.items() if text.startswith(("kgram_mlp", "lstm"))}) == 1
    assert texts[key].x0 > family[0].x0 > next(box for text, box in texts.items() if text.startswith("lstm")).x0


@pytest.mark.parametrize("options", [{}, {"ylim": "auto", "logy": True}, {"seeds": (1,)}])
def test_loss_curves(tmp_path, options):
    metrics = write_metrics(tmp_path, seeds=options.pop("seeds", (1, 2, 3)))
    loss_curves.plot(metrics, tmp_path / "loss.png", "exp", **options)
    assert_png_and_svg(tmp_path / "loss.png")


def test_loss_curves_average_over_seeds(tmp_path):
    frame = loss_curves.read_metrics(write_metrics(tmp_path, seeds=(1, 2, 3)))
    assert set(frame["seed"]) == {1, 2, 3} and list(dict.fromkeys(frame["model"])) == ["kgram_mlp", "lstm",
                                                                                          "transformer"]
    val = loss_curves.over_seeds(frame[frame["model"] == "lstm"], "val_loss")
    assert list(val["step"]) == [0, 100, 200, 300] and set(val["seeds"]) == {3}
    assert val["mean"].iloc[0] == pytest.approx(2.2 + 8 + 2 / 50)  # seeds add 1/50, 2/50, 3/50
    assert val["std"].iloc[0] == pytest.approx(1 / 50)
    assert loss_curves.band_note(frame) == "solid lines: mean over 3 seeds, bands ± 1 std"  # not the faint ones
    one = loss_curves.read_metrics(write_metrics(tmp_path / "one", seeds=(1,)))
    assert loss_curves.over_seeds(one[one["model"] == "lstm"], "val_loss")["std"].isna().all()
    assert loss_curves.band_note(one) == "one seed per run: no band"


def test_loss_curves_legend_says_its_plus_minus_is_a_std(tmp_path):
    """eval.md's ± is a 95% interval of the whole split; the legend's is 1 std of training's subset."""
    frame = loss_curves.read_metrics(write_metrics(tmp_path, seeds=(1, 2, 3)))
    val = loss_curves.over_seeds(frame[frame["model"] == "lstm"], "val_loss")
    final = loss_curves.final_val(val)
    assert final == f"{2.2 + 8 * np.exp(-6) + 2 / 50:.3f} ± 0.020 std"  # the std to two significant digits
    fig, ax = plt.subplots()
    loss_curves.legend(ax, model_styles(["lstm"]), {"lstm": final}, {1}, "note", seeds=3)
    legend = ax.get_legend()
    assert "training's val subset, mean ± 1 std over seeds" in legend.get_title().get_text()
    assert legend.get_texts()[0].get_text() == f"lstm (val {final})"
    loss_curves.legend(ax, model_styles(["lstm"]), {"lstm": "2.240"}, {1}, "note", seeds=1)
    assert ax.get_legend().get_title().get_text().startswith("final val loss on training's val subset\n")  # one seed
    plt.close(fig)


def test_loss_curves_legend_names_the_precision_of_trainings_validation_losses(tmp_path):
    """Training's validation losses are taken in its precision (bf16 rounds them in about the fourth digit, unlike
    eval.md's fp32): the legend names it from the summary.json beside each metrics.csv, which the figure's
    provenance hashes; runs of different precisions point to models.md."""
    metrics = write_metrics(tmp_path, seeds=(1, 2))
    assert loss_curves.precision_note(metrics) == ""  # no summary: nothing said
    for run, seeds in metrics.items():
        for path in seeds.values():
            precision = "fp32" if run == "lstm" else "bf16"
            Path(path).with_name("summary.json").write_text(json.dumps({"precision": precision}))
    assert len(loss_curves.read_beside(metrics)) == 6 and lr_schedule.read_beside is loss_curves.read_beside
    assert loss_curves.precision_note(metrics) == " (in each run's training precision: models.md)"
    bf16 = {run: seeds for run, seeds in metrics.items() if run != "lstm"}
    assert loss_curves.precision_note(bf16) == " (bf16)"
    loss_curves.plot(bf16, tmp_path / "loss.png", "exp")
    assert_png_and_svg(tmp_path / "loss.png")
    assert "val subset (bf16), mean" in (tmp_path / "loss.svg").read_text()


def test_loss_curves_legend_prints_every_run_to_one_capped_precision():
    """0.68816 ± 0.00052 beside 0.797 ± 0.016 gave a bf16 loss a fifth digit of noise, and the entries different
    decimals: one number of decimals for the legend, at most 4 significant digits, at most 3 decimals under bf16."""
    def val(mean, std, seeds=2):
        return pd.DataFrame([{"mean": mean, "std": std, "seeds": seeds}])
    kgram, lstm = val(0.68816, 0.00052), val(0.797, 0.016)
    lasts = [kgram.iloc[-1], lstm.iloc[-1]]
    bf16, fp32 = loss_curves.val_decimals(lasts, bf16=True), loss_curves.val_decimals(lasts)
    assert [loss_curves.final_val(v, bf16) for v in (kgram, lstm)] == ["0.688 ± 0.001 std", "0.797 ± 0.016 std"]
    assert [loss_curves.final_val(v, fp32) for v in (kgram, lstm)] == ["0.6882 ± 0.0005 std", "0.7970 ± 0.0160 std"]
    assert loss_curves.final_val(kgram) == "0.6882 ± 0.0005 std"  # alone: 4 significant digits at most
    early = val(10.8312, 0.0004)  # 4 significant digits of the largest loss; a std that rounds to 0 says so
    assert loss_curves.final_val(early, loss_curves.val_decimals([early.iloc[-1]])) == "10.83 ± < 0.01 std"
    assert loss_curves.final_val(val(0.68816, np.nan, seeds=1), bf16) == "0.688"


def test_loss_curves_draw_each_seeds_training_loss_and_print_bf16_losses_alike(tmp_path, monkeypatch):
    """One seed's loss spike is that seed's faint line at its logged height, not a third of it in a mean over
    three seeds; the legend's final losses, taken in bf16, all have 3 decimals; and the SVG's text is text."""
    metrics = write_metrics(tmp_path, seeds=(1, 2, 3))
    spike(metrics, "transformer", "3", "train_loss", 20.0)  # at step 200, where the other seeds log about 2.2
    for run, seeds in metrics.items():
        for path in seeds.values():
            rows = pd.read_csv(path)
            rows.assign(val_loss=rows["val_loss"] * 0.3).to_csv(path, index=False)  # under 1: 4 digits are decimals
            Path(path).with_name("summary.json").write_text(json.dumps({"precision": "bf16"}))
    drawn = saved_figures(loss_curves, monkeypatch)
    loss_curves.plot(metrics, tmp_path / "loss.png", "exp")
    ax = drawn[0].axes[0]
    faint, solid = run_lines(ax, model_styles(list(metrics))["transformer"]["color"])
    logged = [pd.read_csv(path)["train_loss"] for path in metrics["transformer"].values()]
    assert [line.get_ydata().max() for line in faint] == [pytest.approx(y.max()) for y in logged]
    assert max(line.get_ydata().max() for line in faint) == pytest.approx(20.0)
    train = [line for line in solid if line.get_linestyle() == "-"]
    assert len(faint) == 3 and len(train) == 1 and train[0].get_ydata()[20] < 20 / 3  # the mean: a bump
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    finals = re.findall(r"\(val (\d+)\.(\d+) ± (\d+)\.(\d+) std\)", "\n".join(texts))
    assert len(finals) == 3 and {len(mean) for _, mean, _, _ in finals} == {len(std) for *_, std in finals} == {3}
    assert any(text.startswith("train — faint: every logged step of each seed;") for text in texts)
    svg = (tmp_path / "loss.svg").read_text()
    assert "<text" in svg and texts[2] in svg  # the transformer's entry as text, editable in a slide tool


def test_grad_norms_draw_each_seeds_spike_at_its_logged_height(tmp_path, monkeypatch):
    """A 188.66 gradient norm in one of three seeds: the geometric mean over seeds drew it as 188.66 ** (1/3),
    about 6. Now that seed's faint line reaches 188.66, and the run's legend entry gives its highest norm."""
    metrics = write_metrics(tmp_path, seeds=(1, 2, 3))
    spike(metrics, "lstm", "2", "grad_norm", 188.66)
    drawn = saved_figures(grad_norms, monkeypatch)
    grad_norms.plot(metrics, tmp_path / "grad_norms.png", "exp")
    fig = drawn[0]
    faint, solid = run_lines(fig.axes[0], model_styles(list(metrics))["lstm"]["color"])
    logged = [pd.read_csv(path)["grad_norm"] for path in metrics["lstm"].values()]
    assert [line.get_ydata().max() for line in faint] == [pytest.approx(y.max()) for y in logged]
    assert len(faint) == 3 and len(solid) == 1 and solid[0].get_ydata().max() < 5  # the spike a bump in the mean
    assert fig.axes[0].get_ylim()[1] > 188.66
    legend = fig.legends[0]
    assert legend.get_title().get_text().startswith("faint: every logged step of each seed\nsolid: geometric mean")
    assert "highest norm 189" in next(t.get_text() for t in legend.get_texts() if t.get_text().startswith("lstm"))
    plt.close(fig)


def test_auto_ylim_leaves_out_the_first_steps():
    frame = pd.DataFrame({"tokens_seen": [0, 100, 200, 300, 400], "train_loss": [10.8, 6, 3, 2.5, 2.4],
                          "val_loss": [10.9, np.nan, np.nan, np.nan, 2.6]})
    low, high = loss_curves.auto_ylim(frame)
    assert low < 2.4 and 6 < high < 7


def test_training_dynamics_figures(tmp_path):
    metrics = write_metrics(tmp_path, n_points=12)
    grad_norms.plot(metrics, tmp_path / "grad_norms.png", "exp")
    lr_schedule.plot(metrics, tmp_path / "lr_schedule.png", "exp")
    lr_schedule.plot(metrics, tmp_path / "lr_tokens.png", "exp", x="tokens_seen")
    for name in ["grad_norms", "lr_schedule", "lr_tokens"]:
        assert_png_and_svg(tmp_path / f"{name}.png")


def test_one_gradient_spike_is_no_plateau_in_the_solid_line():
    """A log-axis quantity: a single step's spike (x400 in one seed) lifts the solid line of a geometric running
    mean by its fifth root, where an arithmetic one lifted it for the whole window to ~40x; the seed's own faint
    line shows the spike at its logged height."""
    steps = np.arange(1, 41)
    rows = pd.DataFrame({"seed": np.repeat([1, 2], 40), "step": np.tile(steps, 2), "tokens_seen": np.tile(steps, 2),
                         "grad_norm": 0.5})
    rows.loc[(rows["seed"] == 2) & (rows["step"] == 20), "grad_norm"] = 200.0
    fig, ax = plt.subplots()
    assert loss_curves.mean_and_band(ax, rows, "grad_norm", 5, "C0", "run", geometric=True) == 4
    *faint, solid = (line.get_ydata() for line in ax.get_lines())
    assert [seed.max() for seed in faint] == [pytest.approx(0.5), pytest.approx(200.0)]  # each seed as it logged
    assert solid.max() == pytest.approx(0.5 * 20 ** 0.25) and solid[0] == pytest.approx(0.5)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert 0 < band.min() and band.max() < 5  # ± 1 std of the seeds' trends in the log (arithmetic: up to 28)
    plt.close(fig)
    rows.loc[(rows["seed"] == 1) & (rows["step"] == 5), "grad_norm"] = 0.0  # no place on a log axis: left out
    fig, ax = plt.subplots()
    loss_curves.mean_and_band(ax, rows, "grad_norm", 5, "C0", "run", geometric=True)
    assert np.isfinite(ax.get_lines()[-1].get_ydata()).all()
    plt.close(fig)


def test_lr_schedule_draws_a_shared_schedule_once_with_the_legend_off_the_curve(tmp_path):
    metrics = write_metrics(tmp_path, n_points=12)  # every run the same schedule ...
    frame = loss_curves.read_metrics(metrics)
    assert [runs for runs, _ in lr_schedule.schedule_groups(frame, "step")] == [["kgram_mlp", "lstm", "transformer"]]
    for path in metrics["transformer"].values():  # ... but the transformer's, now twice as high
        rows = pd.read_csv(path)
        rows.assign(lr=2 * rows["lr"]).to_csv(path, index=False)
    fig = lr_schedule.figure(metrics, "exp")
    labels = [t.get_text().replace("\u00a0", " ").replace("\n", " ") for t in fig.legends[0].get_texts()]
    assert labels == ["kgram_mlp, lstm (same schedule): peak 0.001, last 0.001", "transformer: peak 0.002, last 0.002"]
    assert len(fig.axes[0].lines) == 2  # one line per schedule, not per run
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    assert not fig.legends[0].get_window_extent(renderer).overlaps(fig.axes[0].get_window_extent(renderer))
    plt.close(fig)


def write_train_config(metrics: dict, run: str, **train) -> None:
    """The summary.json training writes beside a run's metrics.csv, its config's train section set to `train`."""
    for path in metrics[run].values():
        summary = {"model": run, "provenance": {"stage": "train", "config": {"train": train}}}
        Path(path).with_name("summary.json").write_text(json.dumps(summary))


def test_lr_schedule_draws_a_muon_runs_muon_rate_as_a_line_of_its_own(tmp_path):
    """A Muon run's embeddings, head and norms train at the lr column's AdamW rate, which it shares with the AdamW
    runs of the same schedule; its hidden matrices' Muon rate (the same shape, scaled to muon_lr) is a line of its
    own in the run's colour, so that neither hides under another run's line."""
    metrics = write_metrics(tmp_path, n_points=12)  # every run the same lr column ...
    write_train_config(metrics, "kgram_mlp", optimizer="adamw", lr=1e-3, muon_lr=0.02)
    write_train_config(metrics, "lstm", optimizer="adamw", lr=1e-3, muon_lr=0.02)
    write_train_config(metrics, "transformer", optimizer="muon", lr=1e-3, muon_lr=0.01)  # ... but Muon here
    fig = lr_schedule.figure(metrics, "exp")
    labels = [t.get_text().replace("\u00a0", " ").replace("\n", " ") for t in fig.legends[0].get_texts()]
    assert labels == ["kgram_mlp, lstm, transformer (same schedule): AdamW peak 0.001, last 0.001",
                      "transformer's hidden matrices: Muon peak 0.01, last 0.01"]
    adamw, muon = fig.axes[0].lines
    assert muon.get_ydata() == pytest.approx(10 * adamw.get_ydata())  # muon_lr / lr = 10, the same shape
    assert muon.get_color() == model_styles(list(metrics))["transformer"]["color"]
    assert fig.axes[0].get_ylabel() == "learning rate"
    assert fig.legends[0].get_title().get_text() == ""  # every optimizer known: no note on what the line is
    plt.close(fig)


def test_lr_schedule_record_hashes_the_summaries_it_reads(tmp_path):
    """The figure reads each run's optimizer from the summary.json beside its metrics.csv: `picollm figure` hashes
    those files in its provenance record with its declared inputs."""
    from picollm.cli import main
    from picollm.io import sha256_file

    metrics = write_metrics(tmp_path, n_points=12)
    write_train_config(metrics, "transformer", optimizer="muon", lr=1e-3, muon_lr=0.01)
    out, record = tmp_path / "results" / "exp" / "figures" / "lr_schedule.png", tmp_path / "lr.json"
    main(["figure", "lr_schedule", "--config", json.dumps({"experiment": "exp"}), "--inputs", json.dumps(metrics),
          "--out", str(out), "--provenance", str(record)])
    inputs = json.loads(record.read_text())["inputs"]
    summaries = {Path(p).with_name("summary.json") for p in metrics["transformer"].values()}
    assert {str(s): sha256_file(s) for s in summaries}.items() <= inputs.items()
    metrics_files = {p for seeds in metrics.values() for p in seeds.values()}
    assert set(inputs) == metrics_files | {str(s) for s in summaries}  # the other runs have no summary


def test_p_sweep_puts_greedy_one_slot_left_of_the_p_values(tmp_path):
    rows = [{"experiment": "exp", "run": m, "seed": seed, "model": m, "decoding": d, "p": p, "samples": 2,
             "distinct_1": 0.5 + seed / 10, "distinct_2": 0.6, "distinct_3": 0.7, "rep_4": 0.1, "mean_loglik": -1.0,
             "mean_tokens": 10, "train_tokens": 512}
            for m in ["a", "b.d_model=8"] for seed in [1, 2, 3]
            for d, p in [("greedy", np.nan), ("p=0.8", 0.8), ("p=0.95", 0.95), ("p=1", 1.0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    p_sweep.plot(tmp_path / "s.csv", tmp_path / "p.png", "exp")
    assert_png_and_svg(tmp_path / "p.png")
    means = p_sweep.seed_means(pd.read_csv(tmp_path / "s.csv"))
    assert len(means) == 8 and set(means["seeds"]) == {3}
    assert means["distinct_1"].iloc[0] == pytest.approx(0.7) and means["distinct_1_std"].iloc[0] == pytest.approx(0.1)
    fig, ax = plt.subplots()
    p_sweep.slot_axis(ax, [0.8, 0.95, 1.0])
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["greedy", "0.8", "0.95", "1"]
    plt.close(fig)


def p_sweep_rows(english: bool) -> list[dict]:
    """Two runs and the reference rows over three seeds, every measure of the figure."""
    def measures(seed, base):
        return {"distinct_1": base + seed / 10, "distinct_2": base, "distinct_3": base, "rep_4": 1 - base,
                "english_word_share": base if english else np.nan, "ended_share": base, "mean_tokens": 40 * base,
                "mean_words": 10 * base}
    rows = [{"experiment": "exp", "run": m, "seed": seed, "model": m, "decoding": d, "p": p, "samples": 4,
             "mean_loglik": -1.0, "train_tokens": 512, **measures(seed, 0.4 + (p if p == p else 0) / 4)}
            for m in ["a", "b.d_model=8"] for seed in [1, 2, 3]
            for d, p in [("greedy", np.nan), ("p=0.8", 0.8), ("p=0.95", 0.95), ("p=1", 1.0)]]
    return rows + [{"experiment": "exp", "run": "reference", "seed": seed, "model": "reference",
                    "decoding": "reference", "p": np.nan, "samples": 4, "mean_loglik": np.nan,
                    "train_tokens": np.nan, **measures(seed, 0.75)} for seed in [1, 2, 3]]


@pytest.mark.parametrize("english", [True, False])
def test_p_sweep_draws_the_real_stories_as_a_reference_line(tmp_path, english):
    pd.DataFrame(p_sweep_rows(english)).to_csv(tmp_path / "s.csv", index=False)
    p_sweep.plot(tmp_path / "s.csv", tmp_path / "p.png", "exp")
    assert_png_and_svg(tmp_path / "p.png")
    means = p_sweep.seed_means(pd.read_csv(tmp_path / "s.csv"))
    reference = means[means["decoding"] == "reference"].iloc[0]
    assert reference["distinct_1"] == pytest.approx(0.95) and reference["distinct_1_std"] == pytest.approx(0.1)
    fig = p_sweep.figure(tmp_path / "s.csv", "exp")
    panels = dict(zip([c for c, _ in p_sweep.PANELS], fig.axes))
    dashed = [line for line in panels["distinct_2"].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(0.75)  # across the panel
    assert not [line for line in panels["mean_loglik"].lines if line.get_linestyle() == "--"]  # no model: none
    assert [t.get_text() for t in fig.legends[0].get_texts()][2:] == [
        "greedy", "validation text (4 excerpts, ± 1 std)"]
    notes = [t.get_text() for t in panels["english_word_share"].texts]
    assert notes == ([] if english else [p_sweep.NOT_ENGLISH])
    assert p_sweep.NO_ENDS_WHY not in fig._suptitle.get_text()  # the reference measured every panel it can
    plt.close(fig)


def test_p_sweep_says_why_a_text_without_story_ends_has_no_reference_for_lengths_and_endings(tmp_path):
    """The reference leaves its lengths and endings empty for a validation text that marks no story ends
    (sample_metrics.UNENDED): those panels have no dashed line, their titles say "(no reference)" and the figure's
    title why; the other panels keep theirs."""
    rows = p_sweep_rows(True)
    for row in rows:
        if row["decoding"] == "reference":
            row.update(ended_share=np.nan, mean_tokens=np.nan, mean_words=np.nan)
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    fig = p_sweep.figure(tmp_path / "s.csv", "exp")
    panels = dict(zip([c for c, _ in p_sweep.PANELS], fig.axes))
    for column in ("ended_share", "mean_tokens", "mean_words"):
        assert not [line for line in panels[column].lines if line.get_linestyle() == "--"], column
        assert panels[column].get_title().endswith(p_sweep.NO_ENDS), column
    assert [line for line in panels["distinct_2"].lines if line.get_linestyle() == "--"]
    assert not panels["mean_loglik"].get_title().endswith(p_sweep.NO_ENDS)  # never a reference: no note
    assert fig._suptitle.get_text().endswith(p_sweep.NO_ENDS_WHY)
    plt.close(fig)


def test_p_sweep_of_one_seed_without_run_column(tmp_path):
    """An eval/sampling.csv of one seed per model, without a run column: no error bars."""
    rows = [{"model": m, "decoding": d, "p": p, "samples": 2, "distinct_1": 0.5, "distinct_2": 0.6,
             "distinct_3": 0.7, "rep_4": 0.1, "mean_loglik": -1.0, "mean_tokens": 10}
            for m in ["a", "b"] for d, p in [("greedy", np.nan), ("p=1", 1.0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    p_sweep.plot(tmp_path / "s.csv", tmp_path / "p.png", "exp")
    assert_png_and_svg(tmp_path / "p.png")


def write_sweep_evals(tmp_path, seeds=(1, 2, 3), extra_keys=()) -> dict:
    """{run: {seed: eval json}}: three model types, a 2-point d_model sweep of the Transformer and a 2-point
    learning-rate sweep of the LSTM (which spans more than 10x, so a log axis), bpb a little noisy per seed."""
    runs = {"kgram_mlp": ("kgram_mlp", None, 2.4, 4000), "lstm": ("lstm", None, 1.9, 6000),
            "transformer": ("transformer", None, 1.7, 8000),
            "transformer.d_model=64": ("transformer", ("transformer", "d_model", 64, 32), 1.55, 25000),
            "transformer.d_model=16": ("transformer", ("transformer", "d_model", 16, 32), 1.95, 2500),
            "lstm.train.lr=0.03": ("lstm", ("lstm", "train.lr", 0.03, None), 2.0, 6000),
            "lstm.train.lr=0.0003": ("lstm", ("lstm", "train.lr", 0.0003, None), 2.2, 6000)}
    for key, value in extra_keys:  # more swept keys, for a two-row layout
        runs[f"lstm.{key}={value}"] = ("lstm", ("lstm", key, value, None), 2.1, 6000)
    paths = {}
    for run, (kind, point, bpb, params) in runs.items():
        for seed in seeds:
            ev = {"model": run, "run": run, "seed": seed, "type": kind, "params": params, "params_embedding": 100,
                  "params_head": 100, "params_core": params - 200, "head_tied": False, "tokens_seen": 5120,
                  "bpb": bpb + seed / 100,
                  "sweep": None if point is None else dict(zip(["model", "key", "value", "base_value"], point))}
            if run == "lstm":
                ev["config"] = {"type": "lstm", "train": {"lr": 0.003}}
            path = tmp_path / "eval" / run / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ev))
            paths.setdefault(run, {})[str(seed)] = str(path)
    return paths


@pytest.mark.parametrize("options", [{}, {"x": "params"}, {"seeds": (1,)},
                                     {"extra_keys": [("hidden_dim", 64), ("cell", "gru")]}])
def test_sweep_figure(tmp_path, options):
    evals = write_sweep_evals(tmp_path, seeds=options.pop("seeds", (1, 2, 3)), extra_keys=options.pop("extra_keys", ()))
    sweep.plot(evals, tmp_path / "sweep.png", "exp", **options)
    assert_png_and_svg(tmp_path / "sweep.png")


def test_sweep_of_runs_on_one_flop_budget_draws_them_by_size(tmp_path, monkeypatch):
    """Under train.flops every run's compute is the same up to step rounding: a compute axis would crowd its
    ticks and draw a trend through rounding, so the every-run panel is against parameters, and says why."""
    evals = write_sweep_evals(tmp_path)
    for by_seed in evals.values():
        for i, path in enumerate(by_seed.values()):
            ev = json.loads(Path(path).read_text())
            Path(path).write_text(json.dumps({**ev, "train_flops": 5e11 * (1 + i / 100)}))
    drawn, save = [], sweep.save
    monkeypatch.setattr(sweep, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    sweep.plot(evals, tmp_path / "sweep.png", "exp")
    panel = [ax for ax in drawn[0].axes if ax.get_visible()][-1]
    assert panel.get_xlabel() == "parameters" and "one FLOP budget" in panel.get_title()
    assert not sweep.one_budget(sweep.read_runs(write_sweep_evals(tmp_path / "spread")))


def test_sweep_reads_runs_and_finds_base_values(tmp_path):
    runs = sweep.read_runs(write_sweep_evals(tmp_path)).set_index("run", drop=False)
    lstm = runs.loc["lstm"]
    assert lstm["n"] == 3 and lstm["mean"] == pytest.approx(1.92) and lstm["std"] == pytest.approx(0.01)
    assert lstm["ci_high"] == pytest.approx(1.92 + 4.302653 * 0.01 / np.sqrt(3))
    assert runs.loc["transformer", "train_flops"] == 6 * (8000 - 200 + 100) * 5120
    assert runs.loc["lstm.train.lr=0.03", "base"] == "lstm" and runs.loc["lstm.train.lr=0.03", "key"] == "train.lr"
    assert sweep.base_value(runs, "transformer", "d_model") == 32  # carried by the sweep points
    assert sweep.base_value(runs, "lstm", "train.lr") == 0.003  # read from the base run's config
    assert sweep.base_value(runs, "lstm", "hidden_dim") is None


def test_sample_figures_show_newlines(tmp_path):
    write_samples_csv(tmp_path / "samples.csv")
    assert sample_comparison.cell_text("\n\n\nThe", width=40, max_chars=100) == "⏎⏎⏎The"
    assert sample_comparison.cell_text("\n" * 57 + "The", width=40, max_chars=100) == "⏎×57 The"
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "sample_comparison.png", "exp")
    sample_slide.plot(tmp_path / "samples.csv", tmp_path / "sample_slide.png", "exp", prompt="Lily")
    for name in ["sample_comparison", "sample_slide"]:
        assert_png_and_svg(tmp_path / f"{name}.png")
        assert "⏎ newline" in (tmp_path / f"{name}.svg").read_text()
        assert "not UTF-8" not in (tmp_path / f"{name}.svg").read_text()  # no such sign here, so no key to it


def test_sample_comparison_counts_a_samples_newlines_in_words(tmp_path):
    write_samples_csv(tmp_path / "samples.csv", text={"kgram_mlp": "The end.\nNext"})  # the lstm's: 57
    first = sample_comparison.read_first_samples(tmp_path / "samples.csv")
    cells = sample_comparison.sample_cells(first, ["kgram_mlp", "lstm", "transformer"], 40, 240)
    assert [cell.split("\n")[-1] for cell in cells[0][1:3]] == ["[1 newline]", "[57 newlines]"]
    assert "newline" not in cells[0][3]  # none in the transformer's sample: nothing said


def test_sample_figures_key_the_replacement_sign_where_a_sample_holds_one(tmp_path):
    """A model's bytes that do not decode show as �; the figure's key says what that is."""
    write_samples_csv(tmp_path / "samples.csv", text={"lstm": " 16 32 64 12\ufffd6"})
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "sample_comparison.png", "exp")
    sample_slide.plot(tmp_path / "samples.csv", tmp_path / "sample_slide.png", "exp", prompt="Lily")
    for name in ["sample_comparison", "sample_slide"]:
        assert "\ufffd bytes that are not UTF-8" in (tmp_path / f"{name}.svg").read_text()
        assert png_size(tmp_path / f"{name}.png")[0] <= 1.02 * SLIDE_PX  # the longer key does not widen it


def test_run_labels_put_the_swept_setting_under_the_model():
    assert run_label("transformer.d_model=64") == "transformer\nd_model=64"
    assert run_label("lstm.train.lr=0.03") == "lstm\ntrain.lr=0.03"
    assert run_label("kgram_mlp") == "kgram_mlp"


def test_sample_slide_names_runs_whole_without_overlap_or_zero_columns(tmp_path):
    runs = ["kgram_mlp", "transformer", "transformer.d_model=128", "lstm.train.lr=0.0003"]
    write_samples_csv(tmp_path / "samples.csv", runs, text={"lstm.train.lr=0.0003": "", "kgram_mlp": " 1 2 3"})
    first = sample_comparison.read_first_samples(tmp_path / "samples.csv")
    rows = first[first["prompt"] == "Lily"]
    assert sample_slide.run_cells(rows["model"])[4:12] == ["transformer", "", "", "", "transformer", "d_model=128", "",
                                                          ""]
    assert sample_slide.run_cells(pd.Series(["a.b=1", "c"])) == ["a\nb=1", "c"]  # one row: both lines in it
    assert sample_slide.columns(rows) == ["run", "decoding", sample_slide.SAMPLE]  # no column of zeros
    fig, table = sample_slide.figure(rows, "Lily", "exp")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pad = sample_comparison.CELL_PAD * fig.dpi / 2  # pixels: at least half the padding asked for
    for (r, c), cell in table.get_celld().items():  # every short column's text inside its cell, off its edges
        if c < 2:
            text, box = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
            assert box.x0 + pad <= text.x0 and text.x1 <= box.x1, cell.get_text().get_text()
    ended = [cell for cell in table.get_celld().values() if cell.get_text().get_text() == ENDED_AT_ONCE]
    assert len(ended) == 4 and ended[0].get_text().get_style() == "italic"  # the lr sweep run, every decoding
    plt.close(fig)
    sample_slide.plot(tmp_path / "samples.csv", tmp_path / "sample_slide.png", "exp", prompt="Lily")
    width, _ = png_size(tmp_path / "sample_slide.png")
    assert width <= 1.02 * SLIDE_PX and 1.6 < aspect(tmp_path / "sample_slide.png") < 2.0  # a 16:9 slide
    write_samples_csv(tmp_path / "newlines.csv")
    first = sample_comparison.read_first_samples(tmp_path / "newlines.csv")
    assert "newlines" in sample_slide.columns(first)  # the lstm's samples hold 57


def test_sample_comparison_is_a_slide_wide_whatever_the_runs(tmp_path):
    """4,693 px wide with five runs before: too small to read once a page or slide scales it down."""
    runs = ["kgram_mlp", "lstm", "transformer", "transformer.d_model=32", "transformer.d_model=128"]
    write_samples_csv(tmp_path / "samples.csv", runs, text={"lstm": ""})
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "sample_comparison.png", "exp")
    width, height = png_size(tmp_path / "sample_comparison.png")
    assert width <= 1.02 * SLIDE_PX and height > 0
    assert sample_comparison.cell_text("", width=40, max_chars=100) == ENDED_AT_ONCE


def fake_maps(n_tokens: int, layers: int = 2, heads: int = 4, seed: int = 0) -> list:
    """Causal attention weights: `layers` arrays of (heads, T, T), each row summing to 1."""
    rng = np.random.default_rng(seed)
    weights = np.tril(rng.random((layers, heads, n_tokens, n_tokens)))
    return list(weights / weights.sum(-1, keepdims=True))


def test_attention_blocks_fill_a_landscape_grid_without_label_collisions():
    assert attention_heads.block_grid(1, 2, 4) == (1, 1)
    assert attention_heads.block_grid(3, 2, 4) == (2, 2)  # 4 x 8 panels, not 6 x 4 (portrait) or 2 x 12
    assert attention_heads.block_grid(2, 6, 6) == (1, 2)
    assert attention_heads.block_grid(2, 2, 4) == (1, 2)  # wide rather than square: landscape
    labels = ["<eot>", *("·" if c == " " else c for c in "Once upon a time, there")]
    drawn = {run: (labels, fake_maps(len(labels), seed=i))
             for i, run in enumerate(["transformer", "transformer.d_model=128", "transformer.d_model=32"])}
    fig = attention_heads.draw(drawn, attention_heads.PANEL, "title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not overlapping(fig.findobj(matplotlib.text.Text), renderer)  # every label, title and token
    bottom = [ax for ax in fig.axes if ax.get_xticklabels() and ax.get_xticklabels()[0].get_text()]
    assert {t.get_rotation() for ax in bottom for t in ax.get_xticklabels() if t.get_text() == "·"} == {0}
    plt.close(fig)
    short = {run: (labels[:8], [m[:, :8, :8] for m in maps]) for run, (labels, maps) in drawn.items()}
    panel = attention_heads.grid_panel(3, 2, 4, n_labels=8)  # a short prompt: the panels shrink to fit a slide
    assert panel < attention_heads.PANEL and attention_heads.tick_fontsize(panel, 8) >= attention_heads.READABLE_PT
    fig = attention_heads.draw(short, panel, "title")
    fig.canvas.draw()
    assert not overlapping(fig.findobj(matplotlib.text.Text), fig.canvas.get_renderer())
    plt.close(fig)
    assert attention_heads.grid_panel(3, 2, 4, n_labels=24) == attention_heads.PANEL  # else its labels would not fit


def test_attention_figure_from_a_checkpoint(tmp_path):
    cfg = {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 2}
    model = build_model(cfg, 257, 32)
    torch.save(checkpoint_dict(model, cfg, 257, 32, tokenizer="byte", summary={"tokens_seen": 512}),
               tmp_path / "model.pt")
    attention_heads.plot({"t": tmp_path / "model.pt"}, tmp_path / "attention_heads.png", "exp", prompt="a b\nc")
    assert_png_and_svg(tmp_path / "attention_heads.png")
    tokenizer = get_tokenizer("byte")
    labels = [attention_heads.token_label(tokenizer, i) for i in [tokenizer.eot_token, *b"a \n\t"]]
    assert labels == ["<eot>", "a", "·", "⏎", "→"]  # a space as a middle dot: a rotated ␣ read as a stray glyph


def test_attention_figures_are_landscape_and_one_per_run(tmp_path):
    """Every run's figure, and the one of all runs together, is landscape (about 16:9), not portrait."""
    models = {}
    for name, d_model in [("transformer", 16), ("transformer.d_model=8", 8), ("transformer.d_model=32", 32)]:
        cfg = {"type": "transformer", "d_model": d_model, "n_heads": 4, "n_layers": 2}
        torch.save(checkpoint_dict(build_model(cfg, 257, 32), cfg, 257, 32, tokenizer="byte",
                                   summary={"tokens_seen": 512}), tmp_path / f"{name}.pt")
        models[name] = tmp_path / f"{name}.pt"
    out = tmp_path / "figures" / "attention_heads.png"
    out.parent.mkdir()
    attention_heads.plot(models, out, "exp", prompt="0 1 1 2 3")
    assert 1.5 < aspect(out) < 2.2 and png_size(out)[0] <= 1.1 * SLIDE_PX  # a short prompt's runs fit a slide
    for name in models:
        per_run = tmp_path / "figures" / "attention_heads" / f"{name}.png"
        assert_png_and_svg(per_run)
        assert 1.5 < aspect(per_run) < 2.2 and png_size(per_run)[0] <= 1.1 * SLIDE_PX


def test_same_figure_same_bytes(tmp_path):
    """No timestamp in either file, not even the job's (its provenance record keeps it): rebuilding from the same
    data must not change the outputs."""
    for name, when in [("a", "2026-01-01T00:00:00+00:00"), ("b", "2026-01-02T00:00:00+00:00")]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save(fig, tmp_path / f"{name}.png", "exp", {"inputs": ["x"], "created_utc": when})
    for suffix in [".png", ".svg"]:
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
    assert "<title>exp</title>" in (tmp_path / "a.svg").read_text()
    assert "experiment: exp</text>" in (tmp_path / "a.svg").read_text()  # text, not glyph outlines: editable


def test_a_figure_with_text_and_faint_lines_is_the_same_bytes_when_drawn_again(tmp_path):
    metrics = write_metrics(tmp_path, seeds=(1, 2, 3))
    for name in "ab":
        loss_curves.plot(metrics, tmp_path / f"{name}.png", "exp")
    for suffix in [".png", ".svg"]:
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
    assert (tmp_path / "a.svg").read_text().count("<text") > 10


def test_the_experiment_stamp_keeps_clear_of_a_title_at_the_top(tmp_path):
    """The stamp sat on a title that reached the right edge ("training seed 1337"): it keeps STAMP_GAP above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig, ax = plt.subplots(figsize=SLIDE, layout="constrained")
    title = ax.set_title("A long title that runs from the left edge of the slide right to its right edge " * 2)
    save(fig, tmp_path / "t.png", "tinystories-local")
    canvas = FigureCanvasAgg(fig)  # saved and closed: laid out again on a canvas of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    stamp = fig.texts[-1]
    assert stamp.get_text() == "experiment: tinystories-local"
    gap = stamp.get_window_extent(renderer).y0 - title.get_window_extent(renderer).y1
    assert gap >= 0.9 * STAMP_GAP * fig.dpi / 72  # points, in pixels
    assert png_size(tmp_path / "t.png")[1] <= SLIDE[1] * DPI * 1.05


def test_sweep_shades_read_apart_from_their_model_and_from_each_other():
    """A two-point sweep's dark shade was its model's colour with 25% black: at slide size, hard to tell from the
    model itself (transformer and transformer.d_model=128)."""
    def apart(a, b):
        return np.linalg.norm(np.subtract(a, b))
    for color in PALETTE[:3]:
        two = shades(color, 2)
        assert min(apart(color, shade) for shade in two) >= 0.3 and apart(*two) >= 0.3
        four = shades(color, 4)
        family = four[:2] + [color] + four[2:]  # light to dark, the model's colour in the middle
        assert min(apart(a, b) for a, b in zip(family, family[1:])) >= 0.1
        lightness = [sum(c) for c in family]
        assert lightness == sorted(lightness, reverse=True)


def test_the_loss_legend_keeps_a_model_and_its_sweep_points_in_one_column():
    runs = ["lstm", "transformer", "lstm.hidden_dim=24", "lstm.hidden_dim=32", "transformer.d_model=24"]
    assert families(runs) == [["lstm", "lstm.hidden_dim=24", "lstm.hidden_dim=32"],
                              ["transformer", "transformer.d_model=24"]]
    key = ["train", "validation"]
    assert loss_curves.legend_columns([["k"], ["l"], ["t", "t.32", "t.128"], key], 3) == [
        ["k", "l"], ["t", "t.32", "t.128"], key]
    assert loss_curves.legend_columns([["l", "l.24", "l.32"], ["t", "t.24", "t.32"], key], 3) == [
        ["l", "l.24", "l.32"], ["t", "t.24", "t.32"], key]
    big = [f"t.{i}" for i in range(9)]  # a family taller than three columns allow: split, in order
    assert loss_curves.legend_columns([big, key], 3) == [big[:4], big[4:8], big[8:] + key]


def test_a_run_has_one_colour_whatever_order_a_figure_reads_its_runs_in():
    """{run: path} inputs arrive as sorted JSON, tables in the study's order: both draw a run alike."""
    from picollm.tables import run_order
    study = ["transformer", "lstm", "kgram_mlp", "transformer.d_model=32", "transformer.d_model=128"]
    assert run_order(study) == ["kgram_mlp", "lstm", "transformer", "transformer.d_model=32",
                                "transformer.d_model=128"]
    assert model_styles(study) == model_styles(sorted(study)) == model_styles(reversed(study))
    assert list(model_styles(sorted(study))) == run_order(study)
    # a figure of model types alone colours each type as the model of that name
    types = model_styles(["transformer", "lstm", "kgram_mlp"])
    assert all(types[t] == model_styles(study)[t] for t in types)


def test_the_model_types_keep_their_colours_when_a_model_joins_or_a_figure_shows_some_runs():
    """A GRU added to a study, or a figure of two runs, repaints none of the built-in model types nor their sweep
    points, which are shades of their model's colour."""
    study = ["kgram_mlp", "lstm", "transformer", "transformer.d_model=32", "transformer.d_model=128"]
    before, after = model_styles(study), model_styles(study + ["gru"])
    assert all(after[run] == before[run] for run in study)
    hue = lambda run: matplotlib.colors.rgb_to_hsv(before[run]["color"])  # noqa: E731
    light, dark = hue("transformer.d_model=32"), hue("transformer.d_model=128")
    assert light[0] == pytest.approx(hue("transformer")[0], abs=0.01) == dark[0]
    assert light[2] > dark[2] and len({before[run]["color"] for run in study}) == len(study)
    assert model_styles(["lstm", "transformer"]) == {run: before[run] for run in ["lstm", "transformer"]}
    # no two runs of a figure share both colour and marker, also past the palette's end
    many = study + [f"run{i}" for i in range(30)]
    assert len({(tuple(s["color"]), s["marker"]) for s in model_styles(many).values()}) == len(many)
    # the first nine runs each have a colour of their own (tab10 less grey, the figures' reference colour)
    assert len({tuple(s["color"]) for s in model_styles(many[:9]).values()}) == 9


# two `$`: matplotlib reads what lies between as math, and `\x` in it is a parse error
DOLLARS = "It cost $5 \\x18 and $10."


def test_model_and_prompt_text_with_dollar_signs_is_drawn_as_written(tmp_path):
    """An untrained byte model writes `$` at random, and a story may say "$5 ... $10": every figure that draws a
    model's text or a prompt draws it as written, never as matplotlib's math (which fails on `\\x`)."""
    write_samples_csv(tmp_path / "samples.csv", text={"lstm": DOLLARS})
    frame = pd.read_csv(tmp_path / "samples.csv")
    prompt = "Lily paid $3 \\x18 for $4"
    frame.loc[frame["prompt"] == "Lily", "prompt"] = prompt
    frame.to_csv(tmp_path / "samples.csv", index=False)
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "sample_comparison.png", "exp")
    sample_slide.plot(tmp_path / "samples.csv", tmp_path / "sample_slide.png", "exp", prompt=prompt)
    pd.DataFrame([{"run": "lstm", "step": step, "tokens_seen": 64 * step, "val_loss": 3.0, "prompt": "A $ b \\x $",
                   "shown": DOLLARS} for step in (0, 10)]).to_csv(tmp_path / "snapshots.csv", index=False)
    snapshots.plot(tmp_path / "snapshots.csv", tmp_path / "snapshots.png", "exp")
    cfg = {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}
    torch.save(checkpoint_dict(build_model(cfg, 257, 32), cfg, 257, 32, tokenizer="byte",
                               summary={"tokens_seen": 512}), tmp_path / "model.pt")
    attention_heads.plot({"t": tmp_path / "model.pt"}, tmp_path / "attention_heads.png", "exp", prompt="a $b \\x $c")
    for name in ["sample_comparison", "sample_slide", "snapshots", "attention_heads"]:
        svg = (tmp_path / f"{name}.svg").read_text()
        assert "$" in svg and "\\x" in svg, name  # the text itself, dollars and all
