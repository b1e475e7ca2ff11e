rule tables:
    input:
        samples=expand(f"{R}/samples/{{model}}.jsonl", model=MODELS),
        summaries=expand(f"{R}/models/{{model}}/summary.json", model=MODELS),
    output:
        samples_csv=report(
            f"{R}/tables/samples.csv",
            caption="../report/samples_table.rst",
            category="Tables",
        ),
        samples_md=f"{R}/tables/samples.md",
        models_md=f"{R}/tables/models.md",
        provenance=f"{R}/provenance/tables.json",
    params:
        experiment=CFG["experiment"],
    log:
        f"{R}/logs/tables.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm tables --experiment {params.experiment} --samples {input.samples}"
        " --samples-csv {output.samples_csv} --samples-md {output.samples_md}"
        " --summaries {input.summaries} --models-md {output.models_md}"
        " --provenance {output.provenance} > {log} 2>&1"


rule loss_curves:
    input:
        expand(f"{R}/models/{{model}}/metrics.csv", model=MODELS),
    output:
        png=report(
            f"{R}/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Figures",
        ),
        provenance=f"{R}/provenance/figures/loss_curves.json",
    params:
        experiment=CFG["experiment"],
        pairs=lambda wc, input: [f"{m}={p}" for m, p in zip(MODELS, input)],
    log:
        f"{R}/logs/figures/loss_curves.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm figure loss-curves --experiment {params.experiment} --inputs {params.pairs}"
        " --out {output.png} --provenance {output.provenance} > {log} 2>&1"


rule sample_comparison:
    input:
        f"{R}/tables/samples.csv",
    output:
        png=report(
            f"{R}/figures/sample_comparison.png",
            caption="../report/sample_comparison.rst",
            category="Figures",
        ),
        provenance=f"{R}/provenance/figures/sample_comparison.json",
    params:
        experiment=CFG["experiment"],
    log:
        f"{R}/logs/figures/sample_comparison.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm figure sample-comparison --experiment {params.experiment} --inputs {input}"
        " --out {output.png} --provenance {output.provenance} > {log} 2>&1"


rule attention_heads:
    input:
        expand(f"{R}/models/{{model}}/model.pt", model=TRANSFORMERS),
    output:
        png=report(
            f"{R}/figures/attention_heads.png",
            caption="../report/attention_heads.rst",
            category="Figures",
        ),
        provenance=f"{R}/provenance/figures/attention_heads.json",
    params:
        experiment=CFG["experiment"],
        pairs=lambda wc, input: [f"{m}={p}" for m, p in zip(TRANSFORMERS, input)],
        prompt=CFG["sampling"]["prompts"][0],
    log:
        f"{R}/logs/figures/attention_heads.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm figure attention-heads --experiment {params.experiment} --inputs {params.pairs}"
        " --prompt {params.prompt:q} --out {output.png} --provenance {output.provenance} > {log} 2>&1"
