rule train:
    input:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
    output:
        **model_files(),
        provenance=f"{R}/provenance/train/{{model}}.json",
    params:
        model=lambda wc: as_json(model_spec(CFG, wc.model)),
        train=lambda wc: as_json(model_train(CFG, wc.model)),
        weights=as_json({s["name"]: s["weight"] for s in CFG["data"]["sources"]}),
        seed=CFG["seed"],
        block_size=CFG["block_size"],
        device=CFG["device"],
        compact="--compact-vocab" if CFG["compact_vocab"] else "",
        tokens_dir=lambda wc, input: Path(input.meta).parent,
        out_dir=lambda wc, output: Path(output.model).parent,
    log:
        f"{R}/logs/train/{{model}}.log",
    threads: CFG["train"]["threads"]
    resources:
        gpu=int(needs_gpu(CFG["device"])),
    conda:
        ENV
    shell:
        "python -m picollm train --name {wildcards.model} --model {params.model:q} --train {params.train:q}"
        " --weights {params.weights:q} --seed {params.seed} --block-size {params.block_size}"
        " --device {params.device} {params.compact} --tokens-dir {params.tokens_dir} --out-dir {params.out_dir}"
        " --threads {threads} --provenance {output.provenance} > {log} 2>&1"
