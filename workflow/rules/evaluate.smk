# Evaluation: whole-split validation loss / perplexity / bits per byte and sampling measures per model,
# their tables, and the figures built from them (p sweep, gradient norms).


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
    params:
        tokens_dir=lambda wc, input: Path(input.meta).parent,
        sampling=as_json(CFG["sampling"]),
        sweep_p=CFG["sampling"]["sweep_p_values"],
        seed=CFG["seed"],
        device=CFG["device"],
    log:
        f"{R}/logs/evaluate/{{model}}.log",
    threads: CFG["train"]["threads"]
    resources:
        gpu=int(needs_gpu(CFG["device"])),
    conda:
        ENV
    shell:
        "python -m picollm evaluate --name {wildcards.model} --model-path {input.model}"
        " --tokens-dir {params.tokens_dir} --samples {input.samples} --sampling {params.sampling:q}"
        " --sweep-p {params.sweep_p} --seed {params.seed} --device {params.device} --threads {threads}"
        " --out {output.eval} --sampling-out {output.sampling} --provenance {output.provenance} > {log} 2>&1"


rule eval_tables:
    input:
        evals=expand(f"{R}/eval/{{model}}.json", model=MODELS),
        sampling=expand(f"{R}/eval/sampling/{{model}}.csv", model=MODELS),
    output:
        eval_csv=report(
            f"{R}/tables/eval.csv",
            caption="../report/eval_table.rst",
            category="Tables",
        ),
        eval_md=f"{R}/tables/eval.md",
        sampling_csv=report(
            f"{R}/eval/sampling.csv",
            caption="../report/sampling_table.rst",
            category="Tables",
        ),
        provenance=f"{R}/provenance/eval_tables.json",
    params:
        experiment=CFG["experiment"],
    log:
        f"{R}/logs/eval_tables.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm tables --experiment {params.experiment} --evals {input.evals}"
        " --eval-csv {output.eval_csv} --eval-md {output.eval_md} --sampling-inputs {input.sampling}"
        " --sampling-csv {output.sampling_csv} --provenance {output.provenance} > {log} 2>&1"


rule p_sweep:
    input:
        f"{R}/eval/sampling.csv",
    output:
        png=report(
            f"{R}/figures/p_sweep.png",
            caption="../report/p_sweep.rst",
            category="Figures",
        ),
        provenance=f"{R}/provenance/figures/p_sweep.json",
    params:
        experiment=CFG["experiment"],
    log:
        f"{R}/logs/figures/p_sweep.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm figure p-sweep --experiment {params.experiment} --inputs {input}"
        " --out {output.png} --provenance {output.provenance} > {log} 2>&1"


rule grad_norms:
    input:
        expand(f"{R}/models/{{model}}/metrics.csv", model=MODELS),
    output:
        png=report(
            f"{R}/figures/grad_norms.png",
            caption="../report/grad_norms.rst",
            category="Figures",
        ),
        provenance=f"{R}/provenance/figures/grad_norms.json",
    params:
        experiment=CFG["experiment"],
        pairs=lambda wc, input: [f"{m}={p}" for m, p in zip(MODELS, input)],
    log:
        f"{R}/logs/figures/grad_norms.log",
    threads: 1
    conda:
        ENV
    shell:
        "python -m picollm figure grad-norms --experiment {params.experiment} --inputs {params.pairs}"
        " --out {output.png} --provenance {output.provenance} > {log} 2>&1"
