# Evaluation: whole-split validation loss / perplexity / bits per byte and sampling measures per model.


rule evaluate:
    input:
        model=f"{R}/models/{{model}}/model.pt",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
        samples=f"{R}/samples/{{model}}.jsonl",
    output:
        eval=f"{R}/eval/{{model}}.json",
        sampling=f"{R}/eval/sampling/{{model}}.csv",
        provenance=f"{R}/provenance/evaluate/{{model}}.json",
    log:
        f"{R}/logs/evaluate/{{model}}.log",
    conda:
        ENV
    threads: lambda wc: jobs.model_threads(CFG, wc.model)
    resources:
        gpu=int(jobs.needs_gpu(CFG["device"])),
    params:
        config=as_json(jobs.evaluate(CFG)),
        code=lambda wc: jobs.model_code("evaluate", CFG, wc.model),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
    shell:
        "python -m picollm --log {log} evaluate --config {params.config:q} --name {wildcards.model}"
        " --model-path {input.model} --tokens-dir {params.tokens_dir} --samples {input.samples}"
        " --threads {threads} --out {output.eval} --sampling-out {output.sampling}"
        " --provenance {output.provenance}"


rule eval_tables:
    input:
        evals=per_model(f"{R}/eval/{{model}}.json").values(),
        sampling=per_model(f"{R}/eval/sampling/{{model}}.csv").values(),
    output:
        eval_csv=table("eval_table"),
        eval_md=f"{R}/tables/eval.md",
        sampling_csv=table("sampling_table"),
        provenance=f"{R}/provenance/eval_tables.json",
    log:
        f"{R}/logs/eval_tables.log",
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("tables"),
    shell:
        "python -m picollm --log {log} tables --config {params.config:q} --evals {input.evals}"
        " --eval-csv {output.eval_csv} --eval-md {output.eval_md} --sampling-inputs {input.sampling}"
        " --sampling-csv {output.sampling_csv} --provenance {output.provenance}"
