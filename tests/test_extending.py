"""docs/extending.md works as written: its code blocks, applied to a copy of the project with a finished study,
add a GRU model type and a figure. The finished study keeps every job (only the report takes the figure in); the
GRU joins it, trained, sampled, evaluated and drawn at a FLOPs budget beside the LSTM trained before (the schema
regenerated); an edit of a GRU file reruns the GRU's jobs alone; and the figure is drawn with its caption in the
report. A type module that lacks a part is one line when the workflow parses."""
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


R = "results/tiny"
TARGETS = [f"{R}/tables/eval.md", f"{R}/tables/samples.md", f"{R}/figures/loss_curves.png", f"{R}/report.html"]
LSTM = {"type": "lstm", "embed_dim": 16, "hidden_dim": 32}


def snakemake(project, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(project / "workflow" / "Snakefile"),
                           "--directory", str(project), "--configfile", str(project / "study.yaml"), *args],
                          capture_output=True, text=True, timeout=900, env=local_run_env())


def study_config(models: dict, **overrides) -> dict:
    cfg = tiny_offline_config(steps=10, models=models, **overrides)
    cfg["train"]["flops"] = 3e8  # equal compute: the budget sets the steps from each type's FLOPs per token
    cfg["train"].pop("max_steps")
    return cfg


def planned(plan: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, run or "") of every job a dry run lists."""
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)*)", plan.stdout, re.M)
    return {(rule, (re.findall(r"wildcards: run=([^,\s]+)", body) or [""])[0]) for rule, body in jobs}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the project and a study of an LSTM built in it, before anything of the guide."""
    project = tmp_path_factory.mktemp("extended")
    for folder in ("src", "workflow", "config"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    write_config(project / "study.yaml", study_config({"lstm": LSTM}))
    proc = snakemake(project, "--cores", "2", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project


@pytest.fixture(scope="module")
def extended(built):
    """The built project with the guide's edits and its schema regenerated."""
    for block in guide_blocks():
        apply(built, *block)
    schema = subprocess.run([sys.executable, "-m", "picollm.config"], capture_output=True, text=True,
                            env={**local_run_env(), "PYTHONPATH": str(built / "src")}, cwd=built)
    assert schema.returncode == 0, schema.stderr
    (built / "config" / "config.schema.yaml").write_text(schema.stdout)
    return built


def test_the_guide_names_every_place_a_type_is_registered():
    places = {(file, above or within) for file, above, within, _ in guide_blocks()}
    # two new files for the type: no shared file changes, so no other type's job changes
    assert places == {("src/picollm/models/gru.py", None), ("src/picollm/model_types/gru.py", None),
                      ("src/picollm/plots/bpb_by_run.py", None), ("workflow/rules/common.smk", "FIGURES"),
                      ("workflow/report/bpb_by_run.rst", None)}


def test_a_study_built_before_keeps_every_job_but_the_report(extended):
    """The type adds no job to a study without it. The figure is a new job, so the report that shows it and the
    summaries of every job for the report (their provenance and resources) are redrawn; nothing else is."""
    plan = snakemake(extended, "-n", *TARGETS)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert planned(plan) == {("figure_bpb_by_run", ""), ("provenance_table", ""), ("resources", ""),
                             ("figure_resources", ""), ("report", "")}


@pytest.fixture(scope="module")
def study(extended):
    """The study with the GRU and a sweep point of it added beside its LSTM."""
    lstm_model = extended / R / "models" / "lstm" / "seed7" / "model.pt"
    trained = lstm_model.stat().st_mtime_ns
    write_config(extended / "study.yaml", study_config(
        {"gru": {"type": "gru", "embed_dim": 16, "hidden_dim": 32}, "lstm": LSTM}, sweep={"gru": {"hidden_dim": [16]}}))
    plan = snakemake(extended, "-n", *TARGETS)
    proc = snakemake(extended, "--cores", "2", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lstm_model.stat().st_mtime_ns == trained  # the LSTM trained before is kept
    return extended, planned(plan)


def test_a_type_added_to_a_built_study_runs_its_own_jobs_and_the_summaries(study):
    _, plan = study
    assert {(rule, run) for rule, run in plan if run} == {
        (stage, run) for stage in ("train", "sample", "evaluate") for run in ("gru", "gru.hidden_dim=16")}


def test_a_study_trains_samples_evaluates_and_draws_the_new_type_and_figure(study):
    study, _ = study
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


@pytest.mark.parametrize("module", ["models/gru.py", "model_types/gru.py"])
def test_editing_a_module_of_the_new_type_reruns_its_runs_and_no_others(study, module):
    study, _ = study
    path = study / "src" / "picollm" / module
    code = path.read_text()
    path.write_text(code + "\nEDITED = True\n")
    try:
        plan = snakemake(study, "-n", *TARGETS)
    finally:
        path.write_text(code)
    assert plan.returncode == 0, plan.stderr[-2000:]
    jobs = {(rule, run) for rule, run in planned(plan) if rule in ("train", "sample", "evaluate")}
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


GRU_TYPE = "src/picollm/model_types/gru.py"
GRU_MODEL = "src/picollm/models/gru.py"
FLOPS = "def flops_parts(cfg, block_size: int) -> dict:"
STEP = "docs/extending.md, adding a model type, step"
# (what a type module gets wrong, the edit of gru.py or the file beside it that makes the mistake, the line the
# workflow stops with: {path} is gru.py's, {folder} its folder's, {model} the GRU's model file)
MISTAKES = [
    ("no keys class", ("class GRUConfig(ModelKeys):", "class GRUConfig:"),
     f"{{path}} defines 0 subclasses of ModelKeys; give it exactly one, the type's keys ({STEP} 2; a helper "
     "module's name starts with _)"),
    ("no FLOPs", (FLOPS, "def gru_flops(cfg, block_size: int) -> dict:"),
     f"{{path}} has no flops_parts(cfg, block_size), the type's FLOPs; add it ({STEP} 2)"),
    ("no model", ('IMPLEMENTATION = "picollm.models.gru:GRULM"', ""),
     f'{{path}} needs IMPLEMENTATION = "picollm.<module>:<Class>", the type\'s nn.Module ({STEP} 2)'),
    ("a model file missing", ("picollm.models.gru:GRULM", "picollm.models.grus:GRULM"),
     f"{{path}} names IMPLEMENTATION 'picollm.models.grus:GRULM', but src/picollm/models/grus.py is missing; "
     f"write it ({STEP} 1)"),
    ("a model class misspelt", ("picollm.models.gru:GRULM", "picollm.models.gru:GRU"),
     "{path} names IMPLEMENTATION 'picollm.models.gru:GRU', but {model} defines no class GRU; name the class it "
     "defines"),
    ("no head width", ("    hidden_dim: int = Field(256", "    state_dim: int = Field(256"),
     f"{{path}}: GRUConfig has no hidden_dim, the width the output layer reads; name that key hidden_dim, or "
     f"define head_width(cfg) ({STEP} 2)"),
    ("a syntax error", (FLOPS, FLOPS.removesuffix(":")),
     "{path} has a syntax error at line 17 (expected ':'); fix it, then rerun"),
    ("a name not imported", ("from pydantic import Field", "import pydantic"),
     "{path} at line 12: NameError: name 'Field' is not defined; fix it, then rerun"),
    ("an import of a module that reads every type", (
        "from picollm.model_types import ModelKeys, matmul", "from picollm.flops import matmul; from picollm.model_types "
                                                              "import ModelKeys"),
     "{path} imports a module that reads every model type; a type module imports only pydantic, typing and "
     "picollm.model_types"),
    ("a copy of the module", ("gru_backup.py", None),
     "model types 'gru' and 'gru_backup' (src/picollm/model_types/) both name picollm.models.gru:GRULM; a copy of "
     "a type's module is a type of its own: move one out of the folder, or start its name with _"),
    ("a copy under another name", ("gru copy.py", None),
     "{folder}/gru copy.py is no model type: a type is a module named in lower case letters, digits and _ "
     "(gru.py); move it out of the folder, or start a helper module's name with _"),
]


@pytest.mark.parametrize("mistake, edit, line", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_type_module_that_misses_a_part_is_one_line_when_the_workflow_parses(extended, mistake, edit, line):
    path = extended / GRU_TYPE
    code = path.read_text()
    copy = path.parent / edit[0] if edit[1] is None else None  # a second file beside gru.py: gru.py's copy
    if copy:
        copy.write_text(code)
    else:
        assert edit[0] in code
        path.write_text(code.replace(edit[0], edit[1]))
    try:
        plan = snakemake(extended, "-n", *TARGETS)
        check = subprocess.run([sys.executable, "-m", "picollm", "validate-config", "study.yaml"], cwd=extended,
                               capture_output=True, text=True, env={**local_run_env(), "PYTHONPATH": str(extended / "src")})
    finally:
        path.write_text(code)
        if copy:
            copy.unlink()
    line = line.format(path=path, folder=path.parent, model=extended / GRU_MODEL)
    assert plan.returncode == 1 and plan.stderr.strip().splitlines()[-1] == f"error: {line}"
    assert check.returncode == 1 and check.stderr.strip() == f"error: {line}"


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
