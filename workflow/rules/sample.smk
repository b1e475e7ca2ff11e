# On the CPU whatever the study's device: a seed's samples do not depend on a GPU's kernels, and one thread
# samples models of this pipeline's sizes in seconds to minutes.
rule sample:
    input:
        model=TRAINED["model"],
    output:
        samples=f"{R}/samples/{{run}}/seed{{seed}}.jsonl",
        provenance=FILES.record("sample", "{run}", "{seed}"),
    log:
        f"{R}/logs/sample/{{run}}/seed{{seed}}.log",
    benchmark:
        FILES.benchmark("sample", "{run}", "{seed}")
    conda:
        ENV
    threads: 1
    params:
        config=lambda wc: as_json(jobs.sample(CFG, int(wc.seed))),
        code=lambda wc: jobs.model_code("sample", CFG, wc.run),
    shell:
        "python -m picollm --log {log:q} sample --config {params.config:q} --name {wildcards.run:q}"
        " --model-path {input.model:q} --device cpu --threads {threads} --out {output.samples:q}"
        " --provenance {output.provenance:q}"


# The sample and model tables show every run's first seed (the samples of each seed are in samples/).
rule tables:
    input:
        samples=first_seed(f"{R}/samples/{{run}}/seed{{seed}}.jsonl").values(),
        summaries=first_seed(TRAINED["summary"]).values(),
    output:
        samples_csv=table("samples_table"),
        samples_md=f"{R}/tables/samples.md",
        models_csv=table("models_table"),
        models_md=f"{R}/tables/models.md",
        provenance=FILES.record("tables"),
    log:
        f"{R}/logs/tables.log",
    benchmark:
        FILES.benchmark("tables")
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("tables"),
    shell:
        "python -m picollm --log {log} tables --config {params.config:q} --samples {input.samples:q}"
        " --samples-csv {output.samples_csv} --samples-md {output.samples_md} --summaries {input.summaries:q}"
        " --models-csv {output.models_csv} --models-md {output.models_md} --provenance {output.provenance}"
