"""Figures: each writes a PNG and an SVG beside it from files on disk; smoothing, zoom and labels behave."""
import numpy as np
import pandas as pd
import pytest
import torch

from picollm.data.tokenizer import get_tokenizer
from picollm.models import build_model, checkpoint_dict
from picollm.plots import (attention_heads, grad_norms, loss_curves, lr_schedule, p_sweep, plt, raw_and_smoothed,
                           sample_comparison, sample_slide, save, smoothing_window)


def assert_png_and_svg(png):
    assert png.stat().st_size > 1000
    assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def write_metrics(tmp_path, n_points: int = 40) -> dict:
    """{model: metrics.csv} with the columns training writes; the loss starts high (ln V) and drops."""
    paths = {}
    for i, name in enumerate(["kgram_mlp", "lstm", "transformer"]):
        step = np.arange(n_points) * 10
        frame = pd.DataFrame({"step": step, "tokens_seen": step * 512,
                              "train_loss": 2 + 8 * np.exp(-step / 50) + i / 10,
                              "val_loss": np.where(step % 100 == 0, 2.2 + 8 * np.exp(-step / 50), np.nan),
                              "lr": 1e-3 * np.minimum(1, (step + 1) / 50), "grad_norm": 1 + np.exp(-step / 30),
                              "act_rms": 0.5 + step / 1000, "elapsed_s": step / 10})
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def write_samples_csv(path) -> None:
    rows = [{"model": m, "train_tokens": 512, "prompt": prompt, "decoding": d, "sample": 0, "seed": 1,
             "new_tokens": 60, "text": "\n" * 57 + "The" if m == "lstm" else " there was a girl. " * 8}
            for m in ["kgram_mlp", "lstm", "transformer"] for prompt in ["Once upon a time", "Lily"]
            for d in ["greedy", "p=0.8", "p=1"]]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_smoothing_only_with_enough_points():
    assert smoothing_window(20, 10) == 1  # a 2-point mean is the raw line in all but name
    assert smoothing_window(35, 10) == 3
    assert smoothing_window(1000, 10) == 10
    for n, lines, note in [(20, 1, "every logged step"), (200, 2, "mean of 10")]:
        fig, ax = plt.subplots()
        shown = raw_and_smoothed(ax, pd.Series(range(n)), pd.Series(np.random.rand(n)), 10, "C0", "m")
        assert len(ax.lines) == lines and note in shown
        plt.close(fig)


@pytest.mark.parametrize("options", [{}, {"ylim": "auto", "logy": True}])
def test_loss_curves(tmp_path, options):
    loss_curves.plot(write_metrics(tmp_path), tmp_path / "loss.png", "exp", **options)
    assert_png_and_svg(tmp_path / "loss.png")


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


def test_p_sweep_puts_greedy_one_slot_left_of_the_p_values(tmp_path):
    rows = [{"model": m, "decoding": d, "p": p, "samples": 2, "distinct_1": 0.5, "distinct_2": 0.6, "distinct_3": 0.7,
             "rep_4": 0.1, "mean_loglik": -1.0, "mean_tokens": 10, "train_tokens": 512}
            for m in ["a", "b"] for d, p in [("greedy", np.nan), ("p=0.8", 0.8), ("p=0.95", 0.95), ("p=1", 1.0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    p_sweep.plot(tmp_path / "s.csv", tmp_path / "p.png", "exp")
    assert_png_and_svg(tmp_path / "p.png")
    fig, ax = plt.subplots()
    p_sweep.slot_axis(ax, [0.8, 0.95, 1.0])
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["greedy", "0.8", "0.95", "1"]
    plt.close(fig)


def test_sample_figures_show_newlines(tmp_path):
    write_samples_csv(tmp_path / "samples.csv")
    assert sample_comparison.cell_text("\n\n\nThe", width=40, max_chars=100) == "⏎⏎⏎The"
    assert sample_comparison.cell_text("\n" * 57 + "The", width=40, max_chars=100) == "⏎×57 The"
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "sample_comparison.png", "exp")
    sample_slide.plot(tmp_path / "samples.csv", tmp_path / "sample_slide.png", "exp", prompt="Lily")
    for name in ["sample_comparison", "sample_slide"]:
        assert_png_and_svg(tmp_path / f"{name}.png")


def test_attention_figure_from_a_checkpoint(tmp_path):
    cfg = {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 2}
    model = build_model(cfg, 257, 32)
    torch.save(checkpoint_dict(model, cfg, 257, 32, tokenizer="byte", summary={"tokens_seen": 512}),
               tmp_path / "model.pt")
    attention_heads.plot({"t": tmp_path / "model.pt"}, tmp_path / "attention_heads.png", "exp", prompt="a b\nc")
    assert_png_and_svg(tmp_path / "attention_heads.png")
    tokenizer = get_tokenizer("byte")
    labels = [attention_heads.token_label(tokenizer, i) for i in [tokenizer.eot_token, *b"a \n\t"]]
    assert labels == ["<eot>", "a", "␣", "⏎", "→"]


def test_same_figure_same_bytes(tmp_path):
    """No timestamp in either file: rebuilding from the same data must not change the outputs."""
    for name in ["a", "b"]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save(fig, tmp_path / f"{name}.png", "exp", {"inputs": ["x"]})
    for suffix in [".png", ".svg"]:
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
    assert "<title>exp</title>" in (tmp_path / "a.svg").read_text()
