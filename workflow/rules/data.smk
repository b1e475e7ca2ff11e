rule download:
    input:
        source_files,
    output:
        train=f"{R}/data/raw/{{source}}/train.txt",
        val=f"{R}/data/raw/{{source}}/val.txt",
        provenance=FILES.record("download", "{source}"),
    log:
        f"{R}/logs/download/{{source}}.log",
    benchmark:
        FILES.benchmark("download", "{source}")
    conda:
        ENV
    threads: 1
    params:
        config=lambda wc: as_json(jobs.download(CFG, wc.source)),
        code=jobs.code("download"),
    shell:
        "python -m picollm --log {log} download --config {params.config:q} --train {output.train} --val {output.val}"
        " --provenance {output.provenance}"


# Only when the study trains its own tokenizer (tokenizer: bpe:N).
if MAKES.tokenizer:

    rule train_tokenizer:
        input:
            expand(f"{R}/data/raw/{{source}}/train.txt", source=SOURCES),
        output:
            tokenizer=TOKENIZER_JSON,
            provenance=FILES.record("train_tokenizer"),
        log:
            f"{R}/logs/train_tokenizer.log",
        benchmark:
            FILES.benchmark("train_tokenizer")
        conda:
            ENV
        threads: 2
        params:
            config=as_json(jobs.tokenizer(CFG)),
            code=jobs.code("train_tokenizer"),
        shell:
            "python -m picollm --log {log} train-tokenizer --config {params.config:q} --train {input}"
            " --out {output.tokenizer} --threads {threads} --provenance {output.provenance}"


rule tokenize:
    input:
        train=expand(f"{R}/data/raw/{{source}}/train.txt", source=SOURCES),
        val=expand(f"{R}/data/raw/{{source}}/val.txt", source=SOURCES),
        tokenizer=[TOKENIZER_JSON] if MAKES.tokenizer else [],
    output:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
        provenance=FILES.record("tokenize"),
    log:
        f"{R}/logs/tokenize.log",
    benchmark:
        FILES.benchmark("tokenize")
    conda:
        ENV
    threads: 2
    params:
        config=as_json(jobs.tokenizer(CFG)),
        code=jobs.code("tokenize"),
        sources=SOURCES,
        raw_dir=lambda wc, input: Path(input.train[0]).parent.parent,
        out_dir=lambda wc, output: Path(output.meta).parent,
        tokenizer=lambda wc, input: (
            f"--tokenizer-json {input.tokenizer}" if input.tokenizer else ""
        ),
    shell:
        "python -m picollm --log {log} tokenize --config {params.config:q} --raw-dir {params.raw_dir}"
        " --sources {params.sources} --out-dir {params.out_dir} --threads {threads}"
        " {params.tokenizer} --provenance {output.provenance}"
