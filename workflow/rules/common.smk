# The study config, what every job is given, and the registry of figures and tables.
import atexit
import json
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(workflow.basedir).parent
SRC = str(ROOT / "src")
# This checkout's own code, also where picollm is not installed (the conda environments) or another checkout's
# is (one venv for several clones): the Snakefile plans jobs with the code its rules run.
sys.path.insert(0, SRC)

from picollm.errors import PicoError  # noqa: E402
from picollm.model_types import model_type, model_types  # noqa: E402

# Every model type's module, read before the config classes are built from them: a part missing is one line.
try:
    model_types()
except PicoError as exc:
    sys.exit(f"error: {exc}")

from picollm import jobs, resume_points, stopped  # noqa: E402
from picollm.codehash import check_syntax  # noqa: E402
from picollm.config import DEFAULT_STUDY, command_line, load_study  # noqa: E402
from picollm.config.changes import since_last_build  # noqa: E402
from picollm.data.check import check_folder  # noqa: E402
from picollm.data.sources import check_local_files  # noqa: E402
from picollm.io import check_room, check_writable  # noqa: E402
from picollm.owner import snakemakes_in  # noqa: E402

# results/ and the relative paths of the study files land in the working directory: the project root, or one
# named on purpose with --directory (jobs that Snakemake itself starts inherit it).
if (
    workflow.is_main_process
    and workflow.overwrite_workdir is None
    and Path.cwd().resolve() != ROOT.resolve()
):
    sys.exit(
        f"error: run snakemake from the project root ({ROOT}), not from {Path.cwd()}; "
        f"or name the working directory on purpose with --directory DIR"
    )

# --unlock takes the lock from whatever holds it: refused while a snakemake still runs here, whose files a
# second run would then write over. It is for a lock left by a snakemake that is gone (killed, a power loss).
if (
    workflow.is_main_process
    and "--unlock" in sys.argv
    and (running := snakemakes_in(Path.cwd()))
):
    pids = ", ".join(map(str, running))
    sys.exit(
        f"error: --unlock while snakemake (pid {pids}) runs in this directory would let two runs write the "
        f"same files; wait for it to end (or stop it: kill {pids}); --unlock is for the lock of a snakemake "
        f"that is gone"
    )

# Study files (--configfile, or the default study) each with its `base:` chain, then --config overrides
# on top: built here rather than by Snakemake's own merge, so a study file replaces the default study.
try:
    CFG = load_study(
        workflow.overwrite_configfiles or [ROOT / DEFAULT_STUDY],
        dict(workflow.config_settings.config),
    )
    check_syntax()
except PicoError as exc:
    sys.exit(f"config error: {exc}")
# Snakemake's `config`, which the report shows: the validated study as a study file (jobs.study_file, as
# provenance/study.json holds it), the scheduling keys that change no result left out.
STUDY_FILE = jobs.study_file(CFG)
config.clear()
config.update(STUDY_FILE)

# The rules run the checkout's own code (`python -m picollm`), whichever Python (venv or conda env) runs
# them: every shell command exports PYTHONPATH itself, after a conda env is activated (`--sdm conda`
# removes PYTHONPATH from a job's environment, and the env has no picollm installed). The path is quoted
# for the shell (a checkout under "My Documents") and its braces escaped from Snakemake's formatting.
SRC_SHELL = shlex.quote(SRC).replace("{", "{{").replace("}", "}}")
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC_SHELL}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)
R = f"results/{CFG.experiment}"
# A disk too full for Snakemake's own lock stops the run here, in one line. Token files that no longer match
# their meta.json stop it too, before Snakemake reruns (and so deletes) anything downstream of them. Checksums of
# files up to 256 MiB, which cost little at every parse; the train and evaluate jobs check the larger ones before
# they read them. So does a local data file that is missing.
try:
    if workflow.is_main_process and not workflow.dryrun:
        check_room(".")
    check_folder(f"{R}/data/tokens", checksum_up_to=256 << 20)
    check_local_files(CFG.data.sources)
except PicoError as exc:
    sys.exit(f"error: {exc}")
SOURCES = [s.name for s in CFG.data.sources]
RUNS = CFG.runs  # {run: model config}: every model, then every sweep point
# device: auto is decided once, here, and every job is handed the answer: a job that parses the workflow again on
# a SLURM compute node then asks for the GPUs its sbatch was given, whatever that node has.
if workflow.is_main_process:
    os.environ.setdefault(jobs.AUTO_GPU, str(int(jobs.needs_gpu("auto"))))
SEEDS = CFG.seeds
# the seed whose samples, snapshots and attention maps the tables and figures show
FIRST = SEEDS[0]
TRANSFORMERS = [r for r, entry in RUNS.items() if entry.type == "transformer"]
# tokenizer: bpe:N, learnt from the study's text by the train_tokenizer rule
TRAINED_TOKENIZER = jobs.trains_tokenizer(CFG)
TOKENIZER_JSON = f"{R}/data/tokenizer.json"
ENV = "../envs/picollm.yaml"


wildcard_constraints:
    source="|".join(re.escape(s) for s in SOURCES),
    run="|".join(re.escape(r) for r in RUNS),
    seed=r"\d+",


# A run on several machines (train.nodes > 1) is a SLURM job of another shape: rule train_nodes.
NODES_RUNS = [r for r in RUNS if jobs.train_nodes(CFG, r) > 1]


def one_of(names):
    """A wildcard constraint matching exactly these names (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def source_files(wildcards):
    """Local files a `text` source reads: editing one reruns its download."""
    src = CFG.data.source(wildcards.source)
    return [*src.train_files, *src.val_files] if src.kind == "text" else []


def per_run(pattern, runs=None):
    """{run: {seed: path}} for every run (or `runs`) and seed; pattern holds {run} and {seed}."""
    return {
        r: {s: pattern.format(run=r, seed=s) for s in SEEDS}
        for r in (RUNS if runs is None else runs)
    }


def first_seed(pattern, runs=None):
    """{run: path} of every run's first seed."""
    return {r: seeds[FIRST] for r, seeds in per_run(pattern, runs).items()}


def paths(nested):
    """Every path of a {run: {seed: path}} or {run: path} mapping."""
    return [
        p for v in nested.values() for p in (v.values() if isinstance(v, dict) else [v])
    ]


MODEL_DIR = f"{R}/models/{{run}}/seed{{seed}}"
METRICS = per_run(f"{MODEL_DIR}/metrics.csv")
MODELS = per_run(f"{MODEL_DIR}/model.pt")
EVALS = per_run(f"{R}/eval/{{run}}/seed{{seed}}.json")
SAMPLING_PATTERN = f"{R}/eval/sampling/{{run}}/seed{{seed}}.csv"  # the sampling measures of one run's samples
# the sampling measures of real validation stories, one draw per seed
REFERENCE = {s: f"{R}/eval/reference/seed{s}.csv" for s in SEEDS}

# --- the registry: every figure and table, its caption (workflow/report/<name>.rst) and where it comes from --
# A figure is drawn by `picollm figure <name>` from `inputs` ({run: {seed: path}}, {run: path} or one path);
# `job` gives its config slice, `code` the modules beyond picollm.plots.<name> it runs.
FIGURES = {
    "loss_curves": dict(inputs=METRICS, job=jobs.loss_curves),
    "lr_schedule": dict(inputs=METRICS, job=jobs.experiment),
    "grad_norms": dict(inputs=METRICS, job=jobs.experiment),
    "sample_comparison": dict(inputs=f"{R}/tables/samples.csv", job=jobs.experiment),
    "sample_slide": dict(inputs=f"{R}/tables/samples.csv", job=jobs.experiment),
    "p_sweep": dict(inputs=f"{R}/eval/sampling.csv", job=jobs.experiment),
}
# Figures that picollm.plots.<name> also draws one run per file (its inputs are {run: path}),
# figures/<name>/<run>.png and .svg beside figures/<name>.png, for slides: every run together is too large.
PER_RUN_FIGURES = {"attention_heads"}
# The figures (and their tables) a study can leave out: {name: what the study must set to make it}, for the
# one-line error a target of one that is left out gets.
NOT_MADE = {}


def makes(names, on, needs):
    """Whether the study makes the figures `names`; when it does not, what it `needs` to."""
    NOT_MADE.update({} if on else dict.fromkeys(names, needs))
    return on


if makes(
    ["attention_heads", "layer_health"], TRANSFORMERS, "a model of type transformer"
):
    FIGURES["attention_heads"] = dict(
        inputs=first_seed(f"{MODEL_DIR}/model.pt", TRANSFORMERS),
        job=jobs.attention_heads,
        code=model_type("transformer").modules,
    )
    FIGURES["layer_health"] = dict(
        inputs=first_seed(f"{MODEL_DIR}/layer_health.csv", TRANSFORMERS),
        job=jobs.experiment,
    )
if makes(
    ["sweep"], CFG.sweep, "a sweep: section in the study file (docs/configuration.md)"
):
    FIGURES["sweep"] = dict(inputs=EVALS, job=jobs.experiment)
SCALING = {
    "points": f"{R}/tables/scaling_points.csv",
    "fits": f"{R}/tables/scaling.csv",
}
if makes(
    ["scaling"], CFG.figures.scaling, "figures: {scaling: true} in the study file"
):
    FIGURES["scaling"] = dict(
        inputs=SCALING, job=jobs.experiment, code=["picollm.scaling"]
    )
SNAPSHOTS = any(CFG.train_of(r).snapshot_steps for r in RUNS)
if makes(["snapshots"], SNAPSHOTS, "train: {snapshot_steps: [...]} in the study file"):
    FIGURES["snapshots"] = dict(inputs=f"{R}/tables/snapshots.csv", job=jobs.experiment)

TABLES = {
    "samples_table": f"{R}/tables/samples.csv",
    "models_table": f"{R}/tables/models.csv",
    "eval_table": f"{R}/tables/eval.csv",
    "compare_table": f"{R}/tables/compare.csv",
    "sampling_table": f"{R}/eval/sampling.csv",
    "provenance_table": f"{R}/tables/provenance.csv",
}
if SNAPSHOTS:
    TABLES["snapshots_table"] = f"{R}/tables/snapshots.csv"
if CFG.figures.scaling:
    TABLES["scaling_table"] = SCALING["fits"]
# Where the study's time went, from every job's benchmark file (rules/resources.smk). Built after every job it
# measures, so that none of them depends on it: only the report reads the table and its figure.
TABLES["resources_table"] = f"{R}/tables/resources.csv"
COST_FIGURES = {
    "resources": dict(inputs=TABLES["resources_table"], job=jobs.experiment),
}
# A result without its caption would stop only the report job, the run's last: say so before the first job.
CAPTIONS = ROOT / "workflow" / "report"
for name in [*FIGURES, *TABLES, *COST_FIGURES]:
    if not (CAPTIONS / f"{name}.rst").is_file():
        sys.exit(
            f"error: {name} has no report caption {CAPTIONS / name}.rst; write one "
            "(docs/extending.md: a figure of your own)"
        )


# A target under this study's results folder that none of its rules makes: one line naming why, rather than
# Snakemake's "No rule to produce" it.
if workflow.is_main_process:
    from snakemake.cli import get_argument_parser

    problem = command_line.study_targets_problem(
        sys.argv,
        get_argument_parser,
        workflow.overwrite_configfiles,
        results=R,
        runs=list(RUNS),
        seeds=SEEDS,
        not_made=NOT_MADE,
        figure_runs={
            n: list(FIGURES[n]["inputs"]) for n in PER_RUN_FIGURES & set(FIGURES)
        },
    )
    if problem:
        sys.exit(f"error: {problem}")

# Why jobs rerun, key by key, rather than in each job's whole config slice before and after: said below a dry
# run's plan, and at the start of a run (the Snakefile's onstart).
CHANGED = workflow.is_main_process and since_last_build(
    Path(f"{R}/provenance/study.json"), STUDY_FILE
)


def tell_changes():
    if CHANGED:
        print(f"pico-llm: {CHANGED}", file=sys.stderr)


def tell_waiting():
    line = resume_points.waiting(Path(R))
    if line:
        print(f"pico-llm: {line}", file=sys.stderr)


def check_results_writable():
    """onstart: a results folder that cannot be written stops a run that would write, in one line; a dry run,
    --summary or --report (no onstart) of someone else's read-only results goes on."""
    try:
        check_writable(R)
    except PicoError as exc:
        sys.exit(f"error: {exc}")


atexit.register(lambda: workflow.dryrun and tell_changes())


def figure_path(name, ext="png"):
    return f"{R}/figures/{name}.{ext}"


# how the report names a result's file by its ending: a table comes as a page to read and a CSV to download
FORMATS = {"png": "figure", "html": "page", "csv": "CSV download"}


def in_report(path, name, category):
    """An output shown in `snakemake --report` with its caption workflow/report/<name>.rst, listed by name
    and format rather than by its path (which widens the report's menu past a third of a laptop screen).
    """
    return report(
        path,
        caption=f"../report/{name}.rst",
        category=category,
        labels={
            "name": name.removesuffix("_table"),
            "format": FORMATS[Path(path).suffix[1:]],
        },
    )


def table(name):
    return in_report(
        TABLES[name], name, "Tables" if name != "provenance_table" else "Provenance"
    )


def job_files():
    """(benchmark file, provenance record) of every job upstream of the report but the resources jobs
    themselves: benchmarks/<rule>[/<run or source>][/seed<k>].tsv, what tables/resources.csv reads, beside the
    record the job writes (None: provenance_table writes none), what tables/provenance.csv reads.
    """
    per_seed = [
        (f"{stage}/{run}/seed{seed}",) * 2
        for stage in ("train", "sample", "evaluate")
        for run in RUNS
        for seed in SEEDS
    ]
    jobs = [
        *[(f"download/{source}",) * 2 for source in SOURCES],
        *([("train_tokenizer",) * 2] if TRAINED_TOKENIZER else []),
        ("tokenize", "tokenize"),
        *per_seed,
        *[
            (f"sampling_reference/seed{seed}", f"reference/seed{seed}")
            for seed in SEEDS
        ],
        ("tables", "tables"),
        ("eval_tables", "eval_tables"),
        *([("snapshots", "snapshots")] if SNAPSHOTS else []),
        *([("scaling", "scaling")] if CFG.figures.scaling else []),
        *[(f"figure_{name}", f"figures/{name}") for name in FIGURES],
        ("provenance_table", None),
    ]
    return [
        (f"{R}/benchmarks/{bench}.tsv", record and f"{R}/provenance/{record}.json")
        for bench, record in jobs
    ]


def job_records():
    """The provenance record of every job upstream of the report."""
    return [record for _, record in job_files() if record]


def job_benchmarks():
    """The benchmark file of every job upstream of the report but the resources jobs themselves."""
    return [bench for bench, _ in job_files()]


def all_results():
    """Every figure and table of the study: what the report shows."""
    return [
        *[
            figure_path(name, ext)
            for name in {**FIGURES, **COST_FIGURES}
            for ext in ("png", "svg")
        ],
        *TABLES.values(),
        f"{R}/tables/samples.md",
        f"{R}/tables/models.md",
        f"{R}/tables/eval.md",
        *([f"{R}/tables/snapshots.md"] if SNAPSHOTS else []),
        *([SCALING["points"]] if CFG.figures.scaling else []),
        *paths(EVALS),
    ]


def all_outputs():
    """The report and what it shows; and the token files and models, which Snakemake rebuilds only when a job
    that is to run asks for them: named here, one deleted (to rebuild or retrain it) is made again by `all`.
    """
    tokens = rules.tokenize.output
    return [
        *all_results(),
        f"{R}/report.html",
        tokens.train,
        tokens.val,
        tokens.meta,
        *paths(MODELS),
    ]
