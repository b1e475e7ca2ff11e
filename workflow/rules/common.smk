# The study config, what every job is given, and the registry of figures and tables (picollm.registry), read once.
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
from picollm.model_types import model_types  # noqa: E402

# Every model type's module, read before the config classes are built from them: a part missing is one line.
try:
    model_types()
except PicoError as exc:
    sys.exit(f"error: {exc}")

from picollm import jobs, layout, registry, resume_points, stopped  # noqa: E402
from picollm.codehash import check_syntax  # noqa: E402
from picollm.config import DEFAULT_STUDY, command_line, load_study  # noqa: E402
from picollm.config.changes import since_last_build  # noqa: E402
from picollm.data.check import check_folder  # noqa: E402
from picollm.data.sources import check_local_files  # noqa: E402
from picollm.io import check_room, check_writable  # noqa: E402
from picollm.owner import snakemakes_in  # noqa: E402
from picollm.registry import paths  # noqa: E402
from snakemake.cli import get_argument_parser  # noqa: E402

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
# Snakemake hands the study files over as absolute paths: a line about one names it from the working directory.
try:
    CFG = load_study(
        [
            os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
            for path in workflow.overwrite_configfiles or [ROOT / DEFAULT_STUDY]
        ],
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
R = layout.results_dir(CFG.experiment)
# A disk too full for Snakemake's own lock stops the run here, in one line. Token files that no longer match
# their meta.json stop it too, before Snakemake reruns (and so deletes) anything downstream of them. Checksums of
# files up to 256 MiB, which cost little at every parse; the train and evaluate jobs check the larger ones before
# they read them. So does a local data file that is missing.
# A run's results folder, and every folder in it, writable too: else Snakemake ends in its own traceback (a
# write-protected output, a read-only folder inside) before any job; a dry run, report or graph goes on.
try:
    if workflow.is_main_process and command_line.runs_jobs(
        sys.argv, get_argument_parser
    ):
        check_room(".")
        check_writable(R, tree=True)
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
# the tokenizer a study of tokenizer: bpe:N learns from its text (the train_tokenizer rule)
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
    return CFG.data.source(wildcards.source).local_files


# Where the study's files lie (picollm.registry), every job's benchmark file and provenance record among them.
FILES = registry.StudyFiles(CFG, R)
per_run, first_seed = FILES.per_run, FILES.first_seed
MODEL_DIR = FILES.model_dir
# a training's outputs: model, metrics, summary, health, snapshots
TRAINED = FILES.trained
METRICS = FILES.metrics
MODELS = FILES.models
EVALS = FILES.evals
SAMPLING_PATTERN = FILES.sampling_pattern
REFERENCE = FILES.reference

# A figure of one's own (docs/extending.md): a line here, {name: dict(inputs=..., job=...)}, its inputs the paths
# above (EVALS, METRICS) or a table under R; the registry draws it beside its own.
FIGURES = {
    # "<name>": dict(inputs=EVALS, job=jobs.experiment),
}
# --- the registry (picollm.registry): every figure and table, its caption (workflow/report/<name>.rst), the
# optional outputs this study makes (OUTPUTS.makes) and the files of every job the report measures.
OUTPUTS = registry.outputs(CFG, FILES, own_figures=FIGURES)
MAKES = OUTPUTS.makes
TABLES = OUTPUTS.tables
try:
    registry.check_captions(OUTPUTS, ROOT / "workflow" / "report")
except PicoError as exc:
    sys.exit(f"error: {exc}")


# A target under this study's results folder that none of its rules makes: one line naming why, rather than
# Snakemake's "No rule to produce" it.
if workflow.is_main_process:
    problem = command_line.study_targets_problem(
        sys.argv,
        get_argument_parser,
        workflow.overwrite_configfiles,
        results=R,
        runs=list(RUNS),
        seeds=SEEDS,
        not_made=OUTPUTS.not_made,
        figure_runs=OUTPUTS.figure_runs,
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
    """onstart: a results folder that cannot be written stops a run that would write, in one line, also where
    the workflow runs from Snakemake's Python API (which the parse-time check cannot tell from a dry run); a dry
    run, --summary or --report (no onstart) of someone else's read-only results goes on.
    """
    try:
        check_writable(R)
    except PicoError as exc:
        sys.exit(f"error: {exc}")


atexit.register(lambda: workflow.dryrun and tell_changes())


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


def all_outputs():
    """The report and what it shows; and the token files and models, which Snakemake rebuilds only when a job
    that is to run asks for them: named here, one deleted (to rebuild or retrain it) is made again by `all`.
    """
    tokens = rules.tokenize.output
    return [
        *OUTPUTS.results,
        f"{R}/report.html",
        tokens.train,
        tokens.val,
        tokens.meta,
        *paths(MODELS),
    ]
