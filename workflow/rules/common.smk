# Config validation and path helpers (one function per output family).
import json
import os
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir).parent / "src")
sys.path.insert(0, SRC)

from picollm.config import model_spec, model_train, validate  # noqa: E402
from picollm.device import needs_gpu  # noqa: E402
from picollm.errors import PicoError  # noqa: E402

try:
    CFG = validate(config)
except PicoError as exc:
    sys.exit(f"config error: {exc}")

# The rules run the checkout's own code (`python -m picollm`), whichever Python (venv or conda env) runs
# them: every shell command exports PYTHONPATH itself, after a conda env is activated (`--sdm conda`
# removes PYTHONPATH from a job's environment, and the env has no picollm installed).
shell.prefix(f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
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


def source_cfg(name):
    return next(s for s in CFG["data"]["sources"] if s["name"] == name)


def source_files(wildcards):
    """Local files a `text` source reads: editing one reruns its download."""
    src = source_cfg(wildcards.source)
    return [*src.get("train_files", []), *src.get("val_files", [])]


def raw_text(split):
    return expand(f"{R}/data/raw/{{source}}/{split}.txt", source=SOURCES)


def model_files(name="{model}"):
    return {
        "model": f"{R}/models/{name}/model.pt",
        "metrics": f"{R}/models/{name}/metrics.csv",
        "summary": f"{R}/models/{name}/summary.json",
    }


def figures():
    out = [f"{R}/figures/loss_curves.png", f"{R}/figures/sample_comparison.png"]
    if TRANSFORMERS:
        out.append(f"{R}/figures/attention_heads.png")
    out += [f"{R}/figures/p_sweep.png", f"{R}/figures/grad_norms.png"]
    return out


def eval_outputs():
    return [
        *expand(f"{R}/eval/{{model}}.json", model=MODELS),
        f"{R}/eval/sampling.csv",
        f"{R}/tables/eval.csv",
        f"{R}/tables/eval.md",
    ]


def caption(name):
    """workflow/report/<name>.rst, relative to the working directory (the project root)."""
    return os.path.relpath(Path(workflow.basedir) / "report" / f"{name}.rst")


def report_figures():
    """{figure: caption}: a figure's caption is report/<figure stem>.rst."""
    return {f: caption(Path(f).stem) for f in figures()}


def report_tables():
    return {
        f"{R}/tables/eval.csv": caption("eval_table"),
        f"{R}/eval/sampling.csv": caption("sampling_table"),
        f"{R}/tables/models.md": caption("models_table"),
        f"{R}/tables/samples.csv": caption("samples_table"),
    }


def report_provenance():
    """The provenance records of the jobs upstream of the report, listed in it."""
    return [
        *expand(f"{R}/provenance/download/{{source}}.json", source=SOURCES),
        f"{R}/provenance/tokenize.json",
        *expand(f"{R}/provenance/{{stage}}/{{model}}.json", stage=["train", "sample", "evaluate"], model=MODELS),
        f"{R}/provenance/tables.json",
        f"{R}/provenance/eval_tables.json",
        *[f"{R}/provenance/figures/{Path(f).stem}.json" for f in figures()],
    ]


def config_file_names():
    """The --configfile(s) of this run: relative to the project when inside it, else absolute."""
    cwd = Path.cwd().resolve()
    return [
        os.path.relpath(p) if Path(p).resolve().is_relative_to(cwd) else str(Path(p).resolve())
        for p in workflow.configfiles
    ]


def all_outputs():
    return [
        *figures(),
        f"{R}/tables/samples.csv",
        f"{R}/tables/samples.md",
        f"{R}/tables/models.md",
        *eval_outputs(),
        f"{R}/report.html",
    ]
