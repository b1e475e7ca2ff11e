"""The config contract: defaults filled from the schema, and one clear line for each kind of mistake."""
import pytest
import yaml

from conftest import ROOT, picollm, tiny_offline_config, write_config
from picollm.config import load_config, model_train, validate
from picollm.errors import PicoError


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "offline.yaml"):
        cfg = load_config(ROOT / "config" / name)
        assert {m["type"] for m in cfg["models"].values()} == {"kgram_mlp", "lstm", "transformer"}


def test_defaults_are_filled():
    cfg = validate({"experiment": "x", "models": {"m": {"type": "lstm"}}})
    assert cfg["seed"] == 1337 and cfg["tokenizer"] == "gpt2" and cfg["device"] == "auto"
    assert cfg["train"]["max_steps"] > 0 and cfg["sampling"]["p_values"] == [0.8, 0.95, 1.0]
    assert cfg["data"]["sources"][0]["name"] == "3seqs"


def test_tinystories_source_defaults_pin_a_revision():
    cfg = validate({"experiment": "x", "models": {"m": {"type": "lstm"}}, "data": {"sources": [{"kind": "tinystories"}]}})
    src = cfg["data"]["sources"][0]
    assert len(src["revision"]) == 40 and src["train_stories"] > 0


def test_per_model_train_overrides():
    cfg = validate({"experiment": "x", "train": {"lr": 0.01},
                    "models": {"a": {"type": "lstm", "train": {"lr": 0.001}}, "b": {"type": "lstm"}}})
    assert model_train(cfg, "a")["lr"] == 0.001 and model_train(cfg, "b")["lr"] == 0.01


BAD = [
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"seed": "one"}, "'seed'"),
    ({"block_size": 0}, "'block_size'"),
    ({"train": {"batch_size": -1}}, "'train.batch_size'"),
    ({"train": {"lrr": 1}}, "unknown config key 'train.lrr'"),
    ({"models": {"m": {"type": "transformer", "d_model": 30, "n_heads": 4}}}, "divisible"),
    ({"models": {"m": {"type": "lstm", "hidden_dim": 0}}}, "'models.m.hidden_dim'"),
    ({"models": {"m": {"type": "lstm", "hiden_dim": 8}}}, "hiden_dim"),
    ({"models": {"m": {"type": "gru"}}}, "allowed: kgram_mlp, lstm, transformer"),
    ({"sampling": {"p_values": [0.0]}}, "each p must be in (0, 1] (greedy decoding is always included)"),
    ({"sampling": {"p_values": [1.2]}}, "'sampling.p_values.0'"),
    ({"sampling": {"p_values": []}}, "'sampling.p_values'"),
    ({"sampling": {"prompts": []}}, "'sampling.prompts'"),
    ({"tokenizer": "gpt5"}, "'tokenizer'"),
    ({"device": "tpu"}, "'device'"),
    ({"data": {"sources": [{"kind": "text"}]}}, "train_files"),
    ({"data": {"sources": [{"kind": "3seqs", "train_files": ["a"]}]}}, "data.sources.0.train_files"),
    ({"block_size": 4096, "models": {"m": {"type": "transformer", "pos_encoding": "learned"}}}, None),  # fine
    ({"seeds": []}, "config key 'seeds' is empty; give at least one seed"),
    ({"seeds": [1, 2, 1]}, "config key 'seeds' lists seed 1 twice"),
    ({"sweep": {"n": {"hidden_dim": [8]}}}, "config key 'sweep.n': the config has no model 'n'"),
    ({"sweep": {"m": {"hiden_dim": [8]}}}, "config key 'sweep.m.hiden_dim': m (lstm) has no such key"),
    ({"sweep": {"m": {"hidden_dim": ["big"]}}}, "config key 'sweep.m.hidden_dim': value 'big' does not fit"),
    ({"sweep": {"m": {"train.lr": [-1]}}}, "config key 'sweep.m.train.lr': value -1 does not fit"),
    ({"sweep": {"m": {"hidden_dim": [8, 8]}}}, "two runs are named 'm.hidden_dim=8'"),
    ({"train": {"max_steps": 100, "snapshot_steps": [50, 200]}}, "step 200 is beyond train.max_steps (100)"),
    ({"train": {"max_minutes": 5, "snapshot_steps": [0]}}, "needs a run of known length"),
    ({"sweep": {"m": {"hidden_dim": [8, 16], "train.lr": [0.01]}}}, None),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_config_gives_one_line(change, message):
    cfg = {"experiment": "x", "models": {"m": {"type": "lstm"}}, **change}
    if message is None:
        validate(cfg)
        return
    with pytest.raises(PicoError) as err:
        validate(cfg)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_validate_config_command(tmp_path):
    good = write_config(tmp_path / "good.yaml", tiny_offline_config())
    assert picollm("validate-config", good).returncode == 0
    bad = write_config(tmp_path / "bad.yaml", {**tiny_offline_config(), "typo_key": 1})
    result = picollm("validate-config", bad)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "typo_key" in result.stderr


def test_config_file_errors(tmp_path):
    with pytest.raises(PicoError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("experiment: [unclosed")
    with pytest.raises(PicoError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(PicoError):
        load_config(tmp_path / "list.yaml")


def test_seeds_sweep_runs_and_data_seed():
    from picollm.config import runs, sweep_point
    cfg = validate({"experiment": "x", "seed": 5, "models": {"m": {"type": "lstm", "train": {"lr": 0.1}}},
                    "sweep": {"m": {"hidden_dim": [8], "train.lr": [0.01]}}})
    assert cfg["seeds"] == [5] and cfg["data_seed"] == 5  # seed: N means seeds: [N]
    assert list(runs(cfg)) == ["m", "m.hidden_dim=8", "m.train.lr=0.01"]
    assert runs(cfg)["m.hidden_dim=8"]["hidden_dim"] == 8 and model_train(cfg, "m.train.lr=0.01")["lr"] == 0.01
    assert model_train(cfg, "m.hidden_dim=8")["lr"] == 0.1  # the model's own overrides carry over
    assert sweep_point(cfg, "m.train.lr=0.01") == {"model": "m", "key": "train.lr", "value": 0.01}
    assert sweep_point(cfg, "m") is None
    cfg = validate({"experiment": "x", "seeds": [3, 4], "models": {"m": {"type": "lstm"}}})
    assert cfg["data_seed"] == 3


def test_validate_config_show_fills_the_models_defaults(tmp_path):
    import json
    shown = json.loads(picollm("validate-config", write_config(tmp_path / "s.yaml", tiny_offline_config()),
                               "--show").stdout)
    assert shown["models"]["transformer"]["tie_weights"] is True and shown["models"]["lstm"]["num_layers"] == 1


def test_stage_command_fills_defaults_and_names_a_bad_p(tmp_path):
    result = picollm("sample", "--config", '{"sampling": {"prompts": ["1 2 3"], "p_values": [0]}}', "--name", "m",
                     "--model-path", tmp_path / "none.pt", "--out", tmp_path / "s.jsonl")
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: config key 'sampling.p_values.0' is 0; each p must be in (0, 1] (greedy decoding is always included)")
    missing = picollm("sample", "--config", '{"sampling": {"prompts": ["1 2 3"], "p_values": [0.9]}}', "--name", "m",
                      "--model-path", tmp_path / "none.pt", "--out", tmp_path / "s.jsonl")
    assert "error: checkpoint" in missing.stderr and "KeyError" not in missing.stderr  # defaults filled, then the model
