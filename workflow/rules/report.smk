# results/<experiment>/report.html: Snakemake's own report of the study (every figure and table with its
# caption, the config, the provenance table), built as the last job of `all`.

# The tables the report shows inline, as HTML pages: {page: (what it is made from, its caption)} (picollm.registry).
REPORT_PAGES = OUTPUTS.report_pages


rule study_config:
    output:
        f"{R}/provenance/study.json",
    log:
        f"{R}/logs/study_config.log",
    benchmark:
        FILES.benchmark("study_config")
    localrule: True
    conda:
        ENV
    params:
        config=as_json(STUDY_FILE),
    shell:
        "printf '%s\\n' {params.config:q} > {output} 2> {log}"


rule report_tables:
    input:
        **{page: source for page, (source, _) in REPORT_PAGES.items()},
    output:
        **{
            page: in_report(f"{R}/tables/{page}.html", caption, "Tables")
            for page, (_, caption) in REPORT_PAGES.items()
        },
        provenance=FILES.record("report_tables"),
    log:
        f"{R}/logs/report_tables.log",
    benchmark:
        FILES.benchmark("report_tables")
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("report_tables"),
        pages=lambda wc, input, output: as_json(
            {output[page]: input[page] for page in REPORT_PAGES}
        ),
    shell:
        "python -m picollm --log {log} report-tables --config {params.config:q} --pages {params.pages:q}"
        " --provenance {output.provenance:q}"


rule report:
    input:
        results=OUTPUTS.results,
        pages=rules.report_tables.output,
        study=f"{R}/provenance/study.json",
        stylesheet=workflow.source_path("../report/report.css"),
        # its words: an edited caption or description rebuilds the report
        captions=sorted(map(str, Path(workflow.basedir, "report").glob("*.rst"))),
    output:
        f"{R}/report.html",
    log:
        f"{R}/logs/report.log",
    benchmark:
        FILES.benchmark("report")
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        snakefile=workflow.main_snakefile,
        code=jobs.code("report"),
    shell:
        # The study's validated config is a study file of its own, so the inner run sees the same DAG; it runs
        # alongside this one (--nolock: it only reads). `picollm report` runs it and says why it failed.
        "python -m picollm --log {log} report --snakefile {params.snakefile:q} --configfile {input.study}"
        " --stylesheet {input.stylesheet:q} --out {output}"
