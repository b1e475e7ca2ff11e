"""Training snapshots as a table and a figure, and the layer-health figure, from a real tiny training run."""
import pandas as pd
import pytest
from PIL import Image

from picollm.data.sources import three_seqs, write_documents
from picollm.data.tokenizer import get_tokenizer
from picollm.data.tokens import tokenize
from picollm.models import load_model
from picollm.plots import DPI, SLIDE
from picollm.plots import layer_health as layer_health_figure
from picollm.plots import snapshots as snapshots_figure
from picollm.config import SamplingConfig
from picollm.sampling import sample_records
from picollm.snapshots import shown, snapshot_rows, snapshot_table
from picollm.train import train

TRAIN = {"max_steps": 40, "batch_size": 8, "lr": 0.003, "min_lr_ratio": 0.1, "warmup_steps": 5, "weight_decay": 0.1,
         "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "eval_interval": 20, "eval_batches": 4,
         "checkpoint_interval": 10, "log_interval": 5, "threads": 1, "snapshot_steps": [0, 15, 40]}
MODELS = {"transformer": {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2},
          "lstm": {"type": "lstm", "embed_dim": 16, "hidden_dim": 32},
          "kgram_mlp": {"type": "kgram_mlp", "k": 3, "embed_dim": 8, "hidden_dim": 32, "num_inner_layers": 1}}
STEPS = TRAIN["snapshot_steps"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{run: its output folder}: one run of each model type, each with snapshots at STEPS."""
    root = tmp_path_factory.mktemp("snapshots")
    lines = list(three_seqs(1500, 8, seed=0))
    write_documents(root / "raw/s/train.txt", lines[100:])
    write_documents(root / "raw/s/val.txt", lines[:100])
    tokenize("byte", {"s": {"train": root / "raw/s/train.txt", "val": root / "raw/s/val.txt"}}, root / "tok", 1)
    for name, model_cfg in MODELS.items():
        train(name, model_cfg, TRAIN, tokens_dir=root / "tok", out_dir=root / name, seed=3, block_size=32)
    return {name: root / name for name in MODELS}


def paths(folder):
    return [folder / "snapshots" / f"step{s}.pt" for s in reversed(STEPS)]  # any order in, step order out


def test_snapshot_rows_continue_greedily_as_the_sample_stage_does(runs):
    rows = snapshot_rows(paths(runs["transformer"]), "1 2 3", 12)
    assert [r["step"] for r in rows] == STEPS and [r["tokens_seen"] for r in rows] == [s * 8 * 32 for s in STEPS]
    metrics = pd.read_csv(runs["transformer"] / "metrics.csv").set_index("step")
    assert [r["val_loss"] for r in rows] == pytest.approx(list(metrics.loc[STEPS, "val_loss"]))
    assert all(isinstance(r["text"], str) and 0 <= r["new_tokens"] <= 12 for r in rows)
    model = load_model(runs["transformer"] / "model.pt")  # the last snapshot is the final model
    cfg = SamplingConfig(prompts=["1 2 3"], p_values=[1.0], num_samples=1, max_new_tokens=12, stop_at_eot=True)
    greedy = sample_records(model, get_tokenizer("byte"), "transformer", cfg, seed=0)[0]
    assert rows[-1]["text"] == greedy["text"]


def test_snapshot_table(runs, tmp_path):
    inputs = {name: paths(folder) for name, folder in runs.items()}
    snapshot_table(inputs, tmp_path / "snapshots.csv", tmp_path / "snapshots.md", "tiny", "1 2 3", 12)
    frame = pd.read_csv(tmp_path / "snapshots.csv", keep_default_na=False)
    assert list(frame.columns) == ["run", "train_seed", "step", "tokens_seen", "val_loss", "prompt", "new_tokens", "newlines",
                                   "shown", "text"]
    # runs in the order every figure draws them (plots.run_order), whatever order the inputs name them in
    assert list(zip(frame["run"], frame["step"])) == [(r, s) for r in sorted(MODELS) for s in STEPS]
    md = (tmp_path / "snapshots.md").read_text()
    assert md.startswith("# Snapshots: experiment `tiny`") and all(f"## {name}" in md for name in MODELS)


def test_control_characters_and_whitespace_are_shown():
    assert shown("a\x08b") == "a\\x08b" and shown("\x00" * 9) == "\\x00×9"
    assert shown("\n\n1  2") == "⏎⏎1␣␣2"


def test_figures(runs, tmp_path):
    inputs = {name: paths(folder) for name, folder in runs.items()}
    snapshot_table(inputs, tmp_path / "snapshots.csv", tmp_path / "snapshots.md", "tiny", "1 2 3", 12)
    snapshots_figure.plot(tmp_path / "snapshots.csv", tmp_path / "snapshots.png", "tiny")
    # the LSTM's file is the header only: drawn without it
    layer_health_figure.plot({name: folder / "layer_health.csv" for name, folder in runs.items()},
                             tmp_path / "layer_health.png", "tiny")
    layer_health_figure.plot({"lstm": runs["lstm"] / "layer_health.csv"}, tmp_path / "none.png", "tiny")
    health = runs["transformer"] / "layer_health.csv"
    layer_health_figure.plot({"transformer": {1: health, 2: health}}, tmp_path / "seeds.png", "tiny")
    for name in ("snapshots", "layer_health", "none", "seeds"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 1000
        # a slide wide: few rows draw a large font, and no header or title runs past the table
        assert Image.open(tmp_path / f"{name}.png").width <= SLIDE[0] * DPI * 1.02, name


def test_the_signs_line_keys_every_sign_the_figure_draws():
    from picollm.plots.sample_comparison import cell_text
    cells = [cell_text(shown(text), 60, 40) for text in ["a" + "\n" * 32 + "b", "\x00" * 9, "word " * 20, "\ufffd"]]
    assert cells[:2] == ["a⏎×32 b", "\\x00×9"] and cells[2].endswith("…")
    key = snapshots_figure.signs(cells, width=60).replace("\u00a0", " ")
    assert key.startswith("signs: ⏎ newline, ␣ extra space")
    for entry in ["\ufffd bytes that are not UTF-8", "\\xNN control character", "×N N times in a row", "… cut"]:
        assert entry in key.replace("\n", " ")
    assert all(len(line) <= 60 for line in key.split("\n")) and "\n" in key  # wrapped between entries
    assert snapshots_figure.signs(["plain text"]) == "signs: ⏎\u00a0newline, ␣\u00a0extra\u00a0space"


def test_an_empty_continuation_says_the_model_ended_at_once():
    from picollm.snapshots import shown
    from picollm.tables import ENDED_AT_ONCE, cell
    assert cell("", shown) == ENDED_AT_ONCE and cell("a|b", shown) == "a\\|b"
