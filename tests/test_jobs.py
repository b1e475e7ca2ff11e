"""What each job is given (picollm.jobs) and the code identity of a job (picollm.codehash)."""
import importlib
import inspect
import json
import os
import re

import pytest

from picollm import cli, codehash, config, jobs
from picollm.config import DataConfig, EvaluateJob, ReferenceJob, Study, parse
from picollm.errors import PicoError

from conftest import tiny_offline_config


@pytest.fixture
def cfg():
    return parse(Study, {**tiny_offline_config(), "seeds": [7, 8], "sweep": {"lstm": {"train.lr": [0.01]}}})


def test_train_job_reads_its_run_and_seed_but_not_the_threads(cfg):
    job = jobs.train(cfg, "lstm.train.lr=0.01", 8)
    assert job["seed"] == 8 and list(job["models"]) == ["lstm.train.lr=0.01"]
    assert job["train"]["lr"] == 0.01 and "threads" not in job["train"]
    assert "sampling" not in job and "experiment" not in job


def test_sample_and_evaluate_jobs_read_only_their_keys(cfg):
    sample = jobs.sample(cfg, 7)
    assert set(sample) == {"seed", "sampling"} and "sweep_p_values" not in sample["sampling"]
    evaluate = jobs.evaluate(cfg, "lstm.train.lr=0.01", 7)
    assert "sweep_p_values" in evaluate["sampling"]
    assert evaluate["point"] == {"model": "lstm", "key": "train.lr", "value": 0.01}  # the sweep run's point
    assert parse(EvaluateJob, evaluate).point == cfg.sweep_points["lstm.train.lr=0.01"]  # read back as it was made
    plain = jobs.evaluate(cfg, "lstm", 7)  # a model of the config: no point
    assert "point" not in plain and parse(EvaluateJob, plain).point is None
    assert set(evaluate["data"]) == {"sources"}  # whether the text is English


def test_reference_job_reads_how_many_and_how_long_the_samples_are(cfg):
    job = jobs.reference(cfg, 8)
    assert set(job) == {"seed", "sampling", "data"} and job["seed"] == 8
    assert set(job["sampling"]) == {"prompts", "num_samples", "max_new_tokens"}  # not the p values
    assert parse(ReferenceJob, job).data.english is False  # 3seqs numbers


def test_only_a_study_of_numbers_alone_is_not_english():
    text = {"kind": "text", "train_files": ["a.txt"]}
    numbers = {"kind": "3seqs"}
    assert not DataConfig(sources=[numbers]).english
    assert DataConfig(sources=[text]).english and DataConfig(sources=[numbers, text]).english
    assert DataConfig(sources=[{"kind": "tinystories"}]).english


def test_generated_data_follow_the_data_seed(cfg):
    assert jobs.download(cfg, "3seqs")["seed"] == cfg.data_seed == 7


def test_attention_prompt_defaults_to_the_first_prompt(cfg):
    assert jobs.attention_heads(cfg)["figures"]["attention_prompt"] == "1 2 3"
    cfg = cfg.model_copy(update={"figures": cfg.figures.model_copy(update={"attention_prompt": "4 9 16"})})
    assert jobs.attention_heads(cfg)["figures"]["attention_prompt"] == "4 9 16"


def test_study_file_for_the_report_leaves_threads_out(cfg):
    study = jobs.study_file(cfg)
    assert "threads" not in study["train"] and parse(Study, study).seeds == [7, 8]


def test_each_model_type_has_its_own_code_identity(cfg):
    lstm, transformer = jobs.model_code("train", cfg, "lstm"), jobs.model_code("train", cfg, "transformer")
    assert lstm != transformer and jobs.model_code("train", cfg, "lstm.train.lr=0.01") == lstm
    modules = codehash.closure("picollm.commands.train", "picollm.models.lstm")
    assert "picollm.models.lstm" in modules and "picollm.models.transformer" not in modules


def test_only_figures_hold_the_figure_code():
    """A figure's style (picollm.plots) is the figures' code alone: restyling one reruns no sampling or table."""
    for stage in ("snapshots", "tables", "eval_tables", "sample", "evaluate", "train"):
        assert not [m for m in codehash.closure(jobs.STAGE_MODULES[stage]) if m.startswith("picollm.plots")], stage
    assert "picollm.plots" in codehash.closure(jobs.STAGE_MODULES["figure"], "picollm.plots.loss_curves")


def test_docstrings_and_comments_do_not_change_a_module_hash(tmp_path, monkeypatch):
    package = tmp_path / "picollm"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(codehash, "SRC", tmp_path)
    (package / "m.py").write_text('"""Doc."""\nX = 1  # a comment\n')
    first = codehash.module_hash("picollm.m")
    (package / "m.py").write_text('"""Another doc."""\n\n\nX = 1\n')
    codehash._facts.cache_clear()
    assert codehash.module_hash("picollm.m") == first
    (package / "m.py").write_text("X = 2\n")
    codehash._facts.cache_clear()
    assert codehash.module_hash("picollm.m") != first


def test_a_module_parsed_once_is_read_from_the_cache_until_its_source_changes(tmp_path, monkeypatch):
    """Every Snakemake start and every job hashes the same modules: the second reads what the first parsed
    (io.cache_dir()/codehash/); an edited source is parsed again; a damaged entry or a cache that cannot be
    written only costs the parse."""
    package = tmp_path / "src" / "picollm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "m.py").write_text("from picollm import n\nclass A:\n    pass\n")
    (package / "n.py").write_text("X = 1\n")
    monkeypatch.setattr(codehash, "SRC", tmp_path / "src")
    monkeypatch.setenv("PICOLLM_CACHE_DIR", str(tmp_path / "cache"))
    codehash._facts.cache_clear()
    codehash.imports.cache_clear()
    parsed = codehash.module_hash("picollm.m")
    assert codehash.imports("picollm.m") == {"picollm", "picollm.n"} and codehash.top_level_classes("picollm.m") == {"A"}
    entries = list((tmp_path / "cache" / "codehash").glob("*.json"))
    assert len(entries) == 1

    def no_parsing(path, source):
        raise AssertionError(f"{path} parsed again")
    codehash._facts.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(codehash, "_parse", no_parsing)
        assert codehash.module_hash("picollm.m") == parsed  # a new process: from the cache
    (package / "m.py").write_text("from picollm import n\nclass B:\n    pass\n")
    codehash._facts.cache_clear()
    assert codehash.module_hash("picollm.m") != parsed and codehash.top_level_classes("picollm.m") == {"B"}

    (package / "m.py").write_text("from picollm import n\nclass A:\n    pass\n")
    entries[0].write_text('{"hash": "damaged"')
    codehash._facts.cache_clear()
    assert codehash.module_hash("picollm.m") == parsed  # parsed again, and kept whole
    assert json.loads(entries[0].read_text())["hash"] == parsed
    monkeypatch.setenv("PICOLLM_CACHE_DIR", str(tmp_path / "src" / "picollm" / "m.py"))  # a file: no folder in it
    codehash._facts.cache_clear()
    assert codehash.module_hash("picollm.m") == parsed
    codehash._facts.cache_clear()
    codehash.imports.cache_clear()


def test_help_and_description_text_do_not_change_a_module_hash(tmp_path, monkeypatch):
    """A command's --help or a config key's description is reworded without retraining every model (every job
    runs picollm.cli; most read picollm.config); a changed default or choice still reruns."""
    package = tmp_path / "picollm"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(codehash, "SRC", tmp_path)

    def module_hash(text: str) -> str:
        (package / "m.py").write_text(text)
        codehash._facts.cache_clear()
        return codehash.module_hash("picollm.m")

    first = module_hash('p.add_argument("--n", type=int, default=3, help="samples")\nF = Field(1, description="a")\n')
    assert module_hash('p.add_argument("--n", type=int, default=3, help="samples " "per prompt")\n'
                       'F = Field(1, description=f"another {X}")\n') == first
    assert module_hash('p.add_argument("--n", type=int, default=4, help="samples")\n'
                       'F = Field(1, description="a")\n') != first  # the default is code
    assert module_hash('p.add_argument("--n", type=int, default=3, help=HELP)\n'
                       'F = Field(1, description="a")\n') != first  # a name is code, whatever it holds
    (package / "m.py").write_text("X = (\n")
    codehash._facts.cache_clear()
    with pytest.raises(PicoError, match=r"m.py has a syntax error at line 1"):
        codehash.check_syntax()
    codehash._facts.cache_clear()


def top_level_keys(text: str) -> set[str]:
    """The keys at the outer level of the first {...} in `text` (a help line's JSON sketch, not JSON itself)."""
    keys, depth = set(), 0
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char == "}":
            return keys
        match = re.match(r'"(\w+)":', text[i:]) if depth == 1 and char == '"' else None
        if match:
            keys.add(match.group(1))
    return keys


def test_each_stage_help_shows_only_keys_its_job_reads():
    """A stage's --config help sketches its JSON: every top-level key it shows is one the stage's job class takes
    (a key it shows but refuses sends a user following the help into an error)."""
    for stage, parser in cli.build_parser().stages.items():
        option = next((a for a in parser._actions if "--config" in a.option_strings), None)
        module = importlib.import_module(f"picollm.commands.{stage.replace('-', '_')}")
        used = re.search(r"parse\((\w+Job)", inspect.getsource(module))
        if option is None or used is None:
            continue
        shown, taken = top_level_keys(option.help), set(getattr(config, used.group(1)).model_fields)
        assert shown and shown <= taken, f"{stage}: {sorted(shown - taken)} shown, not taken"


def test_the_modules_changed_since_a_study_was_made_are_read_from_its_newest_records(tmp_path):
    """Each module's hash in the newest record that ran it, against the module now: an older record (a run the
    study no longer has) does not count, and a module that is gone does."""
    now = codehash.module_hash("picollm.io")
    records = tmp_path / "provenance"
    (records / "train").mkdir(parents=True)
    old, new = records / "train" / "old.json", records / "sample.json"
    old.write_text(json.dumps({"code": {"picollm.io": "0" * 16, "picollm.gone": "1" * 16}}))
    new.write_text(json.dumps({"code": {"picollm.io": now, "picollm.cli": "2" * 16}}))
    os.utime(old, (1, 1))  # written before the other
    (records / "damaged.json").write_text("{")
    assert codehash.changed_since(records) == ["picollm.cli", "picollm.gone"]
    line = codehash.code_changes_line(records, shown=1)
    assert line.startswith(f"the code differs from what made the study's outputs ({records}/): picollm.cli and 1 more")
    new.write_text(json.dumps({"code": {"picollm.io": now}}))
    os.utime(old, (1, 1))
    assert codehash.changed_since(records) == ["picollm.gone"]
    assert codehash.code_changes_line(tmp_path / "nothing") is None
