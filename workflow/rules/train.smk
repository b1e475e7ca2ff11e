rule train:
    input:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
    output:
        model=f"{MODEL_DIR}/model.pt",
        metrics=f"{MODEL_DIR}/metrics.csv",
        summary=f"{MODEL_DIR}/summary.json",
        health=f"{MODEL_DIR}/layer_health.csv",
        snapshots=directory(f"{MODEL_DIR}/snapshots"),
        provenance=f"{R}/provenance/train/{{run}}/seed{{seed}}.json",
    log:
        f"{R}/logs/train/{{run}}/seed{{seed}}.log",
    conda:
        ENV
    threads: lambda wc: jobs.model_threads(CFG, wc.run)
    resources:
        gpu=int(jobs.needs_gpu(CFG["device"])),
    params:
        config=lambda wc: as_json(jobs.train(CFG, wc.run, int(wc.seed))),
        code=lambda wc: jobs.model_code("train", CFG, wc.run),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
        out_dir=lambda wc, output: Path(output.model).parent,
    shell:
        "python -m picollm --log {log:q} train --config {params.config:q} --tokens-dir {params.tokens_dir}"
        " --out-dir {params.out_dir:q} --threads {threads} --provenance {output.provenance:q}"


# Only when some run keeps snapshots (train.snapshot_steps).
if SNAPSHOTS:

    rule snapshots:
        input:
            first_seed(f"{MODEL_DIR}/snapshots").values(),
        output:
            csv=table("snapshots_table"),
            md=f"{R}/tables/snapshots.md",
            provenance=f"{R}/provenance/snapshots.json",
        log:
            f"{R}/logs/snapshots.log",
        conda:
            ENV
        threads: 1
        params:
            config=as_json(jobs.snapshots(CFG)),
            code=jobs.types_code("snapshots", CFG),
            inputs=as_json(first_seed(f"{MODEL_DIR}/snapshots")),
        shell:
            "python -m picollm --log {log} snapshots --config {params.config:q} --inputs {params.inputs:q}"
            " --csv {output.csv} --md {output.md} --threads {threads} --provenance {output.provenance}"
