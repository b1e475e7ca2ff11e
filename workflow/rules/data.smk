rule download:
    input:
        source_files,
    output:
        train=f"{R}/data/raw/{{source}}/train.txt",
        val=f"{R}/data/raw/{{source}}/val.txt",
        provenance=f"{R}/provenance/download/{{source}}.json",
    log:
        f"{R}/logs/download/{{source}}.log",
    conda:
        ENV
    threads: 1
    params:
        config=lambda wc: as_json(jobs.download(CFG, wc.source)),
        code=jobs.code("download"),
    shell:
        "python -m picollm --log {log} download --config {params.config:q} --train {output.train} --val {output.val}"
        " --provenance {output.provenance}"


rule tokenize:
    input:
        train=expand(f"{R}/data/raw/{{source}}/train.txt", source=SOURCES),
        val=expand(f"{R}/data/raw/{{source}}/val.txt", source=SOURCES),
    output:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
        provenance=f"{R}/provenance/tokenize.json",
    log:
        f"{R}/logs/tokenize.log",
    conda:
        ENV
    threads: 2
    params:
        config=as_json(jobs.tokenize(CFG)),
        code=jobs.code("tokenize"),
        sources=SOURCES,
        raw_dir=lambda wc, input: Path(input.train[0]).parent.parent,
        out_dir=lambda wc, output: Path(output.meta).parent,
    shell:
        "python -m picollm --log {log} tokenize --config {params.config:q} --raw-dir {params.raw_dir}"
        " --sources {params.sources} --out-dir {params.out_dir} --threads {threads}"
        " --provenance {output.provenance}"
