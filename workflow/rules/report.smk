# results/<experiment>/report.html: every figure and table with its caption (workflow/report/*.rst, the
# captions `snakemake --report` shows too), the config, package versions and provenance, in one file.


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
        config_files=config_file_names(),
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
