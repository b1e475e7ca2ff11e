"""What a study makes and where its jobs write: the registry of figures and tables the workflow's rules are made
from, the optional outputs the study leaves out, and every job's benchmark file and provenance record.

The Snakefile (workflow/rules/common.smk) builds it once from the study and its results folder, and the rules
only read it. No stage command imports this module, so editing its code reruns no job (picollm.codehash); a
path changed here does: Snakemake finds the file missing and reruns the job that writes it.
Pure Python (no torch): it runs whenever the Snakefile is parsed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from picollm import finished, jobs, layout
from picollm.commands import paths
from picollm.config import Study
from picollm.errors import PicoError
from picollm.model_types import model_type

FIGURE_RULE = "figure_"  # figure_<name>: the rule that draws figures/<name>.png (workflow/rules/figures.smk)
# Where a job's provenance record lies when not under its rule's name (a figure's: figures/<name>)
RECORD_NAMES = {"sampling_reference": "reference"}
# Rules that write no provenance record: the table of the records, the study file, the report, an export
NO_RECORD = {"provenance_table", "study_config", "report", "export"}
# Figures that picollm.plots.<name> also draws one run per file (its inputs are {run: path}),
# figures/<name>/<run>.png and .svg beside figures/<name>.png, for slides: every run together is too large.
PER_RUN_FIGURES = {"attention_heads"}


class Job(NamedTuple):
    """A job as tables/resources.csv names it: its rule, its run (a download's: its data source) and its seed,
    None where it has none. A rule's wildcards ("{run}", "{seed}") in their place give its files' patterns."""
    rule: str
    run: str | None = None
    seed: int | str | None = None


def figure_rule(name: str) -> str:
    return f"{FIGURE_RULE}{name}"


def record_name(rule: str) -> str | None:
    """The folder (or file) under provenance/ of a rule's records; None: the rule writes none."""
    if rule in NO_RECORD:
        return None
    if rule.startswith(FIGURE_RULE):
        return f"figures/{rule.removeprefix(FIGURE_RULE)}"
    return RECORD_NAMES.get(rule, rule)


def job_path(name: str, run: str | None, seed: int | str | None) -> str:
    """<name>[/<run>][/seed<k>]: where a job's files lie under benchmarks/ and provenance/."""
    return "/".join([name, *([run] if run is not None else []), *([f"seed{seed}"] if seed is not None else [])])


class StudyFiles:
    """Where a study's files lie under `results` (results/<experiment>): the paths its rules and the registry
    share, patterns with {run} and {seed} filled for every run and seed."""

    def __init__(self, study: Study, results: str):
        self.study, self.results = study, results
        self.model_dir = layout.model_dir(results, "{run}", "{seed}")
        # a training's outputs (picollm.finished names them), {model, metrics, summary, health, snapshots}
        self.trained = {key: f"{self.model_dir}/{name}" for key, name in finished.TRAINED.items()}
        self.metrics = self.per_run(self.trained["metrics"])
        self.models = self.per_run(self.trained["model"])
        self.evals = self.per_run(f"{results}/eval/{{run}}/seed{{seed}}.json")
        # the sampling measures of one run's samples
        self.sampling_pattern = f"{results}/eval/sampling/{{run}}/seed{{seed}}.csv"
        self.sampling_table = f"{results}/eval/sampling.csv"  # the sampling table: every run's and the reference's
        # the sampling measures of real validation stories, one draw per seed
        self.reference = {s: f"{results}/eval/reference/seed{s}.csv" for s in study.seeds}
        self.scaling = {"points": f"{results}/tables/scaling_points.csv", "fits": f"{results}/tables/scaling.csv"}
        # the report's page of the code that made the study, which provenance_table writes beside its table
        self.provenance_page = f"{results}/tables/provenance.html"

    def per_run(self, pattern: str, runs=None) -> dict:
        """{run: {seed: path}} for every run (or `runs`) and seed; pattern holds {run} and {seed}."""
        return {r: {s: pattern.format(run=r, seed=s) for s in self.study.seeds}
                for r in (self.study.runs if runs is None else runs)}

    def first_seed(self, pattern: str, runs=None) -> dict:
        """{run: path} of every run's first seed: the seed whose samples, snapshots and attention maps the tables
        and figures show."""
        return {r: seeds[self.study.seeds[0]] for r, seeds in self.per_run(pattern, runs).items()}

    def table(self, name: str) -> str:
        return f"{self.results}/tables/{name}"

    def figure(self, name: str, ext: str = "png") -> str:
        return f"{self.results}/figures/{name}.{ext}"

    def benchmark(self, rule: str, run: str | None = None, seed: int | str | None = None) -> str:
        """A job's Snakemake benchmark file: benchmarks/<rule>[/<run>][/seed<k>].tsv."""
        return f"{self.results}/benchmarks/{job_path(rule, run, seed)}.tsv"

    def record(self, rule: str, run: str | None = None, seed: int | str | None = None) -> str | None:
        """A job's provenance record, provenance/<record_name>[/<run>][/seed<k>].json; None for a rule that
        writes none."""
        name = record_name(rule)
        return name and f"{self.results}/provenance/{job_path(name, run, seed)}.json"


@dataclass(frozen=True)
class Makes:
    """Which optional outputs a study makes: each is a rule or figure that exists only then."""
    tokenizer: bool  # its own tokenizer (tokenizer: bpe:N): the train_tokenizer rule
    transformers: list[str]  # its runs of type transformer: the attention_heads and layer_health figures
    sweep: bool  # a sweep: section: the sweep figure
    scaling: bool  # figures.scaling: the scaling rule, table and figure
    snapshots: bool  # some run keeps snapshots (train.snapshot_steps): the snapshots rule, table and figure


def makes(study: Study) -> Makes:
    return Makes(tokenizer=jobs.trains_tokenizer(study),
                 transformers=[r for r, entry in study.runs.items() if entry.type == "transformer"],
                 sweep=bool(study.sweep), scaling=study.figures.scaling,
                 snapshots=any(study.train_of(r).snapshot_steps for r in study.runs))


def not_made(made: Makes) -> dict[str, str]:
    """{figure: what the study must set to make it} of the figures (and their tables) the study leaves out, for
    the one-line error a target of one gets."""
    optional = [(["attention_heads", "layer_health"], made.transformers, "a model of type transformer"),
                (["sweep"], made.sweep, "a sweep: section in the study file (docs/configuration.md)"),
                (["scaling"], made.scaling, "figures: {scaling: true} in the study file"),
                (["snapshots"], made.snapshots, "train: {snapshot_steps: [...]} in the study file")]
    return {name: needs for names, on, needs in optional if not on for name in names}


def figures(files: StudyFiles, made: Makes, own: dict) -> dict:
    """Every figure the study draws, {name: dict(inputs, job[, code])}: picollm.plots.<name> draws it from `inputs`
    ({run: {seed: path}}, {run: path} or one path), `job` gives its config slice, `code` the modules beyond
    picollm.plots.<name> it runs. `own`: the figures of one's own (docs/extending.md), after the ones every study
    draws."""
    samples = files.table("samples.csv")
    every_study = {
        "loss_curves": dict(inputs=files.metrics, job=jobs.loss_curves),
        "lr_schedule": dict(inputs=files.metrics, job=jobs.experiment),
        "grad_norms": dict(inputs=files.metrics, job=jobs.experiment),
        "sample_comparison": dict(inputs=samples, job=jobs.experiment),
        "sample_slide": dict(inputs=samples, job=jobs.experiment),
        "p_sweep": dict(inputs=files.sampling_table, job=jobs.experiment),
    }
    return {**every_study, **own, **optional_figures(files, made)}


def optional_figures(files: StudyFiles, made: Makes) -> dict:
    """The figures only some studies draw (not_made says what each needs)."""
    out = {}
    if made.transformers:
        out["attention_heads"] = dict(inputs=files.first_seed(files.trained["model"], made.transformers),
                                      job=jobs.attention_heads, code=model_type("transformer").modules)
        out["layer_health"] = dict(inputs=files.first_seed(files.trained["health"], made.transformers),
                                   job=jobs.experiment)
    if made.sweep:
        out["sweep"] = dict(inputs=files.evals, job=jobs.experiment)
    if made.scaling:
        out["scaling"] = dict(inputs=files.scaling, job=jobs.experiment, code=["picollm.scaling"])
    if made.snapshots:
        out["snapshots"] = dict(inputs=files.table("snapshots.csv"), job=jobs.experiment)
    return out


def tables(files: StudyFiles, made: Makes) -> dict[str, str]:
    """Every table the report shows as a CSV: {name: path}, its caption workflow/report/<name>.rst."""
    return {
        "samples_table": files.table("samples.csv"),
        "models_table": files.table("models.csv"),
        "eval_table": files.table("eval.csv"),
        "compare_table": files.table("compare.csv"),
        "sampling_table": files.sampling_table,
        "provenance_table": files.table("provenance.csv"),
        **({"snapshots_table": files.table("snapshots.csv")} if made.snapshots else {}),
        **({"scaling_table": files.scaling["fits"]} if made.scaling else {}),
        # Where the study's time went, from every job's benchmark file (rules/resources.smk). Built after every
        # job it measures, so that none of them depends on it: only the report reads the table and its figure.
        "resources_table": files.table("resources.csv"),
    }


def report_pages(files: StudyFiles, made: Makes, made_tables: dict) -> dict:
    """The tables the report shows inline, as HTML pages (it only offers a .csv as a download): {page: (what it is
    made from, the caption it shares with its table)}. A Markdown file is rendered as it reads, a CSV as one
    table."""
    return {
        "eval": (files.table("eval.md"), "eval_table"),
        "compare": (made_tables["compare_table"], "compare_table"),
        "models": (files.table("models.md"), "models_table"),
        "samples": (files.table("samples.md"), "samples_table"),
        "sampling": (made_tables["sampling_table"], "sampling_table"),
        **({"snapshots": (files.table("snapshots.md"), "snapshots_table")} if made.snapshots else {}),
        **({"scaling": (made_tables["scaling_table"], "scaling_table")} if made.scaling else {}),
    }


def results(files: StudyFiles, made: Makes, drawn: dict, made_tables: dict) -> list[str]:
    """Every figure and table of the study: what the report shows."""
    return [
        *[files.figure(name, ext) for name in drawn for ext in ("png", "svg")],
        *made_tables.values(),
        files.table("samples.md"),
        files.table("models.md"),
        files.table("eval.md"),
        *([files.table("snapshots.md")] if made.snapshots else []),
        *([files.scaling["points"]] if made.scaling else []),
        *paths(files.evals),
    ]


def measured_jobs(study: Study, made: Makes, drawn: dict) -> list[Job]:
    """Every job upstream of the report but the resources jobs themselves, in the order the pipeline runs them:
    the jobs whose benchmark files tables/resources.csv reads, and whose records tables/provenance.csv reads."""
    per_seed = [Job(stage, run, seed) for stage in ("train", "sample", "evaluate") for run in study.runs
                for seed in study.seeds]
    return [
        *[Job("download", source.name) for source in study.data.sources],
        *([Job("train_tokenizer")] if made.tokenizer else []),
        Job("tokenize"),
        *per_seed,
        *[Job("sampling_reference", seed=seed) for seed in study.seeds],
        Job("tables"),
        Job("eval_tables"),
        *([Job("snapshots")] if made.snapshots else []),
        *([Job("scaling")] if made.scaling else []),
        *[Job(figure_rule(name)) for name in drawn],
        Job("provenance_table"),
    ]


@dataclass(frozen=True)
class Outputs:
    """What the study makes, as the workflow's rules read it."""
    makes: Makes
    figures: dict  # {name: dict(inputs, job[, code])}: a rule each (workflow/rules/figures.smk)
    cost_figures: dict  # the figures of tables/resources.csv, drawn after every job it measures
    figure_runs: dict  # {per-run figure: [run]}: the runs it draws one file each
    tables: dict  # {name: path}
    report_pages: dict  # {page: (made from, caption)}
    not_made: dict  # {figure: what the study must set to make it}
    results: list  # every figure and table file: what the report shows
    # the measured jobs' files, what the resources command reads: {benchmark file: {rule, run, seed, record}}, in
    # pipeline order
    measured: dict

    @property
    def benchmarks(self) -> list[str]:
        """The measured jobs' benchmark files, in pipeline order."""
        return list(self.measured)

    @property
    def records(self) -> list[str]:
        """The provenance records the measured jobs write."""
        return [job["record"] for job in self.measured.values() if job["record"]]


def measured_files(files: StudyFiles, measured: list[Job]) -> dict:
    """{benchmark file: {rule, run, seed, record}} of every measured job, in pipeline order (record None: the job
    writes none)."""
    return {files.benchmark(*job): {**job._asdict(), "record": files.record(*job)} for job in measured}


def outputs(study: Study, files: StudyFiles, own_figures: dict) -> Outputs:
    """The study's registry, with the figures of one's own (`own_figures`, docs/extending.md)."""
    made = makes(study)
    drawn = figures(files, made, own_figures)
    made_tables = tables(files, made)
    cost = {"resources": dict(inputs=made_tables["resources_table"], job=jobs.experiment)}
    measured = measured_files(files, measured_jobs(study, made, drawn))
    return Outputs(
        makes=made, figures=drawn, cost_figures=cost,
        figure_runs={name: list(drawn[name]["inputs"]) for name in PER_RUN_FIGURES & set(drawn)},
        tables=made_tables, report_pages=report_pages(files, made, made_tables), not_made=not_made(made),
        results=results(files, made, {**drawn, **cost}, made_tables), measured=measured)


def check_captions(out: Outputs, captions: Path) -> None:
    """A result without its caption (captions/<name>.rst) would stop only the report job, the run's last: said
    before the first job."""
    for name in [*out.figures, *out.tables, *out.cost_figures]:
        if not (captions / f"{name}.rst").is_file():
            raise PicoError(f"{name} has no report caption {captions / name}.rst; write one "
                            "(docs/extending.md: a figure of your own)")
