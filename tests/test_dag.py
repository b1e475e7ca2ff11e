"""The DAG reruns exactly what changed: every row of docs/reruns.md's "you edit -> these jobs rerun" table, checked
by dry run on a finished tiny study in a copy of the project (so code edits touch the copy only). The copy's path
holds a space, as a checkout under "My Documents" does, so every rule's command runs from such a path."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, local_run_env, tiny_offline_config, write_config
from picollm import tracking

MODELS = ("kgram_mlp", "lstm", "transformer")
AGGREGATES = {"tables", "eval_tables", "provenance_table", "figure_loss_curves", "figure_lr_schedule",
              "figure_grad_norms", "figure_sample_comparison", "figure_sample_slide", "figure_p_sweep", "report"}
STUDY = {"study_config"}  # the validated config the report shows: any config key but the scheduling ones
# tables/resources.csv and its figure read every job's benchmark file: they follow whatever job runs, and only the
# report reads them
COST = {"resources", "figure_resources"}
AGGREGATES |= COST
# the report's pages of the tables (rules/report.smk): they follow the tables and eval_tables jobs
PAGES = {"report_tables"}
AGGREGATES |= PAGES
LOGGERS = ["tensorboard"] if tracking.installed("tensorboard") else []  # the study's, with the tracking extra


def model_jobs(model, stages=("train", "sample", "evaluate")):
    return {f"{stage}[{model}]" for stage in stages}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished two-source tiny study (3seqs + a local text file) with its own tokenizer (bpe:300), run from a
    copy of src/ and workflow/ in a folder whose name holds a space."""
    project = tmp_path_factory.mktemp("my project")
    for folder in ("src", "workflow", "config"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "story.txt").write_text("".join(f"story {i} of a cat and a dog.\n<|endoftext|>\n" for i in range(60)))
    cfg = tiny_offline_config(steps=10, tokenizer="bpe:300")
    cfg["data"]["sources"].append({"kind": "text", "name": "stories", "train_files": ["story.txt"]})
    cfg["train"]["loggers"] = LOGGERS
    write_config(project / "study.yaml", cfg)
    result = run(project, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def run(project, *args, dry=False):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(project / "workflow" / "Snakefile"), "--directory",
           str(project), "--configfile", str(project / "study.yaml"), *(["-n"] if dry else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=local_run_env())


def planned(project, *config) -> set[str]:
    """Jobs a dry run would run, as 'rule' or 'rule[wildcard value]'."""
    result = run(project, *(("--config", *config) if config else ()), dry=True)
    assert result.returncode == 0, result.stderr[-2000:]
    found = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head and head.group(1) != "all":
            wildcards = re.search(r"wildcards: (?:run|source)=([^,\s]+)", block)
            found.add(f"{head.group(1)}[{wildcards.group(1)}]" if wildcards else head.group(1))
    return found


def test_finished_study_has_nothing_to_do(study):
    assert planned(study) == set()


def test_download_record_hashes_the_local_files_it_read(study):
    """A text source's provenance names the sha256 of every file it read, as the study names it; a generated
    source reads none."""
    records = study / "results" / "tiny" / "provenance" / "download"
    story = hashlib.sha256((study / "story.txt").read_bytes()).hexdigest()
    assert json.loads((records / "stories.json").read_text())["inputs"] == {"story.txt": story}
    assert json.loads((records / "3seqs.json").read_text())["inputs"] == {}


def test_one_model_hyperparameter_reruns_that_model_only(study):
    assert planned(study, "models={lstm: {hidden_dim: 48}}") == model_jobs("lstm") | AGGREGATES | STUDY


def test_one_model_learning_rate_reruns_that_model_only(study):
    assert planned(study, "models={lstm: {train: {lr: 0.01}}}") == model_jobs("lstm") | AGGREGATES | STUDY


def test_a_dry_run_ends_with_the_keys_that_changed_since_the_last_build(study):
    """One line names each key that differs from the study's last build (provenance/study.json): the reason its
    jobs rerun, rather than each job's whole config slice before and after. Scheduling keys are no change."""
    result = run(study, "--config", "models={lstm: {hidden_dim: 48}}", "train={lr: 0.01, threads: 2}", dry=True)
    assert result.stderr.strip().splitlines()[-1] == (
        "pico-llm: the study differs from its last build (results/tiny/provenance/study.json), so the jobs that read"
        " these keys rerun: models.lstm.hidden_dim: 32 -> 48; train.lr: 0.003 -> 0.01. The runs they retrain replace"
        " their models in results/tiny/models (to keep those, run the change as a study of its own: --config"
        " experiment=NAME)")
    for unchanged in ([], ["--config", "train={threads: 2}"]):
        assert "pico-llm: the study differs" not in run(study, *unchanged, dry=True).stderr


def test_threads_rerun_nothing(study):
    assert planned(study, "train={threads: 2}") == set()
    assert planned(study, "models={lstm: {train: {threads: 2}}}") == set()


def test_checkpoint_interval_reruns_nothing(study):
    """How often a training saves itself changes no number: a resume from any step is exact."""
    assert planned(study, "train={checkpoint_interval: 3}") == set()
    assert planned(study, "models={lstm: {train: {checkpoint_interval: 3}}}") == set()


def test_adding_or_removing_a_logger_reruns_nothing(study):
    """The study was logged to TensorBoard (with the tracking extra): trackers only watch a training."""
    assert all((study / "results" / "tiny" / "tensorboard" / m / "seed7").is_dir() == bool(LOGGERS) for m in MODELS)
    assert planned(study, "train={loggers: [tensorboard, mlflow, wandb]}") == set()
    assert planned(study, "models={lstm: {train: {loggers: [wandb]}}}") == set()
    assert planned(study, "train={loggers: []}") == set()


def test_p_values_rerun_sampling_and_evaluation(study):
    expected = set().union(*(model_jobs(m, ("sample", "evaluate")) for m in MODELS))
    shown = {"tables", "eval_tables", "provenance_table", "figure_sample_comparison", "figure_sample_slide",
             "figure_p_sweep", "report", *COST, *PAGES}  # the training curves stay: they read metrics.csv only
    assert planned(study, "sampling={p_values: [0.5]}") == expected | shown | STUDY


def test_num_samples_reruns_sampling_evaluation_and_the_real_stories(study):
    expected = set().union(*(model_jobs(m, ("sample", "evaluate")) for m in MODELS)) | {"sampling_reference"}
    shown = {"tables", "eval_tables", "provenance_table", "figure_sample_comparison", "figure_sample_slide",
             "figure_p_sweep", "report", *COST, *PAGES}
    assert planned(study, "sampling={num_samples: 3}") == expected | shown | STUDY


def test_sweep_p_values_rerun_evaluation_only(study):
    expected = {f"evaluate[{m}]" for m in MODELS} | {"eval_tables", "figure_p_sweep", "provenance_table", "report"}
    expected |= STUDY | COST | PAGES
    assert planned(study, "sampling={sweep_p_values: [0.3, 0.6]}") == expected


def test_seed_reruns_generated_data_and_every_model(study):
    jobs = planned(study, "seeds=[8]")
    assert "download[3seqs]" in jobs and "download[stories]" not in jobs  # 3seqs is generated from the seed
    assert all(model_jobs(m) <= jobs for m in MODELS)
    assert "download[3seqs]" in planned(study, "seeds=[8, 7]")  # a seed put first: the first seed's data
    assert "download[3seqs]" not in planned(study, "seeds=[8, 7]", "data_seed=7")  # unless data_seed keeps them


def test_a_source_file_reruns_its_download_and_everything_after(study):
    story = study / "story.txt"
    original = story.read_text()
    try:
        story.write_text(original + "one more story.\n<|endoftext|>\n")
        jobs = planned(study)
    finally:
        story.write_text(original)
        run(study, "--touch", "all")  # back to a finished study for the tests that follow
    assert "download[stories]" in jobs and "download[3seqs]" not in jobs
    assert {"tokenize", *model_jobs("lstm"), *model_jobs("transformer")} <= jobs


@pytest.mark.parametrize("deleted, runs", [
    ("results/tiny/models/lstm/seed7/model.pt", {"train[lstm]", "sample[lstm]", "evaluate[lstm]"}),
    ("results/tiny/models/lstm/seed7", {"train[lstm]", "sample[lstm]", "evaluate[lstm]"}),
    ("results/tiny/data/tokens/train.bin", {"tokenize", *model_jobs("lstm"), *model_jobs("transformer")}),
], ids=["model", "run-folder", "token-file"])
def test_a_deleted_model_or_token_file_is_made_again_by_all(study, deleted, runs):
    """Snakemake rebuilds a missing file only when a job that is to run asks for it; `all` asks for these."""
    path, aside = study / deleted, study / "aside"
    path.rename(aside)
    try:
        jobs = planned(study)
    finally:
        aside.rename(path)
    assert runs <= jobs and "download[3seqs]" not in jobs


def test_block_size_retrains_every_model_but_keeps_the_data(study):
    jobs = planned(study, "block_size=24")
    assert all(model_jobs(m) <= jobs for m in MODELS)
    assert not {j for j in jobs if j.startswith(("download", "train_tokenizer", "tokenize"))}


def edited(study, module: str, text: str):
    """Append `text` to a module of the copy, dry-run, restore it."""
    path = study / "src" / "picollm" / module
    original = path.read_text()
    try:
        path.write_text(original + text)
        return planned(study)
    finally:
        path.write_text(original)


def test_editing_a_figure_module_reruns_that_figure_only(study):
    # grad_norms and lr_schedule import read_metrics from loss_curves, so they follow it
    slide = edited(study, "plots/sample_slide.py", "\nEDITED = 1\n")
    assert slide == {"figure_sample_slide", "provenance_table", "report"} | COST
    jobs = edited(study, "plots/loss_curves.py", "\nEDITED = 1\n")
    assert {"figure_loss_curves", "provenance_table", "report"} | COST <= jobs <= {
        "figure_loss_curves", "figure_grad_norms", "figure_lr_schedule", "provenance_table", "report"} | COST


def test_a_dry_run_names_the_module_edited_since_the_outputs_were_made(study):
    """Config keys are not the only reason a job reruns: the dry run names the edited module too, and nothing once
    the edit is undone."""
    path = study / "src" / "picollm" / "plots" / "sample_slide.py"
    original = path.read_text()
    try:
        path.write_text(original + "\nEDITED = 1\n")
        said = run(study, dry=True).stderr
    finally:
        path.write_text(original)
    assert ("pico-llm: the code differs from what made the study's outputs (results/tiny/provenance/): "
            "picollm.plots.sample_slide; the jobs that run it rerun") in " ".join(said.split())
    assert "the code differs" not in run(study, dry=True).stderr


def test_editing_the_cost_figure_reruns_it_alone(study):
    assert edited(study, "plots/resources.py", "\nEDITED = 1\n") == {"figure_resources", "report"}


def test_editing_the_provenance_table_command_reruns_that_table(study):
    jobs = edited(study, "commands/provenance_table.py", "\nEDITED = 1\n")
    assert jobs == {"provenance_table", "report"} | COST


def test_editing_a_caption_rebuilds_the_report_alone(study):
    """The captions are the report's words (workflow/report/*.rst): the report reads them, nothing else does."""
    path = study / "workflow" / "report" / "loss_curves.rst"
    original, stat = path.read_text(), path.stat()
    try:
        path.write_text(original + "\nEdited.\n")
        assert planned(study) == {"report"}
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as it was: the next tests plan nothing


@pytest.mark.parametrize("module", ["models/transformer.py", "model_types/transformer.py"])
def test_editing_the_transformer_reruns_the_transformer_only(study, module):
    jobs = edited(study, module, "\nEDITED = 1\n")
    assert model_jobs("transformer") | {"figure_attention_heads"} <= jobs
    assert not jobs & (model_jobs("lstm") | model_jobs("kgram_mlp"))


def test_adding_a_model_type_reruns_nothing(study):
    """A type is two new files (docs/extending.md; tests/test_extending.py builds one): no other job runs them."""
    files = {study / "src" / "picollm" / "models" / "rnn.py": "from torch import nn\n\n\nclass RNNLM(nn.Module):\n"
                                                             "    pass\n",
             study / "src" / "picollm" / "model_types" / "rnn.py": (
                 "from picollm.model_types import ModelKeys, matmul\n\nIMPLEMENTATION = 'picollm.models.rnn:RNNLM'\n\n\n"
                 "class RNNConfig(ModelKeys):\n    hidden_dim: int = 32\n\n\n"
                 "def flops_parts(cfg, block_size):\n    return {'recurrent': matmul(cfg.hidden_dim, cfg.hidden_dim)}\n")}
    try:
        for path, code in files.items():
            path.write_text(code)
        assert planned(study) == set()
    finally:
        for path in files:
            path.unlink()


def test_tokenizer_size_retrains_the_tokenizer_and_everything_after(study):
    jobs = planned(study, "tokenizer=bpe:290")
    assert {"train_tokenizer", "tokenize", *(j for m in MODELS for j in model_jobs(m))} | AGGREGATES | STUDY <= jobs
    assert not {j for j in jobs if j.startswith("download")}


def test_editing_the_tokenizer_reruns_tokenization_and_everything_after(study):
    jobs = edited(study, "data/tokenizer.py", "\nEDITED = 1\n")
    assert {"tokenize", *model_jobs("lstm")} <= jobs and not {j for j in jobs if j.startswith("download")}


def test_editing_the_device_module_retrains_but_keeps_the_data(study):
    """device.py (threads, precision, compile) steers the stages that run torch: tokenization runs none."""
    jobs = edited(study, "device.py", "\nEDITED = 1\n")
    assert set(model_jobs("lstm")) <= jobs
    assert not {j for j in jobs if j.startswith(("download", "train_tokenizer", "tokenize"))}


def test_comment_and_docstring_edits_rerun_nothing(study):
    assert edited(study, "models/transformer.py", "\n# a comment\n\n\n") == set()


def test_rewording_a_commands_help_reruns_nothing(study):
    """cli.py is run by every job: a reworded --help must not retrain the study."""
    path = study / "src" / "picollm" / "cli.py"
    original = path.read_text()
    try:
        path.write_text(original.replace('help="', 'help="reworded: ', 1))
        assert path.read_text() != original and planned(study) == set()
    finally:
        path.write_text(original)


def test_adding_a_seed_runs_only_its_jobs_and_the_aggregates(study):
    jobs = planned(study, "seeds=[7, 8]")  # the study's seed is 7
    per_seed = {j for j in jobs if j.startswith(("train[", "sample[", "evaluate["))}
    assert per_seed == set().union(*(model_jobs(m) for m in MODELS))  # one new job of each, for seed 8
    # replicates share the data
    assert not {j for j in jobs if j.startswith(("download", "train_tokenizer", "tokenize"))}
    assert "eval_tables" in jobs and "figure_loss_curves" in jobs


def test_adding_a_sweep_value_runs_only_the_new_run(study):
    jobs = planned(study, "sweep={lstm: {hidden_dim: [24]}}")
    assert {j for j in jobs if j.startswith(("train[", "sample[", "evaluate["))} == model_jobs("lstm.hidden_dim=24")
