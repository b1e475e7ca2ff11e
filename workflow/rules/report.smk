# results/<experiment>/report.html: Snakemake's own report of the study (every figure and table with its
# caption, the config, the provenance table), built as the last job of `all`.


rule study_config:
    output:
        f"{R}/provenance/study.json",
    log:
        f"{R}/logs/study_config.log",
    localrule: True
    conda:
        ENV
    params:
        config=as_json(jobs.study_file(CFG)),
    shell:
        "printf '%s\\n' {params.config:q} > {output} 2> {log}"


rule report:
    input:
        results=all_results(),
        study=f"{R}/provenance/study.json",
    output:
        f"{R}/report.html",
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        snakefile=workflow.main_snakefile,
    shell:
        # The study's validated config is a study file of its own, so the inner run sees the same DAG; it runs
        # alongside this one (--nolock: it only reads). `picollm report` runs it and says why it failed.
        "python -m picollm --log {log} report --snakefile {params.snakefile:q} --configfile {input.study}"
        " --out {output}"
