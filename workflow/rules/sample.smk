rule sample:
    input:
        model=f"{R}/models/{{model}}/model.pt",
    output:
        samples=f"{R}/samples/{{model}}.jsonl",
        provenance=f"{R}/provenance/sample/{{model}}.json",
    log:
        f"{R}/logs/sample/{{model}}.log",
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.sample(CFG)),
        code=lambda wc: jobs.model_code("sample", CFG, wc.model),
    shell:
        "python -m picollm --log {log} sample --config {params.config:q} --name {wildcards.model} --model-path {input.model}"
        " --device cpu --threads {threads} --out {output.samples} --provenance {output.provenance}"


rule tables:
    input:
        samples=per_model(f"{R}/samples/{{model}}.jsonl").values(),
        summaries=per_model(f"{R}/models/{{model}}/summary.json").values(),
    output:
        samples_csv=table("samples_table"),
        samples_md=f"{R}/tables/samples.md",
        models_csv=table("models_table"),
        models_md=f"{R}/tables/models.md",
        provenance=f"{R}/provenance/tables.json",
    log:
        f"{R}/logs/tables.log",
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("tables"),
    shell:
        "python -m picollm --log {log} tables --config {params.config:q} --samples {input.samples}"
        " --samples-csv {output.samples_csv} --samples-md {output.samples_md} --summaries {input.summaries}"
        " --models-csv {output.models_csv} --models-md {output.models_md} --provenance {output.provenance}"
