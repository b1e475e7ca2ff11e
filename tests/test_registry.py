"""picollm.registry, without Snakemake: which optional outputs a study makes, its figures and tables, and the one
spelling of every job's benchmark file and provenance record that the rules, tables/resources.csv and
tables/provenance.csv share."""
import re

import pytest

from conftest import ROOT, tiny_offline_config
from picollm import jobs, registry
from picollm.config import Study, parse
from picollm.errors import PicoError
from picollm.registry import Job, StudyFiles
from picollm.resources import job_of

R = "results/tiny"
EVERY_STUDY = ["loss_curves", "lr_schedule", "grad_norms", "sample_comparison", "sample_slide", "p_sweep"]


def study(**overrides) -> Study:
    return parse(Study, tiny_offline_config(**overrides))


def lstm_only() -> Study:
    """A study that leaves out every optional output: no Transformer, sweep, scaling, snapshots or own tokenizer."""
    return study(models={"lstm": {"type": "lstm", "embed_dim": 16, "hidden_dim": 32}})


def everything() -> Study:
    """A study that makes every optional output."""
    cfg = tiny_offline_config(sweep={"transformer": {"d_model": [16]}}, figures={"scaling": True},
                              tokenizer="bpe:300", seeds=[7, 8])
    cfg["train"]["snapshot_steps"] = [0, 20]
    return parse(Study, cfg)


def outputs(cfg: Study, own: dict | None = None) -> registry.Outputs:
    return registry.outputs(cfg, StudyFiles(cfg, R), own_figures=own or {})


def test_which_optional_outputs_a_study_makes():
    assert registry.makes(lstm_only()) == registry.Makes(tokenizer=False, transformers=[], sweep=False, scaling=False,
                                                         snapshots=False)
    made = registry.makes(everything())
    assert made.tokenizer and made.sweep and made.scaling and made.snapshots
    assert made.transformers == ["transformer", "transformer.d_model=16"]


def test_a_study_that_leaves_out_every_optional_output():
    out = outputs(lstm_only())
    assert list(out.figures) == EVERY_STUDY and list(out.cost_figures) == ["resources"] and out.figure_runs == {}
    assert out.not_made == {"attention_heads": "a model of type transformer",
                            "layer_health": "a model of type transformer",
                            "sweep": "a sweep: section in the study file (docs/configuration.md)",
                            "scaling": "figures: {scaling: true} in the study file",
                            "snapshots": "train: {snapshot_steps: [...]} in the study file"}
    assert list(out.tables) == ["samples_table", "models_table", "eval_table", "compare_table", "sampling_table",
                                "provenance_table", "resources_table"]
    assert list(out.report_pages) == ["eval", "compare", "models", "samples", "sampling"]
    assert not {f"{R}/tables/snapshots.md", f"{R}/tables/scaling_points.csv"} & set(out.results)
    assert {"train_tokenizer", "snapshots", "scaling"}.isdisjoint(job.rule for job in registry.measured_jobs(
        lstm_only(), out.makes, out.figures))


def test_a_study_that_makes_every_optional_output():
    cfg = everything()
    out = outputs(cfg)
    assert list(out.figures) == [*EVERY_STUDY, "attention_heads", "layer_health", "sweep", "scaling", "snapshots"]
    assert out.not_made == {}
    assert out.figures["attention_heads"]["inputs"] == {
        run: f"{R}/models/{run}/seed7/model.pt" for run in ["transformer", "transformer.d_model=16"]}
    assert out.figure_runs == {"attention_heads": ["transformer", "transformer.d_model=16"]}
    assert out.figures["scaling"]["code"] == ["picollm.scaling"]
    assert out.tables["snapshots_table"] == f"{R}/tables/snapshots.csv"
    assert out.tables["scaling_table"] == f"{R}/tables/scaling.csv" and list(out.tables)[-1] == "resources_table"
    assert out.report_pages["snapshots"] == (f"{R}/tables/snapshots.md", "snapshots_table")
    assert out.report_pages["scaling"] == (f"{R}/tables/scaling.csv", "scaling_table")
    assert {f"{R}/tables/snapshots.md", f"{R}/tables/scaling_points.csv", f"{R}/figures/resources.svg",
            f"{R}/eval/transformer.d_model=16/seed8.json"} <= set(out.results)


def test_a_figure_of_ones_own_is_drawn_measured_and_reported():
    own = {"bpb_by_run": dict(inputs=StudyFiles(lstm_only(), R).evals, job=jobs.experiment)}
    out = outputs(lstm_only(), own)
    assert list(out.figures) == [*EVERY_STUDY, "bpb_by_run"]
    assert f"{R}/figures/bpb_by_run.png" in out.results
    assert out.measured[f"{R}/benchmarks/figure_bpb_by_run.tsv"] == {
        "rule": "figure_bpb_by_run", "run": None, "seed": None, "record": f"{R}/provenance/figures/bpb_by_run.json"}


def test_a_figure_without_its_caption_is_one_line(tmp_path):
    out = outputs(lstm_only())
    registry.check_captions(out, ROOT / "workflow" / "report")
    with pytest.raises(PicoError) as err:
        registry.check_captions(out, tmp_path)
    assert str(err.value) == (f"loss_curves has no report caption {tmp_path / 'loss_curves'}.rst; write one "
                              "(docs/extending.md: a figure of your own)")


@pytest.mark.parametrize("job, benchmark, record", [
    (Job("download", "3seqs"), "benchmarks/download/3seqs.tsv", "provenance/download/3seqs.json"),
    (Job("tokenize"), "benchmarks/tokenize.tsv", "provenance/tokenize.json"),
    (Job("train", "lstm", 7), "benchmarks/train/lstm/seed7.tsv", "provenance/train/lstm/seed7.json"),
    (Job("train", "{run}", "{seed}"), "benchmarks/train/{run}/seed{seed}.tsv",
     "provenance/train/{run}/seed{seed}.json"),
    (Job("sampling_reference", seed=7), "benchmarks/sampling_reference/seed7.tsv", "provenance/reference/seed7.json"),
    (Job("figure_loss_curves"), "benchmarks/figure_loss_curves.tsv", "provenance/figures/loss_curves.json"),
    (Job("provenance_table"), "benchmarks/provenance_table.tsv", None),
    (Job("export", "{run}", "{seed}"), "benchmarks/export/{run}/seed{seed}.tsv", None),
])
def test_where_a_jobs_benchmark_file_and_record_lie(job, benchmark, record):
    files = StudyFiles(lstm_only(), R)
    assert files.benchmark(*job) == f"{R}/{benchmark}"
    assert files.record(*job) == (record and f"{R}/{record}")


def test_every_measured_job_is_named_by_its_files_and_read_back_alike():
    """The resources command is given each benchmark file's job; job_of, which reads it back from the path for a
    file given alone, finds the same."""
    cfg = everything()
    out = outputs(cfg)
    root = f"{R}/benchmarks"
    assert out.benchmarks == list(out.measured) and len(out.benchmarks) == len(set(out.benchmarks))
    for bench, job in out.measured.items():
        assert job_of(bench, root) == {k: job[k] for k in ("rule", "run", "seed")}
    assert out.records == [job["record"] for job in out.measured.values() if job["record"]]
    rules = [job["rule"] for job in out.measured.values()]
    assert rules[:3] == ["download", "train_tokenizer", "tokenize"] and rules[-1] == "provenance_table"
    assert {"snapshots", "scaling", "sampling_reference"} <= set(rules)
    assert rules.count("train") == len(cfg.runs) * len(cfg.seeds)


def rule_blocks() -> dict[str, str]:
    """{rule: its text} of every rule in workflow/rules/*.smk (the figures' one loop as figure_{name})."""
    blocks = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        parts = re.split(r"^\s*rule(?: (\w+))?:\n", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name or "figure_{name}"] = body
    return blocks


def test_every_rule_takes_its_benchmark_file_and_record_from_the_registry():
    """Every benchmark file and provenance record is spelled once (StudyFiles): a rule that spelled its own could
    drift from what tables/resources.csv and tables/provenance.csv read."""
    blocks = rule_blocks()
    assert {"train", "sampling_reference", "figure_{name}", "resources"} <= set(blocks)
    for name, body in blocks.items():
        own = "registry.figure_rule(name)" if name == "figure_{name}" else f'"{name}"'
        assert f"FILES.benchmark({own}" in body, name
        assert "benchmarks/" not in body and not re.search(r"provenance=f?\"", body), name


def test_every_measured_job_is_a_rule_of_the_workflow():
    """A rule renamed in workflow/rules/ without its name here would leave its jobs out of tables/resources.csv."""
    rules = set(rule_blocks())
    out = outputs(everything())
    for job in out.measured.values():
        assert job["rule"] in rules or job["rule"].startswith(registry.FIGURE_RULE), job
