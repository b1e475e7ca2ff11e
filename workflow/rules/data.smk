rule download:
    input:
        source_files,
    output:
        train=f"{R}/data/raw/{{source}}/train.txt",
        val=f"{R}/data/raw/{{source}}/val.txt",
        provenance=f"{R}/provenance/download/{{source}}.json",
    params:
        source=lambda wc: as_json(source_cfg(wc.source)),
        seed=CFG["seed"],
        val_fraction=CFG["data"]["val_fraction"],
    log:
        f"{R}/logs/download/{{source}}.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm download --source {params.source:q} --seed {params.seed}"
        " --val-fraction {params.val_fraction} --train {output.train} --val {output.val}"
        " --provenance {output.provenance} > {log} 2>&1"


rule tokenize:
    input:
        train=raw_text("train"),
        val=raw_text("val"),
    output:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
        provenance=f"{R}/provenance/tokenize.json",
    params:
        tokenizer=CFG["tokenizer"],
        sources=SOURCES,
        raw_dir=lambda wc, input: Path(input.train[0]).parent.parent,
        out_dir=lambda wc, output: Path(output.meta).parent,
    log:
        f"{R}/logs/tokenize.log",
    threads: 2
    conda:
        ENV
    shell:
        "python -m picollm tokenize --tokenizer {params.tokenizer} --raw-dir {params.raw_dir}"
        " --sources {params.sources} --out-dir {params.out_dir} --threads {threads}"
        " --provenance {output.provenance} > {log} 2>&1"
