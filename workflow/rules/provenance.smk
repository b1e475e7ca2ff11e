# Every job's provenance record in one table of the report.


rule provenance_table:
    input:
        job_records(),
    output:
        csv=table("provenance_table"),
    log:
        f"{R}/logs/provenance_table.log",
    benchmark:
        f"{R}/benchmarks/provenance_table.tsv"
    conda:
        ENV
    threads: 1
    params:
        code=jobs.code("provenance_table"),
    shell:
        "python -m picollm --log {log} provenance-table --records {input} --out {output.csv}"
