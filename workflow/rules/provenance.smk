# Every job's provenance record in one table of the report.


rule provenance_table:
    input:
        OUTPUTS.records,
    output:
        csv=table("provenance_table"),
        page=in_report(FILES.provenance_page, "provenance_table", "Provenance"),
    log:
        f"{R}/logs/provenance_table.log",
    benchmark:
        FILES.benchmark("provenance_table")
    conda:
        ENV
    threads: 1
    params:
        code=jobs.code("provenance_table"),
    shell:
        "python -m picollm --log {log} provenance-table --records {input} --out {output.csv}"
        " --page {output.page}"
