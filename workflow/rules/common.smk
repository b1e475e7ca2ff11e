# The study config, what every job is given, and the registry of figures and tables.
import json
import sys
from pathlib import Path

ROOT = Path(workflow.basedir).parent
SRC = str(ROOT / "src")
sys.path.insert(0, SRC)

from picollm import jobs  # noqa: E402
from picollm.config import DEFAULT_STUDY, load_study  # noqa: E402
from picollm.errors import PicoError  # noqa: E402

if Path.cwd().resolve() == Path(workflow.basedir).resolve():
    sys.exit(f"error: run snakemake from the project root ({ROOT}), not from workflow/")

# Study files (--configfile, or the default study) each with its `base:` chain, then --config overrides
# on top: built here rather than by Snakemake's own merge, so a study file replaces the default study.
try:
    CFG = load_study(
        workflow.overwrite_configfiles or [ROOT / DEFAULT_STUDY],
        dict(workflow.config_settings.config),
    )
except PicoError as exc:
    sys.exit(f"config error: {exc}")
config.clear()
config.update(CFG)

# The rules run the checkout's own code (`python -m picollm`), whichever Python (venv or conda env) runs
# them: every shell command exports PYTHONPATH itself, after a conda env is activated (`--sdm conda`
# removes PYTHONPATH from a job's environment, and the env has no picollm installed).
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)
R = f"results/{CFG['experiment']}"
SOURCES = [s["name"] for s in CFG["data"]["sources"]]
MODELS = list(CFG["models"])
TRANSFORMERS = [m for m in MODELS if CFG["models"][m]["type"] == "transformer"]
ENV = "../envs/picollm.yaml"


wildcard_constraints:
    source="|".join(SOURCES),
    model="|".join(MODELS),


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def source_files(wildcards):
    """Local files a `text` source reads: editing one reruns its download."""
    src = jobs.source(CFG, wildcards.source)
    return [*src.get("train_files", []), *src.get("val_files", [])]


def per_model(pattern, models=None):
    """{model: path} for every model (or `models`), pattern holding `{model}`."""
    return {m: pattern.format(model=m) for m in (MODELS if models is None else models)}


# --- the registry: every figure and table, its caption (workflow/report/<name>.rst) and where it comes from --
# A figure is drawn by `picollm figure <name>` from `inputs` ({name: path} or one path); `job` gives its config
# slice, `code` the modules beyond picollm.plots.<name> it runs.
FIGURES = {
    "loss_curves": dict(
        inputs=per_model(f"{R}/models/{{model}}/metrics.csv"), job=jobs.experiment
    ),
    "lr_schedule": dict(
        inputs=per_model(f"{R}/models/{{model}}/metrics.csv"), job=jobs.experiment
    ),
    "grad_norms": dict(
        inputs=per_model(f"{R}/models/{{model}}/metrics.csv"), job=jobs.experiment
    ),
    "sample_comparison": dict(inputs=f"{R}/tables/samples.csv", job=jobs.experiment),
    "sample_slide": dict(inputs=f"{R}/tables/samples.csv", job=jobs.experiment),
    "p_sweep": dict(inputs=f"{R}/eval/sampling.csv", job=jobs.experiment),
}
if TRANSFORMERS:
    FIGURES["attention_heads"] = dict(
        inputs=per_model(f"{R}/models/{{model}}/model.pt", TRANSFORMERS),
        job=jobs.attention_heads,
        code=["picollm.models.transformer"],
    )
FIGURES = {
    name: fig
    for name, fig in FIGURES.items()
    if (ROOT / "src/picollm/plots" / f"{name}.py").is_file()
}

TABLES = {
    "samples_table": f"{R}/tables/samples.csv",
    "models_table": f"{R}/tables/models.csv",
    "eval_table": f"{R}/tables/eval.csv",
    "sampling_table": f"{R}/eval/sampling.csv",
    "provenance_table": f"{R}/tables/provenance.csv",
}


def figure_path(name, ext="png"):
    return f"{R}/figures/{name}.{ext}"


def in_report(path, name, category):
    """An output shown in `snakemake --report` with its caption workflow/report/<name>.rst."""
    return report(path, caption=f"../report/{name}.rst", category=category)


def table(name):
    return in_report(
        TABLES[name], name, "Tables" if name != "provenance_table" else "Provenance"
    )


def job_records():
    """The provenance record of every job upstream of the report."""
    return [
        *expand(f"{R}/provenance/download/{{source}}.json", source=SOURCES),
        f"{R}/provenance/tokenize.json",
        *expand(
            f"{R}/provenance/{{stage}}/{{model}}.json",
            stage=["train", "sample", "evaluate"],
            model=MODELS,
        ),
        f"{R}/provenance/tables.json",
        f"{R}/provenance/eval_tables.json",
        *[f"{R}/provenance/figures/{name}.json" for name in FIGURES],
    ]


def all_results():
    """Every figure and table of the study: what the report shows."""
    return [
        *[figure_path(name, ext) for name in FIGURES for ext in ("png", "svg")],
        *TABLES.values(),
        f"{R}/tables/samples.md",
        f"{R}/tables/models.md",
        f"{R}/tables/eval.md",
        *per_model(f"{R}/eval/{{model}}.json").values(),
    ]


def all_outputs():
    return [*all_results(), f"{R}/report.html"]
