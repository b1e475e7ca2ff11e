# results/<experiment>/report.html: every figure and table with its caption (workflow/report/*.rst, the
# captions `snakemake --report` shows too), the config, package versions and provenance, in one file.
import os


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


rule html_report:
    input:
        figures=list(report_figures()),
        tables=list(report_tables()),
        captions=[*report_figures().values(), *report_tables().values()],
        summaries=expand(f"{R}/models/{{model}}/summary.json", model=MODELS),
        evals=expand(f"{R}/eval/{{model}}.json", model=MODELS),
        meta=f"{R}/data/tokens/meta.json",
        provenance=report_provenance(),
    output:
        html=f"{R}/report.html",
        provenance=f"{R}/provenance/report.json",
    params:
        config=as_json(CFG),
        config_files=[os.path.relpath(c) for c in workflow.configfiles],
        figures=[f"{f}={c}" for f, c in report_figures().items()],
        tables=[f"{t}={c}" for t, c in report_tables().items()],
    log:
        f"{R}/logs/report.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm report --config {params.config:q} --config-files {params.config_files:q}"
        " --figures {params.figures:q} --tables {params.tables:q} --summaries {input.summaries}"
        " --evals {input.evals} --meta {input.meta} --provenance-files {input.provenance}"
        " --out {output.html} --provenance {output.provenance} > {log} 2>&1"
