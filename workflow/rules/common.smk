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

from picollm.errors import one_line  # noqa: E402
from picollm.model_types import model_types  # noqa: E402

# Every model type's module, read before the config classes are built from them: a part missing is one line.
with one_line():
    model_types()

from picollm import jobs, layout, registry, resume_points, start, stopped  # noqa: E402
from picollm.codehash import code_changes_line  # noqa: E402
from picollm.config.changes import since_last_build  # noqa: E402
from picollm.io import check_writable  # noqa: E402
from picollm.registry import paths  # noqa: E402
from snakemake.cli import get_argument_parser  # noqa: E402

# Before any job is planned (picollm.start): where Snakemake runs, --unlock, the study built once (a bad key is
# one line naming the study file that gives it), then the files a run starts from.
with one_line():
    start.check_directory(workflow, ROOT)
    start.check_unlock(workflow, sys.argv)
with one_line("config error"):
    CFG = start.study(workflow, ROOT)
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
# results/ lies here: a dry run's closing lines are said after Snakemake has left it
WORKDIR = Path.cwd()
with one_line():
    start.check_device(workflow, sys.argv, get_argument_parser, CFG)
    start.check_files(workflow, sys.argv, get_argument_parser, CFG, R)
    start.check_cluster(workflow, sys.argv, get_argument_parser, CFG)
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


with one_line():
    registry.check_captions(OUTPUTS, ROOT / "workflow" / "report")
    start.check_targets(workflow, sys.argv, get_argument_parser, CFG, R, OUTPUTS)

# Why jobs rerun, key by key, rather than in each job's whole config slice before and after: said below a dry
# run's plan, and at the start of a run (the Snakefile's onstart).
CHANGED = workflow.is_main_process and since_last_build(
    Path(f"{R}/provenance/study.json"), STUDY_FILE
)


def tell_changes():
    """Why jobs rerun: the config keys that differ from the last build, and the modules edited since the
    study's outputs were made (their provenance records)."""
    code = workflow.is_main_process and code_changes_line(
        Path(R, "provenance"), WORKDIR
    )
    for line in (CHANGED, code):
        if line:
            print(f"pico-llm: {line}", file=sys.stderr)


def tell_waiting():
    line = resume_points.waiting(Path(R))
    if line:
        print(f"pico-llm: {line}", file=sys.stderr)


def check_results_writable():
    """onstart: a results folder that cannot be written stops a run that would write, in one line, also where
    the workflow runs from Snakemake's Python API (which the parse-time check cannot tell from a dry run); a dry
    run, --summary or --report (no onstart) of someone else's read-only results goes on.
    """
    with one_line():
        check_writable(R)


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
