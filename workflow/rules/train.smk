rule train:
    input:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
    output:
        model=f"{R}/models/{{model}}/model.pt",
        metrics=f"{R}/models/{{model}}/metrics.csv",
        summary=f"{R}/models/{{model}}/summary.json",
        provenance=f"{R}/provenance/train/{{model}}.json",
    log:
        f"{R}/logs/train/{{model}}.log",
    conda:
        ENV
    threads: lambda wc: jobs.model_threads(CFG, wc.model)
    resources:
        gpu=int(jobs.needs_gpu(CFG["device"])),
    params:
        config=lambda wc: as_json(jobs.train(CFG, wc.model)),
        code=lambda wc: jobs.model_code("train", CFG, wc.model),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
        out_dir=lambda wc, output: Path(output.model).parent,
    shell:
        "python -m picollm --log {log} train --config {params.config:q} --tokens-dir {params.tokens_dir}"
        " --out-dir {params.out_dir} --threads {threads} --provenance {output.provenance}"
