# tables/resources.csv: every job's wall time from its `benchmark:` file, its CPU time and peak memory from its
# provenance record (counted by the job, where Snakemake samples them). Only the report (through
# figures/resources.png) reads it, so a benchmark file that changes reruns nothing else.


rule resources:
    input:
        benchmarks=job_benchmarks(),
        records=job_records(),
    output:
        csv=table("resources_table"),
        provenance=f"{R}/provenance/resources.json",
    log:
        f"{R}/logs/resources.log",
    benchmark:
        f"{R}/benchmarks/resources.tsv"
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("resources"),
        root=lambda wc, output: Path(output.csv).parents[1] / "benchmarks",
        records=as_json({bench: record for bench, record in job_files() if record}),
    shell:
        "python -m picollm --log {log} resources --config {params.config:q} --root {params.root:q}"
        " --benchmarks {input.benchmarks:q} --records {params.records:q} --out {output.csv}"
        " --provenance {output.provenance}"
