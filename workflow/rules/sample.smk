rule sample:
    input:
        model=f"{R}/models/{{model}}/model.pt",
    output:
        samples=f"{R}/samples/{{model}}.jsonl",
        provenance=f"{R}/provenance/sample/{{model}}.json",
    params:
        sampling=as_json(CFG["sampling"]),
        seed=CFG["seed"],
    log:
        f"{R}/logs/sample/{{model}}.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm sample --name {wildcards.model} --model-path {input.model} --sampling {params.sampling:q}"
        " --seed {params.seed} --device cpu --threads {threads} --out {output.samples}"
        " --provenance {output.provenance} > {log} 2>&1"
