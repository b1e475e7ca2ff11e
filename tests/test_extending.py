"""docs/extending.md works as written: its code blocks, applied to a copy of the project, add a GRU model type
that a study trains, samples, evaluates and draws at a FLOPs budget beside an LSTM (the schema regenerated), whose
jobs alone an edit of its module reruns, and a figure that the study draws with its caption in the report."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, local_run_env, tiny_offline_config, write_config

GUIDE = ROOT / "docs" / "extending.md"
# a block's first line, a comment ("# " or rst's ".. "): "<file> (a new file)", "<file>: above NAME" or
# "<file>: a line in NAME"
HEADER = re.compile(r"(?:#|\.\.) (\S+)(?: \(a new file\)|: above (\w+)|: a line in (\w+))$")


def guide_blocks() -> list[tuple[str, str | None, str | None, str]]:
    """(file, above NAME, in NAME, code) of every python and rst block of the guide."""
    blocks = []
    for code in re.findall(r"```(?:python|rst)\n(.*?)```", GUIDE.read_text(), re.S):
        first, _, body = code.partition("\n")
        match = HEADER.fullmatch(first)
        assert match, f"a python block of {GUIDE.name} starts with {first!r}, not a file and a place"
        blocks.append((match.group(1), match.group(2), match.group(3), body))
    return blocks


def apply(project, file: str, above: str | None, within: str | None, code: str) -> None:
    """One block: a new file; code above the line `NAME = {`; or lines before that dict's closing brace."""
    path = project / file
    if above is None and within is None:
        path.write_text(code)
        return
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{above or within} = {{"))
    if above:
        lines[start:start] = [code, "\n\n"]
    else:
        end = next(i for i in range(start, len(lines)) if lines[i].startswith("}"))
        lines[end:end] = [code]
    path.write_text("".join(lines))


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A copy of the project with the guide's edits and its schema regenerated."""
    project = tmp_path_factory.mktemp("extended")
    for folder in ("src", "workflow", "config"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for block in guide_blocks():
        apply(project, *block)
    schema = subprocess.run([sys.executable, "-m", "picollm.config"], capture_output=True, text=True,
                            env={**local_run_env(), "PYTHONPATH": str(project / "src")}, cwd=project)
    assert schema.returncode == 0, schema.stderr
    (project / "config" / "config.schema.yaml").write_text(schema.stdout)
    return project


def test_the_guide_names_every_place_a_type_is_registered():
    places = {(file, above or within) for file, above, within, _ in guide_blocks()}
    assert places == {("src/picollm/models/gru.py", None), ("src/picollm/model_types.py", "MODEL_TYPES"),
                      ("src/picollm/config/sections.py", "MODEL_CLASSES"), ("src/picollm/flops.py", "PARTS"),
                      ("src/picollm/plots/bpb_by_run.py", None), ("workflow/rules/common.smk", "FIGURES"),
                      ("workflow/report/bpb_by_run.rst", None)}


R = "results/tiny"
TARGETS = [f"{R}/tables/eval.md", f"{R}/tables/samples.md", f"{R}/figures/loss_curves.png", f"{R}/report.html"]


def snakemake(project, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(project / "workflow" / "Snakefile"),
                           "--directory", str(project), "--configfile", str(project / "study.yaml"), *args],
                          capture_output=True, text=True, timeout=900, env=local_run_env())


@pytest.fixture(scope="module")
def study(extended):
    """A finished study of the GRU, a sweep point of it and an LSTM, at a FLOPs budget."""
    cfg = tiny_offline_config(steps=10, models={"gru": {"type": "gru", "embed_dim": 16, "hidden_dim": 32},
                                                "lstm": {"type": "lstm", "embed_dim": 16, "hidden_dim": 32}},
                              sweep={"gru": {"hidden_dim": [16]}})
    cfg["train"]["flops"] = 3e8  # equal compute: the budget sets the steps from each type's FLOPs per token
    cfg["train"].pop("max_steps")
    write_config(extended / "study.yaml", cfg)
    proc = snakemake(extended, "--cores", "2", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return extended


def test_a_study_trains_samples_evaluates_and_draws_the_new_type_and_figure(study):
    for run in ("gru", "gru.hidden_dim=16"):
        result = json.loads((study / R / "eval" / run / "seed7.json").read_text())
        summary = json.loads((study / R / "models" / run / "seed7" / "summary.json").read_text())
        assert result["type"] == "gru" and result["val_loss"] > 0 and summary["flops_budget"] == 3e8
        assert 0 < summary["train_flops"] <= 3e8 < summary["train_flops"] + summary["flops_per_token"] * 8 * 32
    assert "| gru " in (study / R / "tables" / "eval.md").read_text()
    assert (study / R / "figures" / "bpb_by_run.svg").is_file()
    record = json.loads((study / R / "provenance" / "figures" / "bpb_by_run.json").read_text())
    assert record["stage"] == "figure bpb_by_run" and "picollm.plots.bpb_by_run" in record["code"]
    assert "each dot one seed's model" in (study / R / "report.html").read_text()  # the caption


def test_editing_the_new_module_reruns_its_runs_and_no_others(study):
    module = study / "src" / "picollm" / "models" / "gru.py"
    code = module.read_text()
    module.write_text(code + "\nEDITED = True\n")
    try:
        plan = snakemake(study, "-n", *TARGETS)
    finally:
        module.write_text(code)
    assert plan.returncode == 0, plan.stderr[-2000:]
    jobs = set(re.findall(r"rule (train|sample|evaluate):\n(?:    .*\n)*?    wildcards: run=([^,\s]+)", plan.stdout))
    assert jobs == {(stage, run) for stage in ("train", "sample", "evaluate") for run in ("gru", "gru.hidden_dim=16")}


def test_a_bad_key_of_the_new_type_is_one_line(extended):
    write_config(extended / "bad.yaml", tiny_offline_config(models={"gru": {"type": "gru", "hiden_dim": 32}}))
    proc = subprocess.run([sys.executable, "-m", "picollm", "validate-config", str(extended / "bad.yaml")],
                          capture_output=True, text=True, env={**local_run_env(), "PYTHONPATH": str(extended / "src")})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {extended / 'bad.yaml'}: unknown config key 'models.gru.hiden_dim'; "
                                   "did you mean 'hidden_dim'? "
                                   "allowed here: embed_dim, "
                                   "hidden_dim, num_layers, train, type")


def test_the_guides_study_file_names_the_new_type(extended):
    """The study file of "Run it" reads, with the GRU beside the offline study's models."""
    study = next(code for code in re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S) if "base:" in code)
    (extended / "config" / "gru.yaml").write_text(study)
    proc = subprocess.run([sys.executable, "-m", "picollm", "validate-config", "config/gru.yaml", "--show"],
                          capture_output=True, text=True, cwd=extended,
                          env={**local_run_env(), "PYTHONPATH": str(extended / "src")})
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["models"]["gru"]["type"] == "gru" and {"kgram_mlp", "lstm", "transformer"} <= set(shown["models"])


def test_a_type_left_out_of_model_types_is_one_line_at_validation(monkeypatch):
    """Step 2 forgotten: the config class exists, the implementation is not registered; validate-config (and
    the workflow, which parses the study the same way) says which step, rather than a KeyError later."""
    from picollm import model_types
    from picollm.config import Study, parse
    from picollm.errors import PicoError

    monkeypatch.delitem(model_types.MODEL_TYPES, "lstm")
    with pytest.raises(PicoError, match=r"^model type 'lstm' has a config class but no entry in "
                                        r"picollm.model_types.MODEL_TYPES; add one \(docs/extending.md, step 2\)$"):
        parse(Study, tiny_offline_config())


def test_a_figure_without_its_caption_is_one_line_before_any_job(extended):
    """Step 3 forgotten: the report job, the last of a run, would fail; the workflow says so when it parses."""
    write_config(extended / "nocaption.yaml", tiny_offline_config())
    caption = extended / "workflow" / "report" / "bpb_by_run.rst"
    text = caption.read_text()
    caption.unlink()
    try:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(extended / "workflow" / "Snakefile"),
                               "--directory", str(extended), "-n", "all", "--configfile",
                               str(extended / "nocaption.yaml")], capture_output=True, text=True, timeout=300,
                              env=local_run_env())
    finally:
        caption.write_text(text)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (f"error: bpb_by_run has no report caption {caption}; write one "
                                                    "(docs/extending.md: a figure of your own)")
