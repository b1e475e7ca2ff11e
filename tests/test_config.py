"""The config contract: defaults filled from the typed classes, and one clear line for each kind of mistake."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, local_run_env, picollm, snakemake_command, tiny_offline_config, write_config
from picollm.config import Study, load_study, parse
from picollm.errors import PicoError


def validate(cfg: dict) -> Study:
    return parse(Study, cfg)


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "offline.yaml"):
        cfg = load_study([ROOT / "config" / name])
        assert {m.type for m in cfg.models.values()} == {"kgram_mlp", "lstm", "transformer"}
    studies = [path for path in (ROOT / "config").glob("*.yaml") if path.name != "config.schema.yaml"]
    assert len(studies) >= 5
    for path in studies:  # every study file the docs name loads, bases and replace: included
        assert load_study([path]).experiment, path


@pytest.mark.parametrize("entry, line", [
    ("train: {max_steps: yes}", "config key 'train.max_steps': true is a yes/no; give a number"),
    ("models: {m: {type: lstm, hidden_dim: true}}", "config key 'models.m.hidden_dim': true is a yes/no; give a number"),
    ("train: {lr: .inf}", "config key 'train.lr' is inf; give a finite number"),
], ids=["yes-for-steps", "true-for-a-width", "infinite-rate"])
def test_a_yes_no_or_an_infinite_number_is_no_number(tmp_path, entry, line):
    """pydantic alone would read `max_steps: yes` as 1 and `lr: .inf` as a rate: each is one line instead."""
    (tmp_path / "study.yaml").write_text(f"experiment: x\nmodels: {{m: {{type: lstm}}}}\n{entry}\n")
    with pytest.raises(PicoError) as err:
        load_study([tmp_path / "study.yaml"])
    assert str(err.value) == f"{tmp_path / 'study.yaml'}: {line}"


def test_defaults_are_filled():
    cfg = validate({"experiment": "x", "models": {"m": {"type": "lstm"}}})
    assert cfg.seed == 1337 and cfg.tokenizer == "gpt2" and cfg.device == "auto"
    assert cfg.train.max_steps > 0 and cfg.sampling.p_values == [0.8, 0.95, 1.0]
    assert cfg.data.sources[0].name == "3seqs"


def test_tinystories_source_defaults_pin_a_revision():
    cfg = validate({"experiment": "x", "models": {"m": {"type": "lstm"}}, "data": {"sources": [{"kind": "tinystories"}]}})
    src = cfg.data.sources[0]
    assert len(src.revision) == 40 and src.train_stories > 0


def test_per_model_train_overrides():
    cfg = validate({"experiment": "x", "train": {"lr": 0.01},
                    "models": {"a": {"type": "lstm", "train": {"lr": 0.001}}, "b": {"type": "lstm"}}})
    assert cfg.train_of("a").lr == 0.001 and cfg.train_of("b").lr == 0.01


BAD = [
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"seed": "one"}, "'seed'"),
    ({"block_size": 0}, "'block_size'"),
    ({"train": {"batch_size": -1}}, "'train.batch_size'"),
    ({"train": {"lrr": 1}}, "unknown config key 'train.lrr'"),
    ({"train": {"max_step": 9}}, "unknown config key 'train.max_step'; did you mean 'max_steps'? allowed here: "),
    # other projects' names, which no spelling distance finds; each model type's name for its layers
    ({"train": {"learning_rate": 0.01}}, "unknown config key 'train.learning_rate'; did you mean 'lr'? allowed here"),
    ({"models": {"m": {"type": "transformer", "num_layers": 2}}}, "'models.m.num_layers'; did you mean 'n_layers'?"),
    ({"models": {"m": {"type": "lstm", "n_layers": 2}}}, "'models.m.n_layers'; did you mean 'num_layers'?"),
    ({"models": {"m": {"type": "transformer", "d_model": 30, "n_heads": 4}}}, "divisible"),
    ({"models": {"m": {"type": "lstm", "hidden_dim": 0}}}, "'models.m.hidden_dim'"),
    ({"models": {"m": {"type": "lstm", "hiden_dim": 8}}}, "hiden_dim"),
    ({"models": {"m": {"type": "gru"}}}, "allowed: kgram_mlp, lstm, transformer"),
    ({"sampling": {"p_values": [0.0]}}, "each p must be in (0, 1] (greedy decoding is always included)"),
    ({"sampling": {"p_values": [1.2]}}, "'sampling.p_values.0'"),
    ({"sampling": {"p_values": []}}, "'sampling.p_values'"),
    ({"sampling": {"p_values": 0.9}}, "config key 'sampling.p_values' is 0.9; give a list of p values, e.g. [0.9]"),
    ({"seed": 4294967296}, "config key 'seed' is 4294967296; it must be ≤ 4294967295"),
    ({"train": {"lr": -0.001}}, "config key 'train.lr' is -0.001; it must be > 0"),
    ({"models": {"my lstm": {"type": "lstm"}}}, "config key 'models': the name 'my lstm' is not allowed; a name may "
                                                "hold only the characters A-Za-z0-9_.=- (no spaces)"),
    ({"experiment": "my run"}, "config key 'experiment': the name 'my run' is not allowed; a name may hold only the "
                               "characters A-Za-z0-9_.- (no spaces)"),
    ({"sampling": {"prompts": []}}, "config key 'sampling.prompts' is empty; give at least one entry"),
    ({"models": {"transfomer": {"d_model": 32}}}, "config key 'models.transfomer' is missing 'type' (a model of type "
                                                  "'transformer'? give it type: transformer)"),
    ({"models": {"t": {"type": "transfomer"}}}, "config key 'models.t.type' is 'transfomer'; did you mean "
                                                "'transformer'? allowed: kgram_mlp, lstm, transformer"),
    ({"seed": "1e3"}, "config key 'seed': '1e3' is not of type 'integer'"),
    ({"experiment": None}, "config key 'experiment' is empty; give a value of type 'string'"),
    ({"seeds": 3}, "config key 'seeds' is 3; give a list, e.g. [3] (or seed: 3 for a single seed)"),
    ({"sampling": {"prompts": "Once upon a time"}},
     "config key 'sampling.prompts' is 'Once upon a time'; give a list, e.g. ['Once upon a time']"),
    ({"experiment": 2024}, "config key 'experiment' is 2024, which YAML reads as a number; quote it: '2024'"),
    ({"experiment": True}, "config key 'experiment' is True, which YAML reads as true/false; quote it: 'True'"),
    ({"experiment": ".."}, "config key 'experiment' is '..', which would write outside results/<experiment>/"),
    ({"models": {"m": {"type": "lstm", "train": {"lr": -1}}}}, "config key 'models.m.train.lr'"),
    ({"sampling": {"prompts": []}}, "'sampling.prompts'"),
    ({"tokenizer": "gpt5"}, "'tokenizer'"),
    ({"device": "tpu"}, "'device'"),
    ({"data": {"sources": [{"kind": "text"}]}}, "train_files"),
    ({"data": {"sources": [{"kind": "3seqs", "train_files": ["a"]}]}}, "data.sources.0.train_files"),
    ({"block_size": 4096, "models": {"m": {"type": "transformer", "pos_encoding": "learned"}}}, None),  # fine
    ({"seeds": []}, "config key 'seeds' is empty; give at least one seed"),
    ({"seeds": [1, 2, 1]}, "config key 'seeds' lists seed 1 twice"),
    ({"seeds": [1337, 1338], "seed": 2}, None),  # parsed: seeds decides (a study file or --config giving both is refused by load_study)
    ({"sweep": {"n": {"hidden_dim": [8]}}}, "config key 'sweep.n': the config has no model 'n'"),
    ({"sweep": {"m": {"hiden_dim": [8]}}}, "config key 'sweep.m.hiden_dim': m (lstm) has no such key"),
    ({"sweep": {"m": {"hidden_dim": ["big"]}}}, "config key 'sweep.m.hidden_dim': value 'big' does not fit"),
    ({"sweep": {"m": {"train.lr": [-1]}}}, "config key 'sweep.m.train.lr': value -1 does not fit"),
    ({"sweep": {"m": {"hidden_dim": [8, 8]}}}, "two runs are named 'm.hidden_dim=8'"),
    ({"train": {"max_steps": 100, "snapshot_steps": [50, 200]}}, "step 200 is beyond train.max_steps (100); keep "
     "the steps up to it (train: {max_steps: 100, snapshot_steps: [50]}) or raise max_steps"),
    ({"train": {"snapshot_steps": None}}, "config key 'train.snapshot_steps' is empty; give a list, e.g. [] for none"),
    ({"seeds": "null"}, "config key 'seeds' is empty; give a list, e.g. [1337, 1338] (or seed: 1337 for a single "
     "seed)"),
    ({"train": {"snapshot_steps": "100"}}, "config key 'train.snapshot_steps' is '100'; give a list, e.g. [100]"),
    ({"train": {"max_minutes": 5, "snapshot_steps": [0]}}, "needs a run of known length"),
    ({"sweep": {"m": {"hidden_dim": [8, 16], "train.lr": [0.01]}}}, None),
    ({"models": {"gpt.small": {"type": "lstm"}}}, "config key 'models.gpt.small': a model's name may not hold '.' "
                                                  "or '=', which name a sweep's runs (<model>.<key>=<value>); rename "
                                                  "it, e.g. gpt_small"),
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


def test_a_study_file_with_a_base_is_its_own_experiment(tmp_path):
    """Named after its file where it names none: it never writes over its base's results/<experiment>/."""
    write_config(tmp_path / "base.yaml", {"experiment": "x", "models": {"m": {"type": "lstm"}}})
    (tmp_path / "my study.yaml").write_text("base: base.yaml\ntrain: {lr: 0.001}\n")
    (tmp_path / "named.yaml").write_text("base: my study.yaml\nexperiment: x\n")
    assert load_study([tmp_path / "base.yaml"]).experiment == "x"
    assert load_study([tmp_path / "my study.yaml"]).experiment == "my-study"
    assert load_study([tmp_path / "named.yaml"]).experiment == "x"  # shared on purpose
    assert load_study([tmp_path / "base.yaml"], {"train": {"lr": 0.1}}).experiment == "x"  # --config: the same study


def test_a_seed_over_a_seeds_list_is_one_line(tmp_path):
    """`seed` set over a study whose `seeds` list decides the seeds would change nothing: refused, with the fix."""
    base = write_config(tmp_path / "base.yaml", {"experiment": "x", "seeds": [1, 2], "models": {"m": {"type": "lstm"}}})
    (tmp_path / "child.yaml").write_text("base: base.yaml\nseed: 42\n")
    with pytest.raises(PicoError, match=r"^config file \S*child.yaml sets seed: 42, but its base base.yaml gives seeds: "
                                        r"\[1, 2\], which decide the seeds that run; set seeds: \[42\] instead$"):
        load_study([tmp_path / "child.yaml"])
    with pytest.raises(PicoError, match=r"^--config sets seed: 3, but the study file gives seeds: \[1, 2\], which "
                                        r"decide the seeds that run; set --config 'seeds=\[3\]' instead$"):
        load_study([base], {"seed": 3})
    assert load_study([base], {"seeds": [3]}).seeds == [3]
    assert load_study([base], {"seed": 1, "seeds": [1]}).seeds == [1]
    # a seed that is no integer is named as such, rather than suggesting seeds: [1.5]
    with pytest.raises(PicoError, match=r"^--config: config key 'seed': 1.5 is not of type 'integer'$"):
        load_study([base], {"seed": 1.5})


def test_a_seed_beside_a_seeds_list_is_one_line(tmp_path):
    """One file or --config giving both `seed` and a `seeds` list without it would drop the seed: refused. A base's
    seed under a file's seeds list is an override, not a conflict."""
    both = write_config(tmp_path / "both.yaml", {"experiment": "x", "seed": 7, "seeds": [1, 2],
                                                 "models": {"m": {"type": "lstm"}}})
    with pytest.raises(PicoError, match=r"^config file \S*both.yaml sets both seed: 7 and seeds: \[1, 2\], and seeds "
                                        r"decide the seeds that run; drop seed, or list every seed in seeds: \[...\]$"):
        load_study([both])
    base = write_config(tmp_path / "base.yaml", {"experiment": "x", "seed": 7, "models": {"m": {"type": "lstm"}}})
    with pytest.raises(PicoError, match=r"^--config sets both seed: 3 and seeds: \[1\], .* in --config 'seeds=\[...\]'$"):
        load_study([base], {"seed": 3, "seeds": [1]})
    (tmp_path / "child.yaml").write_text("base: base.yaml\nseeds: [1, 2]\n")
    assert load_study([tmp_path / "child.yaml"]).seeds == [1, 2]
    assert load_study([base], {"seeds": [1, 2]}).seeds == [1, 2]


def test_a_bad_key_names_the_file_that_gives_it(tmp_path):
    """Through a `base:` chain and --config: the line names the layer that sets the key (or the nearest key above
    it, for a key that is missing), so a mistake in a base file is not looked for in the file that was run."""
    write_config(tmp_path / "base.yaml", {**tiny_offline_config(), "seeds": [1, 1]})
    (tmp_path / "mid.yaml").write_text("base: base.yaml\ntrain: {lr: -1}\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\nseeds: [1, 2]\nmodels: {g: {hidden_dim: 8}}\n")
    (tmp_path / "fixed.yaml").write_text("base: mid.yaml\ntrain: {lr: 0.1}\n")
    cases = [
        ("top.yaml", {}, f"{tmp_path / 'mid.yaml'} (the base of {tmp_path / 'top.yaml'}): config key 'train.lr' is -1"),
        ("top.yaml", {"train": {"lr": 0.1}}, f"{tmp_path / 'top.yaml'}: config key 'models.g' is missing 'type'"),
        ("fixed.yaml", {}, f"{tmp_path / 'base.yaml'} (the base of {tmp_path / 'mid.yaml'}): config key 'seeds' lists "
                           "seed 1 twice"),
        ("fixed.yaml", {"seeds": [3, 3]}, "--config: config key 'seeds' lists seed 3 twice"),
    ]
    # a model name and a sweep key with dots in them; a run's own train key; a check across a model's keys
    dots = tiny_offline_config(models={"gpt_small": {"type": "transformer", "d_model": 32, "n_heads": 4},
                                       "lstm": {"type": "lstm", "train": {"flops": 10}}},
                               sweep={"lstm": {"train.lr": [-1]}})
    dots["train"].pop("max_steps")
    write_config(tmp_path / "dots.yaml", dots)
    (tmp_path / "over.yaml").write_text("base: dots.yaml\nmodels: {gpt_small: {n_heads: 3}}\n")
    (tmp_path / "on.yaml").write_text("base: over.yaml\nmodels: {gpt_small: {n_heads: 4}}\ntrain: {flops: 1e15}\n")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    write_config(tmp_path / "snapshots.yaml", tiny_offline_config(train={**tiny_offline_config()["train"],
                                                                        "snapshot_steps": [30]}))
    (tmp_path / "shorter.yaml").write_text("base: snapshots.yaml\ntrain: {max_steps: 20}\n")
    (tmp_path / "budgets.yaml").write_text("base: dots.yaml\nsweep: {}\nreplace: [sweep]\ntrain: {flops: 1e12}\n")
    (tmp_path / "capped.yaml").write_text("base: budgets.yaml\nreplace: [train]\ntrain: {max_steps: 40}\n"
                                          "models: {lstm: {train: {flops: 1e12}}}\n")
    cases += [
        ("over.yaml", {}, f"{tmp_path / 'over.yaml'}, {tmp_path / 'dots.yaml'} (the base of {tmp_path / 'over.yaml'}): "
                          "config key 'models.gpt_small': d_model (32) must be divisible by n_heads (3)"),
        ("on.yaml", {}, f"{tmp_path / 'dots.yaml'} (the base of {tmp_path / 'over.yaml'}): config key "
                        "'sweep.lstm.train.lr'"),
        ("on.yaml", {"sweep": {"lstm": {"train.lr": [0.1]}}},
         f"{tmp_path / 'dots.yaml'} (the base of {tmp_path / 'over.yaml'}): config key 'train.flops' of run lstm is 10"),
        # the run's budget and the study's max_steps, both given on top of a base that budgets every run
        ("capped.yaml", {}, f"{tmp_path / 'capped.yaml'}: config key 'train.flops' of run lstm: the budget sets"),
        # the snapshot step a base gives, beyond the max_steps the file on it gives: both named
        ("shorter.yaml", {}, f"{tmp_path / 'snapshots.yaml'} (the base of {tmp_path / 'shorter.yaml'}) with "
                             f"train.max_steps from {tmp_path / 'shorter.yaml'}: config key 'train.snapshot_steps': "
                             "step 30 is beyond train.max_steps (20)"),
        ("empty.yaml", {}, f"config file {tmp_path / 'empty.yaml'} is empty (or only comments); give it a study's "
                           f"keys (experiment:, models:, ...), or build on one with base: offline.yaml"),
    ]
    for study, overrides, start in cases:
        with pytest.raises(PicoError) as err:
            load_study([tmp_path / study], overrides)
        assert str(err.value).startswith(start), str(err.value)


def test_validate_config_command(tmp_path):
    good = write_config(tmp_path / "good.yaml", tiny_offline_config())
    assert picollm("validate-config", good).returncode == 0
    bad = write_config(tmp_path / "bad.yaml", {**tiny_offline_config(), "typo_key": 1})
    result = picollm("validate-config", bad)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "typo_key" in result.stderr
    assert result.stderr.startswith(f"error: {bad}: unknown config key 'typo_key'")  # which file holds it
    nameless = write_config(tmp_path / "nameless.yaml", {"seed": 3})
    assert picollm("validate-config", nameless).stderr.strip() == (
        f"error: {nameless}: config key 'experiment' is missing (the study's name: its outputs go under "
        f"results/<experiment>/)")
    import torch
    on_cuda = write_config(tmp_path / "cuda.yaml", {**tiny_offline_config(), "device": "cuda"})
    result = picollm("validate-config", on_cuda)  # no torch of this build could run it anywhere: said now
    assert result.returncode == (1 if torch.version.cuda is None else 0), result.stderr
    assert torch.version.cuda or "is a CPU build; install its CUDA build" in result.stderr


def test_validate_config_refuses_two_studies_as_the_workflow_does(tmp_path):
    first = write_config(tmp_path / "first.yaml", tiny_offline_config())
    second = write_config(tmp_path / "second.yaml", {**tiny_offline_config(), "experiment": "other"})
    result = picollm("validate-config", first, second)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "--configfile got 2 study files" in result.stderr and "give one study file" in result.stderr
    (tmp_path / "longer.yaml").write_text("train: {max_steps: 60}\n")  # no experiment: overrides, merged
    result = picollm("validate-config", first, tmp_path / "longer.yaml")
    assert result.returncode == 0 and result.stdout.strip().endswith("valid (3 models x 1 seed: 3 trainings)"), \
        result.stderr


def test_validate_config_outlines_what_the_study_trains():
    from picollm.commands.validate_config import outline

    study = load_study([ROOT / "config" / "offline.yaml"])
    assert outline(study) == "3 models + 2 sweep runs x 2 seeds: 10 trainings"


def test_a_study_kept_under_a_folder_named_results_gets_the_usual_lines(tmp_path):
    folder = tmp_path / "results" / "studies"
    folder.mkdir(parents=True)
    (folder / "typo.yaml").write_text("experiment: x\ntrian: {lr: 0.1}\nmodels: {m: {type: lstm}}\n")
    with pytest.raises(PicoError, match="unknown config key 'trian'; did you mean 'train'"):
        load_study([folder / "typo.yaml"])


def test_an_output_after_configfile_is_named_a_target_before_it_is_read(tmp_path):
    """Existing text outputs (a figure's .svg, a table, an eval .json under results/) typed after --configfile."""
    figure = tmp_path / "results" / "x" / "figures" / "loss_curves.svg"
    figure.parent.mkdir(parents=True)
    figure.write_text('<svg xmlns="http://www.w3.org/2000/svg"><style>a: b</style></svg>\n')
    scores = tmp_path / "results" / "x" / "eval" / "lstm" / "seed1337.json"
    scores.parent.mkdir(parents=True)
    scores.write_text(json.dumps({"seed": 1337, "val_loss": 2.5}))
    table = tmp_path / "eval.md"
    table.write_text("| run | bpb |\n| --- | --- |\n| lstm: a | 1.2 |\n")
    good = write_config(tmp_path / "good.yaml", tiny_offline_config())
    for output in (figure, scores, table):
        with pytest.raises(PicoError) as caught:
            load_study([good, output])
        assert str(caught.value) == (f"config file {output} is no study file (text, but not .yaml); if it is a "
                                     f"target, put targets before --configfile (snakemake --cores N TARGET "
                                     f"--configfile FILE)")
    (tmp_path / "broken.yaml").write_text("experiment: [x\n")
    with pytest.raises(PicoError, match=r"not valid YAML at line 2.*check that a target did not follow --configfile"):
        load_study([tmp_path / "broken.yaml"])


def test_a_bare_study_name_is_found_in_config(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    for typed in ("offline.yaml", "ofline.yaml", "config/offlin.yaml"):
        with pytest.raises(PicoError, match=rf"^config file {typed} does not exist; did you mean config/offline.yaml\?$"):
            load_study([typed])
    with pytest.raises(PicoError, match="^config file nothing.yaml does not exist; fix the path$"):
        load_study(["nothing.yaml"])  # only ".yaml" in common with config.yaml: no guess


def test_a_check_across_keys_names_the_override_that_broke_it(tmp_path):
    study = write_config(tmp_path / "s.yaml", {**tiny_offline_config(), "train": {
        **tiny_offline_config()["train"], "max_steps": 100, "snapshot_steps": [0, 80]}})
    with pytest.raises(PicoError, match=rf"^{re.escape(str(study))} with --config train.max_steps: config key "
                                        r"'train.snapshot_steps': step 80 is beyond train.max_steps \(50\)"):
        load_study([study], {"train": {"max_steps": 50}})


def test_a_misspelt_dotted_override_gets_the_nested_form_of_the_key_it_meant():
    from picollm.config.command_line import override_problem
    assert override_problem("train.max_step=50") == (
        "--config train.max_step=50: train has no key 'max_step' (did you mean 'max_steps'?), and Snakemake sets "
        "top-level keys only: write --config 'train={max_steps: 50}' (the other keys under train keep their values)")
    assert override_problem("trian.lr=0.1").endswith("write --config 'train={lr: 0.1}' (the other keys under train "
                                                     "keep their values)")
    assert override_problem("train.zzz=1").startswith("--config train.zzz=1: Snakemake sets top-level keys only, "
                                                      "and train has no key 'zzz'; its keys: batch_size, ")
    # below models (and sweep) the names are the study's own: taken as given, one letter long too
    assert "write the nested key as --config 'models={lstm: {hidden_dim: 3}}'" in override_problem(
        "models.lstm.hidden_dim=3")
    assert "write the nested key as --config 'models={x: {type: lstm}}'" in override_problem("models.x.type=lstm")
    assert override_problem("tokenizer.kind=bpe") == ("--config tokenizer.kind=bpe: Snakemake sets top-level keys only, "
                                                      "and tokenizer takes a value, not keys")


def test_a_mapping_without_a_space_after_its_colon_is_named():
    """--config 'train={max_steps:400}': YAML reads one key "max_steps:400" with no value."""
    with pytest.raises(PicoError, match=r"^--config: config key 'train.max_steps:400' is no key: YAML needs a space "
                                        r"after the colon; write 'max_steps: 400'$"):
        load_study([ROOT / "config" / "offline.yaml"], {"train": {"max_steps:400": None}})


def test_config_file_errors(tmp_path):
    with pytest.raises(PicoError, match="does not exist"):
        load_study([tmp_path / "missing.yaml"])
    (tmp_path / "broken.yaml").write_text("experiment: [unclosed")
    with pytest.raises(PicoError, match="not valid YAML"):
        load_study([tmp_path / "broken.yaml"])
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(PicoError):
        load_study([tmp_path / "list.yaml"])


def test_seeds_sweep_runs_and_data_seed():
    cfg = validate({"experiment": "x", "seed": 5, "models": {"m": {"type": "lstm", "train": {"lr": 0.1}}},
                    "sweep": {"m": {"hidden_dim": [8], "train.lr": [0.01]}}})
    assert cfg.seeds == [5] and cfg.data_seed == 5  # seed: N means seeds: [N]
    assert list(cfg.runs) == ["m", "m.hidden_dim=8", "m.train.lr=0.01"]
    assert cfg.runs["m.hidden_dim=8"].hidden_dim == 8 and cfg.train_of("m.train.lr=0.01").lr == 0.01
    assert cfg.train_of("m.hidden_dim=8").lr == 0.1  # the model's own overrides carry over
    assert cfg.sweep_points["m.train.lr=0.01"].model_dump() == {"model": "m", "key": "train.lr", "value": 0.01}
    assert "m" not in cfg.sweep_points and list(cfg.sweep_points) == list(cfg.runs)[1:]
    cfg = validate({"experiment": "x", "seeds": [3, 4], "models": {"m": {"type": "lstm"}}})
    assert cfg.data_seed == 3


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


def test_the_schema_file_is_generated_from_the_classes():
    """config/config.schema.yaml (for editors, the docs and the workflow catalog) is `python -m picollm.config`."""
    text = (ROOT / "config" / "config.schema.yaml").read_text()
    generated = subprocess.run([sys.executable, "-m", "picollm.config"], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
    assert text == generated, "regenerate it: python -m picollm.config > config/config.schema.yaml"
    shipped = yaml.safe_load(text)
    assert shipped == Study.model_json_schema()
    assert shipped["properties"]["train"]["$ref"] == "#/$defs/TrainConfig"
    assert shipped["$defs"]["TrainConfig"]["properties"]["lr"]["default"] == 0.001


def test_a_study_file_replaces_or_removes_what_its_base_gives(tmp_path):
    """`key: !replace VALUE` replaces an inherited mapping (no merge); `key: !replace` alone drops it."""
    write_config(tmp_path / "base.yaml", {**tiny_offline_config(), "sweep": {"transformer": {"d_model": [16, 64]}}})
    (tmp_path / "merge.yaml").write_text("base: base.yaml\nsweep: {lstm: {hidden_dim: [8]}}\n")
    assert set(load_study([tmp_path / "merge.yaml"]).sweep) == {"transformer", "lstm"}  # mappings merge
    (tmp_path / "swap.yaml").write_text("base: base.yaml\nsweep: !replace {lstm: {hidden_dim: [8]}}\n")
    assert load_study([tmp_path / "swap.yaml"]).sweep == {"lstm": {"hidden_dim": [8]}}
    (tmp_path / "drop.yaml").write_text("base: base.yaml\nsweep: !replace\nmodels:\n  kgram_mlp: !replace\n")
    dropped = load_study([tmp_path / "drop.yaml"])
    assert dropped.sweep == {} and set(dropped.models) == {"lstm", "transformer"}


def test_a_model_given_another_type_does_not_inherit_its_bases_hyperparameters(tmp_path):
    """base lstm {hidden_dim, embed_dim} made a transformer: its keys are an LSTM's, so the entry is replaced
    whole (merged, they were an unknown key 'models.lstm.embed_dim' the user never wrote)."""
    cfg = tiny_offline_config()
    cfg["models"]["lstm"].update(hidden_dim=24, embed_dim=16)
    write_config(tmp_path / "base.yaml", cfg)
    (tmp_path / "retyped.yaml").write_text("base: base.yaml\nmodels: {lstm: {type: transformer, d_model: 32}}\n")
    model = load_study([tmp_path / "retyped.yaml"]).models["lstm"]
    assert model.type == "transformer" and model.d_model == 32
    (tmp_path / "same.yaml").write_text("base: base.yaml\nmodels: {lstm: {type: lstm, hidden_dim: 32}}\n")
    kept = load_study([tmp_path / "same.yaml"]).models["lstm"]
    assert (kept.hidden_dim, kept.embed_dim) == (32, 16)  # the same type still merges
    assert load_study([tmp_path / "base.yaml"], {"models": {"lstm": {"type": "kgram_mlp"}}}).models["lstm"].type == \
        "kgram_mlp"  # a --config override alike


@pytest.mark.parametrize("text, message", [
    # a misspelt key would replace nothing, and the student would train the sweep they meant to drop
    ("base: base.yaml\nreplace: [sweeps]\n", r"mine.yaml: replace lists 'sweeps', which its base does not set; did "
                                             r"you mean 'sweep'\?"),
    ("base: base.yaml\nreplace: [models.gru]\n", r"replace lists 'models.gru', which its base does not set; its keys "
                                                 r"there: kgram_mlp, lstm, transformer"),
    ("base: bsae.yaml\n", r"bsae.yaml does not exist \(named by 'base:' in .*mine.yaml\); did you mean .*base.yaml\?"),
    ("replace: [sweep]\nexperiment: x\n", r"mine.yaml: 'replace' lists keys of a base, but the file has no 'base:'"),
])
def test_a_base_or_replace_that_names_nothing_is_one_line(tmp_path, text, message):
    write_config(tmp_path / "base.yaml", {**tiny_offline_config(), "sweep": {"transformer": {"d_model": [16, 64]}}})
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(PicoError, match=message):
        load_study([tmp_path / "mine.yaml"])


def test_replace_key_does_what_the_tag_does_and_snakemake_reads_it(tmp_path):
    """`replace: [keys]` (plain YAML) replaces or drops inherited keys like `!replace`, and unlike the tag it
    passes Snakemake's own reading of a --configfile."""
    write_config(tmp_path / "base.yaml", {**tiny_offline_config(), "sweep": {"transformer": {"d_model": [16, 64]}}})
    (tmp_path / "swap.yaml").write_text("base: base.yaml\nreplace: [sweep, models.kgram_mlp]\n"
                                        "sweep: {lstm: {hidden_dim: [8]}}\n")
    swapped = load_study([tmp_path / "swap.yaml"])
    assert swapped.sweep == {"lstm": {"hidden_dim": [8]}} and set(swapped.models) == {"lstm", "transformer"}
    (tmp_path / "bad.yaml").write_text("base: base.yaml\nreplace: sweep\n")
    with pytest.raises(PicoError, match=r"bad.yaml: 'replace' must be a list of keys, e.g. replace: \[train"):
        load_study([tmp_path / "bad.yaml"])
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "-n",
                             "--directory", str(tmp_path), "all", "--configfile", str(tmp_path / "swap.yaml")],
                            capture_output=True, text=True, timeout=300, env=local_run_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "run=lstm.hidden_dim=8" in result.stdout and "run=transformer.d_model" not in result.stdout


def test_config_file_that_is_not_utf8_or_not_yaml_is_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("experiment: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PicoError, match=r"latin1.yaml is not UTF-8 \(invalid byte at offset 15\); save it as UTF-8"):
        load_study([tmp_path / "latin1.yaml"])
    (tmp_path / "child.yaml").write_text("base: latin1.yaml\n")
    with pytest.raises(PicoError, match="latin1.yaml is not UTF-8"):
        load_study([tmp_path / "child.yaml"])
    (tmp_path / "tabs.yaml").write_text("experiment: x\nmodels:\n  m: {type: lstm\n")
    with pytest.raises(PicoError, match=r"tabs.yaml is not valid YAML at line 4"):
        load_study([tmp_path / "tabs.yaml"])
    result = picollm("validate-config", tmp_path / "latin1.yaml")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "not UTF-8" in result.stderr


@pytest.mark.parametrize("files, needle", [
    (["latin1.yaml"], "latin1.yaml is not UTF-8 (invalid byte at offset 15); save it as UTF-8"),
    (["ok.yaml", "figure.png"], "figure.png is no study file (not text, and not .yaml); if it is a target, put "
                                "targets before --configfile (snakemake --cores N TARGET --configfile FILE)"),
    (["ok.yaml", "all"], "config file all does not exist; if it is a target, put targets before --configfile"),
    (["okk.yaml"], "okk.yaml does not exist; did you mean "),  # ... <tmp>/ok.yaml?
    (["broken.yaml"], "broken.yaml is not valid YAML at line 2"),
    (["tagged.yaml"], "tagged.yaml uses the tag '!replace', which Snakemake cannot read in a --configfile; "
                      "list the keys under 'replace: [...]' instead"),
    (["empty.yaml"], "empty.yaml is empty (or only comments); give it a study's keys (experiment:, models:, ...), "
                     "or build on one with base: offline.yaml"),
], ids=["latin1", "figure-after-configfile", "target-after-configfile", "misspelt-study", "yaml-syntax",
        "replace-tag", "empty"])
def test_a_configfile_snakemake_cannot_read_is_one_line(tmp_path, files, needle):
    """Snakemake reads --configfile before any workflow code; the project's profile checks the files earlier."""
    (tmp_path / "latin1.yaml").write_bytes("experiment: caf\xe9\n".encode("latin-1"))
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "broken.yaml").write_text("experiment: [x\n")
    (tmp_path / "empty.yaml").write_text("# a study, some day\n")
    write_config(tmp_path / "ok.yaml", tiny_offline_config())
    (tmp_path / "tagged.yaml").write_text("base: ok.yaml\nsweep: !replace {}\n")
    # "all": a target typed after them; a study file's name is in tmp_path, found or not
    paths = [tmp_path / f if (tmp_path / f).exists() or f.endswith(".yaml") else f for f in files]
    cmd = snakemake_command(tmp_path, "-n", "--configfile", *paths)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=local_run_env(), cwd=ROOT)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stderr.strip().splitlines()
    assert out[-1].startswith("error: config file ") and needle in out[-1], result.stderr
    assert "okk.yaml" not in files or out[-1].endswith(f"{tmp_path / 'ok.yaml'}?")
    assert "Traceback" not in result.stderr and len(out) <= 2, result.stderr  # the profile's note + the line


def test_the_profile_checks_a_run_from_another_folder_with_its_own_checkouts_code(tmp_path):
    """workflow/profiles/default/ sits beside the Snakefile, so Snakemake reads it for `-s .../Snakefile` from any
    working directory; its checks are the code of that Snakefile's checkout, not of the working directory."""
    checkout = tmp_path / "checkout"
    for part in ("src", "workflow"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    checks = checkout / "src" / "picollm" / "config" / "command_line.py"
    checks.write_text(checks.read_text().replace("does not exist", "is not there (the copy's check)"))
    (tmp_path / "elsewhere").mkdir()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(checkout / "workflow" / "Snakefile"), "-n",
           "--configfile", "nowhere.yaml"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=local_run_env(),
                            cwd=tmp_path / "elsewhere")
    out = result.stderr.strip().splitlines()
    assert result.returncode == 1 and out[-1].startswith("error: config file nowhere.yaml is not there (the copy's "
                                                         "check)"), result.stderr
    assert "Using workflow specific profile" in out[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, line", [
    (["--config", "train.max_steps=50"], "error: --config train.max_steps=50: Snakemake sets top-level keys only; write "
     "the nested key as --config 'train={max_steps: 50}' (the other keys under train keep their values)"),
    (["--config=models.lstm.hidden_dim=24"], "error: --config models.lstm.hidden_dim=24: Snakemake sets top-level keys "
     "only; write the nested key as --config 'models={lstm: {hidden_dim: 24}}' (the other keys under models keep "
     "their values)"),
    (["--config", "seed=3", "all"], "error: --config takes KEY=VALUE words and 'all' is none; if it is a target, put "
     "targets before --config (snakemake --cores N TARGET --config KEY=VALUE)"),
    (["--config", "seed=2", "models={lstm:", "{hidden_dim:", "8}}"], "error: --config models={lstm: {hidden_dim: 8}}: "
     "the shell split one value at its spaces; quote it: --config 'models={lstm: {hidden_dim: 8}}'"),
    (["--config", "experiment=my", "run"], "error: --config takes KEY=VALUE words and 'run' is none; if it is part of "
     "the value before it, quote the two: --config 'experiment=my run'; if it is a target, put targets before "
     "--config (snakemake --cores N TARGET --config KEY=VALUE)"),
    (["--config", "models={lstm: {hidden_dim: 8}}", "--config", "seed=2"], "error: --config is given 2 times, and "
     "Snakemake would keep only the last one's words; give them all after one: --config "
     "'models={lstm: {hidden_dim: 8}}' seed=2"),
], ids=["dotted-key", "dotted-key-equals-form", "target-after-config", "unquoted-mapping", "unquoted-words",
        "config-twice"])
def test_a_config_override_snakemake_cannot_parse_is_one_line(tmp_path, args, line):
    """Snakemake parses --config before any workflow code and ends in a traceback; the profile checks it earlier."""
    write_config(tmp_path / "ok.yaml", tiny_offline_config())
    cmd = snakemake_command(tmp_path, "-n", "--configfile", tmp_path / "ok.yaml", *args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=local_run_env(), cwd=ROOT)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == line, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr


@pytest.mark.parametrize("args, line", [
    (["results/offline/figures/loss_curves.png"], "error: target results/offline/figures/loss_curves.png is an output "
     "of experiment 'offline', but this command's study (config/config.yaml, the default study) is experiment "
     "'tinystories'; name its study: TARGET --configfile config/offline.yaml"),
    (["--cores", "1", "--configfile", "config/offline.yaml", "--", "results/tinystories/figures/p_sweep.png"],
     "error: target results/tinystories/figures/p_sweep.png is an output of experiment 'tinystories', but this "
     "command's study (config/offline.yaml) is experiment 'offline'; name its study instead: TARGET --configfile "
     "config/config.yaml"),
    (["results/mine/tables/eval.md", "--configfile", "config/offline.yaml"], "error: target results/mine/tables/eval.md "
     "is an output of experiment 'mine', but this command's study (config/offline.yaml) is experiment 'offline'; "
     "name its study instead: TARGET --configfile FILE, FILE being the study file with experiment: mine"),
    (["results/offline/models/lstm/seed1337/model.pt", "--configfile", "config/offline.yaml", "--config",
      "experiment=offline_cuda"], "error: target results/offline/models/lstm/seed1337/model.pt is an output of "
     "experiment 'offline', but --config experiment=offline_cuda puts this command's outputs under "
     "results/offline_cuda/; target results/offline_cuda/models/lstm/seed1337/model.pt, or drop --config "
     "experiment=offline_cuda"),
    (["results/offline/figures/loss_curve.png", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/figures/loss_curve.png is no figure; did you mean results/offline/figures/loss_curves.png? the "
     "figures are attention_heads, grad_norms, layer_health, loss_curves, lr_schedule, p_sweep, resources, "
     "sample_comparison, sample_slide, scaling, snapshots, sweep (.png or .svg)"),
    # targets of the study's own experiment that it does not make (checked as the Snakefile is parsed)
    (["results/offline/figures/scaling.png", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/figures/scaling.png is not made by this study (config/offline.yaml): the scaling figure needs "
     "figures: {scaling: true} in the study file"),
    (["results/tinystories/figures/sweep.svg"], "error: target results/tinystories/figures/sweep.svg is not made by "
     "this study (config/config.yaml): the sweep figure needs a sweep: section in the study file "
     "(docs/configuration.md)"),
    (["results/offline/models/transfomer/seed1337/model.pt", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/models/transfomer/seed1337/model.pt names the run 'transfomer', which this study "
     "(config/offline.yaml) has not got; did you mean 'transformer'? its runs are kgram_mlp, lstm, transformer, "
     "transformer.d_model=32, transformer.d_model=128"),
    (["results/offline/figures/attention_heads/lstm.png", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/figures/attention_heads/lstm.png: this study's (config/offline.yaml) attention_heads figure "
     "draws the runs transformer, transformer.d_model=32, transformer.d_model=128, and not 'lstm'"),
    (["results/offline/hf/lstm/seed1337", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/hf/lstm/seed1337: the run 'lstm' of this study (config/offline.yaml) does not export: only "
     "Transformer models can be exported to Hugging Face format, not 'lstm'; export a transformer: pos_encoding: rope "
     "and norm: rmsnorm (a Llama), or pos_encoding: learned and norm: layernorm (a GPT-2)"),
    (["results/offline/figure/loss_curves.png", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/figure/loss_curves.png is in no folder a study writes; did you mean "
     "results/offline/figures/loss_curves.png? the folders of results/offline/ are benchmarks, data, eval, figures, "
     "hf, logs, models, provenance, samples, tables"),
    (["results/offline/tables/evals.csv", "--configfile", "config/offline.yaml"], "error: target "
     "results/offline/tables/evals.csv is no table; did you mean results/offline/tables/eval.csv? the tables are "
     "compare.csv, compare.html, eval.csv, eval.html, eval.md, models.csv, models.html, models.md, provenance.csv, "
     "provenance.html, resources.csv, samples.csv, samples.html, samples.md, sampling.html, scaling.csv, scaling.html, "
     "scaling_points.csv, snapshots.csv, snapshots.html, snapshots.md"),
    (["figures/loss_curves.png", "--configfile", "config/offline.yaml"], "error: target figures/loss_curves.png lies "
     "outside results/offline/, where this command's study writes; did you mean "
     "results/offline/figures/loss_curves.png?"),
], ids=["default-study", "after-double-dash", "unknown-experiment", "experiment-renamed-by-config", "figure-name-typo",
        "figure-left-out",
        "default-study-no-sweep", "run-name-typo", "per-run-figure-of-another-run", "export-of-an-lstm",
        "folder-name-typo", "table-name-typo", "no-results-folder"])
def test_a_target_no_rule_of_the_study_makes_is_one_line(args, line):
    """Snakemake would say only "No rule to produce" a file under another experiment's results/ folder, a figure
    the study leaves out, a run it has not got, or a path misspelt in its folders."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], capture_output=True, text=True,
                            timeout=300, env=local_run_env(), cwd=ROOT)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == line, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_a_target_of_the_study_named_is_not_refused():
    from snakemake.cli import get_argument_parser
    from picollm.config.command_line import main
    for argv in (["results/offline/figures/loss_curves.png", "--configfile", "config/offline.yaml"],
                 ["results/x/figures/loss_curves.png", "--configfile", "config/offline.yaml", "--config", "experiment=x"],
                 ["all"], ["--help"], ["results/benchmarks/gpu.json"],
                 ["results/offline/figures/p_sweep.svg", "--configfile", "config/offline.yaml"],
                 ["results/offline/figures/attention_heads/transformer.png", "--configfile", "config/offline.yaml"],
                 ["results/offline/tables/provenance.html", "results/offline/hf/lm_eval_task", "--configfile",
                  "config/offline.yaml"]):
        main(argv, get_argument_parser)  # no SystemExit


def test_a_path_misspelt_in_its_folders_names_the_closest(tmp_path, monkeypatch):
    """A path of the study's with no results/<experiment>/ in front, or in a folder or a table no study has: one
    line naming the path meant. Any other path is left to Snakemake (a file of one's own, one on disk)."""
    from picollm.config.command_line import path_problem
    monkeypatch.chdir(tmp_path)
    assert path_problem("x/figures/loss_curves.png", "x") == (
        "target x/figures/loss_curves.png lies outside results/x/, where this command's study writes; did you mean "
        "results/x/figures/loss_curves.png?")
    assert path_problem("result/x/tables/eval.md", "x").endswith("did you mean results/x/tables/eval.md?")
    assert path_problem("results/x/modles/lstm/seed1/model.pt", "x").startswith(
        "target results/x/modles/lstm/seed1/model.pt is in no folder a study writes; did you mean "
        "results/x/models/lstm/seed1/model.pt? the folders of results/x/ are benchmarks, data, eval, figures, ")
    assert path_problem("results/x/tables/model.md", "x").startswith(
        "target results/x/tables/model.md is no table; did you mean results/x/tables/models.md? the tables are ")
    for target in ("all", "notes/plan.txt", "results/x/report.html", "results/x/tables/provenance.html",
                   "results/x/tables/scaling_points.csv", "results/x/hf/lm_eval_task",
                   "results/x/data/tokens/meta.json", "results/benchmarks/gpu.json",
                   "results/y/figure/loss_curves.png"):
        assert path_problem(target, "x") is None, target
    assert path_problem("results/x/figures/loss_curves.png", None) is None  # no study read: its own error follows
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mine.png").write_bytes(b"a file of one's own")
    assert path_problem("figures/mine.png", "x") is None


def test_the_folders_a_target_may_name_are_those_the_workflow_writes():
    """layout.FOLDERS against every folder of results/<experiment>/ that the rules and picollm.registry name."""
    from picollm import layout, registry
    cfg = load_study([ROOT / "config" / "offline.yaml"])
    files = registry.StudyFiles(cfg, "results/x")
    made = registry.outputs(cfg, files, {})
    paths = [files.model_dir, files.sampling_pattern, files.benchmark("train"), files.record("train"), *made.results,
             *made.tables.values()]
    rules = "".join(path.read_text() for path in (ROOT / "workflow" / "rules").glob("*.smk"))
    written = {Path(path).parts[2] for path in paths} | set(re.findall(r"\{R\}/(\w+)/", rules))
    assert written == set(layout.FOLDERS)


def test_targets_the_study_makes_pass_the_study_check(tmp_path, monkeypatch):
    from picollm.config.command_line import study_target_problem
    runs, not_made = ["lstm", "transformer"], {"scaling": "figures: {scaling: true}", "snapshots": "snapshot_steps"}
    figure_runs = {"attention_heads": ["transformer"]}
    monkeypatch.chdir(tmp_path)
    for target in ["results/x/models/lstm/seed1/model.pt", "results/x/eval/reference/seed3.csv",
                   "results/x/benchmarks/sampling_reference/seed3.tsv", "results/x/eval/sampling/lstm/seed1.csv",
                   "results/x/figures/loss_curves.png", "results/x/figures/attention_heads/transformer.svg",
                   "results/x/tables/eval.csv", "results/y/figures/scaling.png", "all", "results/x/report.html"]:
        assert study_target_problem(target, "s.yaml", "results/x", runs, [1, 3], not_made, figure_runs) is None, target
    def problem(target):
        return study_target_problem(target, "s.yaml", "results/x", runs, [1, 3], not_made, figure_runs)
    assert "snapshots table needs snapshot_steps" in problem("results/x/tables/snapshots.md")
    assert "'lstn'" in problem("results/x/provenance/train/lstn/seed1.json")
    assert problem("results/x/models/lstm/seed42/model.pt") == (
        "target results/x/models/lstm/seed42/model.pt names seed 42, which this study (s.yaml) does not train; add "
        "it to the study's seeds (seeds: [1, 3, 42]) to train it and compare it with the others")
    why = {"lstm": "only Transformer models can be exported to Hugging Face format, not 'lstm'; export a transformer"}
    assert study_target_problem("results/x/hf/lstm/seed1", "s.yaml", "results/x", runs, [1, 3], not_made, figure_runs,
                                why) == f"target results/x/hf/lstm/seed1: the run 'lstm' of this study (s.yaml) does " \
                                        f"not export: {why['lstm']}"
    for target in ("results/x/hf/transformer/seed1", "results/x/hf/lm_eval_task"):
        assert study_target_problem(target, "s.yaml", "results/x", runs, [1, 3], not_made, figure_runs, why) is None
    (tmp_path / "results/x/figures").mkdir(parents=True)
    (tmp_path / "results/x/figures/scaling.png").write_bytes(b"drawn by an earlier study")
    assert problem("results/x/figures/scaling.png") is None  # on disk: Snakemake has nothing to do, and says so


def test_a_target_under_a_study_with_a_bad_experiment_name_is_left_to_the_config_check():
    """`--config experiment=../x` with a target: the config's own line names the bad name; the target is not
    blamed for it."""
    from picollm.config.command_line import target_problem
    assert target_problem("results/offline/tables/eval.md", "../../etc", []) is None
    assert target_problem("results/offline/tables/eval.md", "..", []) is None
    assert "is an output of experiment 'offline'" in target_problem("results/offline/tables/eval.md", "mine", [])


def test_a_default_study_that_does_not_read_is_left_to_the_workflow(tmp_path, monkeypatch):
    """The target check names no experiment then: the workflow's own one-line config error follows."""
    from picollm.config import command_line
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("experiment: [x\n")
    monkeypatch.setattr(command_line, "ROOT", tmp_path)
    assert command_line.experiment_of(["results/offline/figures/loss_curves.png"]) is None
    assert command_line.target_problem("results/offline/figures/loss_curves.png", None, []) is None


def test_a_target_of_a_study_made_by_config_words_names_its_study_json(tmp_path, monkeypatch):
    """An experiment no config/*.yaml names (made with --config experiment=NAME): its provenance/study.json, the
    config it was last built with, is the study file that rebuilds one of its figures."""
    from picollm.config import command_line

    monkeypatch.chdir(tmp_path)
    built = Path("results/mine/provenance/study.json")
    assert "FILE being the study file with experiment: mine" in command_line.target_problem(
        "results/mine/figures/loss_curves.png", "offline", ["--configfile", "config/offline.yaml"])
    built.parent.mkdir(parents=True)
    built.write_text("{}")
    assert command_line.target_problem("results/mine/figures/loss_curves.png", "offline", []).endswith(
        "name its study: TARGET --configfile results/mine/provenance/study.json (the config it was last built with)")


def test_a_target_of_an_experiment_several_study_files_name_names_the_one_it_was_built_from(tmp_path, monkeypatch):
    """A copied study file keeps its experiment: the hint names the file whose validated config is the study as last
    built (provenance/study.json), else every one that validates, never a scratch copy that does not."""
    from picollm import jobs
    from picollm.config import command_line
    (tmp_path / "config").mkdir()
    heads = {"t": {"type": "transformer", "d_model": 30, "n_heads": 4}}  # d_model not divisible by n_heads
    write_config(tmp_path / "config" / "a_scratch.yaml", tiny_offline_config("mine", models=heads))
    write_config(tmp_path / "config" / "mine.yaml", tiny_offline_config("mine"))
    train = {**tiny_offline_config()["train"], "lr": 0.01}
    write_config(tmp_path / "config" / "mine_lr.yaml", tiny_offline_config("mine", train=train))
    monkeypatch.setattr(command_line, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    built = Path("results/mine/provenance/study.json")

    def fix():
        line = command_line.target_problem("results/mine/figures/loss_curves.png", "offline", [])
        return line.split("experiment 'offline'; ")[1]

    both = "config/mine.yaml, config/mine_lr.yaml"
    assert fix() == f"name its study: TARGET --configfile FILE, FILE being one of the study files with experiment: " \
                    f"mine ({both})"
    built.parent.mkdir(parents=True)
    built.write_text(json.dumps(jobs.study_file(load_study(["config/mine_lr.yaml"])), sort_keys=True))
    assert fix() == "name its study: TARGET --configfile config/mine_lr.yaml (the study file results/mine/ was last " \
                    "built from)"
    built.write_text(json.dumps(jobs.study_file(load_study(["config/mine.yaml"], {"seeds": [8]}))))
    assert fix() == f"name its study: TARGET --configfile FILE, FILE being one of the study files with experiment: " \
                    f"mine ({both}); or {built} (the config it was last built with)"
    (tmp_path / "config" / "mine.yaml").unlink()
    (tmp_path / "config" / "mine_lr.yaml").unlink()
    assert fix() == f"name its study: TARGET --configfile {built} (the config it was last built with)"
    built.unlink()
    assert fix() == "name its study: TARGET --configfile config/a_scratch.yaml"  # the only one: its error follows


def test_only_a_command_line_that_runs_jobs_checks_that_results_can_be_written():
    """The parse-time writability check of results/<experiment>/ runs for a snakemake command that runs jobs; a
    dry run, report, summary or graph reads someone else's read-only results, and the Python API is left to the
    Snakefile's onstart."""
    from snakemake.cli import get_argument_parser

    from picollm.config.command_line import runs_jobs

    def runs(*words, program="/venv/bin/snakemake"):
        return runs_jobs([program, *words], get_argument_parser)

    assert runs("--cores", "1", "all") and runs("all", "--configfile", "config/offline.yaml", "-f")
    for words in (["-n", "all"], ["--dry-run"], ["--report", "r.html"], ["--summary"], ["--rulegraph"],
                  ["--lint"], ["--unlock"], ["--list-changes", "params"], ["--version"]):
        assert not runs("--cores", "1", *words), words
    assert not runs("all", program="python")  # no snakemake command: the API


def test_two_study_files_are_refused_rather_than_merged(capsys):
    """Two --configfile files that each name an experiment would merge into a mixed study writing into the last
    one's folder; a file of overrides without an experiment still merges."""
    from picollm.config import command_line
    offline, local = (str(ROOT / "config" / f) for f in ("offline.yaml", "tinystories-local.yaml"))
    with pytest.raises(SystemExit):
        command_line.main(["all", "--configfile", offline, local])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--configfile got 2 study files" in err
    assert "writing into results/tinystories-local/; give one study file" in err
    assert command_line.several_studies([offline, str(ROOT / "workflow" / "profiles" / "default" / "config.yaml")]) is None


def test_an_option_given_twice_is_refused_as_snakemake_would_drop_the_first():
    from picollm.config.command_line import repeated_option
    assert repeated_option(["--configfile", "a.yaml", "all", "--configfile=b.yaml"]) == (
        "--configfile is given 2 times, and Snakemake would keep only the last one's words; give them all after "
        "one: --configfile a.yaml all b.yaml")
    assert repeated_option(["--configfile", "a.yaml", "b.yaml", "--config", "seed=3", "--", "--config"]) is None


def test_the_nested_override_the_error_suggests_is_one_snakemake_takes(tmp_path):
    from picollm.config.command_line import override_problem
    write_config(tmp_path / "ok.yaml", tiny_offline_config())
    suggested = re.search(r"--config '(.*)' \(", override_problem("train.max_steps=7")).group(1)
    assert override_problem(suggested) is None
    result = subprocess.run(snakemake_command(tmp_path, "-n", "--configfile", tmp_path / "ok.yaml", "--config",
                                              suggested, "--printshellcmds"),
                            capture_output=True, text=True, timeout=300, env=local_run_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"max_steps": 7' in result.stdout, result.stdout[-3000:]


def test_stage_slices_are_the_study_keys_they_read():
    """A job's class takes Study's own fields (same defaults and checks), and only those."""
    from picollm.config import SampleJob, TrainJob
    assert set(SampleJob.model_fields) == {"seed", "sampling"}
    assert TrainJob.model_fields["train"].annotation is Study.model_fields["train"].annotation
    with pytest.raises(PicoError, match="unknown config key 'experiment'"):
        parse(SampleJob, {"experiment": "x"})
    with pytest.raises(PicoError, match="config key 'seed' is 4294967296; it must be ≤ 4294967295"):
        parse(SampleJob, {"seed": 2 ** 32})


def test_changes_name_each_key_a_whole_section_once_and_sources_by_index():
    from picollm.config.changes import changes
    before = {"train": {"lr": 0.003, "max_steps": 10}, "models": {"lstm": {"hidden_dim": 32}},
              "data": {"sources": [{"name": "a", "num_sequences": 600}]}, "sampling": {"prompts": ["x"]}}
    now = {"train": {"lr": 0.003, "max_steps": 20}, "models": {"gru": {"hidden_dim": 8}},
           "data": {"sources": [{"name": "a", "num_sequences": 100}]}, "sampling": {"prompts": ["y" * 60]},
           "seed": 3}
    assert changes(before, now) == [
        "data.sources[0].num_sequences: 600 -> 100", "models.gru: added", "models.lstm: removed",
        'sampling.prompts: ["x"] -> ["' + "y" * 35 + '...', "seed: added (3)", "train.max_steps: 10 -> 20"]
    assert changes(before, before) == []
    own = {**before, "models": {"lstm": {"hidden_dim": 32, "train": {"lr": 0.01}}}}  # a model's own train: section
    assert changes(before, own) == ['models.lstm.train: added ({"lr": 0.01})']
    assert changes(own, before) == ['models.lstm.train: removed (was {"lr": 0.01})']


def test_the_change_line_says_when_runs_are_retrained_in_place(tmp_path):
    """A changed hyperparameter retrains its runs into the same folders (the old model is gone); a new model,
    seed or sweep point trains beside them, and a sampling key retrains nothing: only the first gets the warning."""
    from picollm.config.changes import retrains, since_last_build
    study_json = tmp_path / "results" / "x" / "provenance" / "study.json"
    study_json.parent.mkdir(parents=True)
    study_json.write_text(json.dumps({"models": {"lstm": {"hidden_dim": 32}}, "seeds": [1], "sampling": {"p": 0.9}}))
    line = since_last_build(study_json, {"models": {"lstm": {"hidden_dim": 48}}, "seeds": [1], "sampling": {"p": 0.9}})
    assert line.endswith(f"replace their models in {tmp_path / 'results/x/models'} (to keep those, run the change "
                         "as a study of its own: --config experiment=NAME)")
    kept = since_last_build(study_json, {"models": {"lstm": {"hidden_dim": 32}, "gru": {}}, "seeds": [1, 2],
                                         "sampling": {"p": 0.8}})
    assert "models.gru: added" in kept and "replace" not in kept
    reseeded = since_last_build(study_json, {"models": {"lstm": {"hidden_dim": 32}}, "seeds": [7], "data_seed": 7,
                                             "sampling": {"p": 0.9}})
    assert reseeded.endswith("The data follow the first seed unless the study sets data_seed: set it to the old first "
                             "seed to keep the data; the folders of seeds no longer listed stay as they are")
    assert retrains("train.lr: 0.003 -> 0.01") and retrains("data.sources[0].num_sequences: 600 -> 100")
    assert not retrains("models.gru: removed") and not retrains("sweep.lstm.hidden_dim: [8] -> [8, 16]")
