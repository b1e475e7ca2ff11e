# tables/resources.csv: every job's wall time from its `benchmark:` file, its CPU time and peak memory from its
# provenance record (counted by the job, where Snakemake samples them). Only the report (through
# figures/resources.png) reads it, so a benchmark file that changes reruns nothing else. The command is given each
# benchmark file's job, {rule, run, seed}, and its record as the registry names them (OUTPUTS.measured).


rule resources:
    input:
        benchmarks=OUTPUTS.benchmarks,
        records=OUTPUTS.records,
    output:
        csv=table("resources_table"),
        provenance=FILES.record("resources"),
    log:
        f"{R}/logs/resources.log",
    benchmark:
        FILES.benchmark("resources")
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("resources"),
        root=lambda wc, output: Path(output.csv).parents[1] / "benchmarks",
        jobs=as_json(OUTPUTS.measured),
    shell:
        "python -m picollm --log {log} resources --config {params.config:q} --root {params.root:q}"
        " --benchmarks {input.benchmarks:q} --jobs {params.jobs:q} --out {output.csv}"
        " --provenance {output.provenance}"
