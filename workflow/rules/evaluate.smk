# Evaluation: whole-split validation loss / perplexity / bits per byte and sampling measures per run and
# seed, the same sampling measures on real validation stories, then the tables over seeds (mean, spread, 95%
# interval) and the paired comparison of every two runs.


rule evaluate:
    input:
        model=TRAINED["model"],
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
        samples=f"{R}/samples/{{run}}/seed{{seed}}.jsonl",
    output:
        eval=f"{R}/eval/{{run}}/seed{{seed}}.json",
        sampling=SAMPLING_PATTERN,
        provenance=FILES.record("evaluate", "{run}", "{seed}"),
    log:
        f"{R}/logs/evaluate/{{run}}/seed{{seed}}.log",
    benchmark:
        FILES.benchmark("evaluate", "{run}", "{seed}")
    conda:
        ENV
    threads: lambda wc: jobs.evaluate_threads(CFG, wc.run)
    resources:
        gpu=int(jobs.needs_gpu(CFG.device)),
    params:
        config=lambda wc: as_json(jobs.evaluate(CFG, wc.run, int(wc.seed))),
        code=lambda wc: jobs.model_code("evaluate", CFG, wc.run),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
    shell:
        "python -m picollm --log {log:q} evaluate --config {params.config:q} --name {wildcards.run:q}"
        " --model-path {input.model:q} --tokens-dir {params.tokens_dir} --samples {input.samples:q}"
        " --threads {threads} --out {output.eval:q} --sampling-out {output.sampling:q}"
        " --provenance {output.provenance:q}"


# Real validation stories, as many and as long as a decoding's samples: what the sampling measures give on real
# text, one draw per seed (the reference rows of eval/sampling.csv).
rule sampling_reference:
    input:
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
    output:
        sampling=f"{R}/eval/reference/seed{{seed}}.csv",
        provenance=FILES.record("sampling_reference", seed="{seed}"),
    log:
        f"{R}/logs/reference/seed{{seed}}.log",
    benchmark:
        FILES.benchmark("sampling_reference", seed="{seed}")
    conda:
        ENV
    threads: 1
    params:
        config=lambda wc: as_json(jobs.reference(CFG, int(wc.seed))),
        code=jobs.code("reference"),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
    shell:
        "python -m picollm --log {log:q} reference --config {params.config:q} --tokens-dir {params.tokens_dir}"
        " --out {output.sampling:q} --provenance {output.provenance:q}"


rule eval_tables:
    input:
        evals=paths(EVALS),
        sampling=paths(per_run(SAMPLING_PATTERN)),
        reference=REFERENCE.values(),
    output:
        eval_csv=table("eval_table"),
        eval_md=f"{R}/tables/eval.md",
        compare_csv=table("compare_table"),
        sampling_csv=table("sampling_table"),
        provenance=FILES.record("eval_tables"),
    log:
        f"{R}/logs/eval_tables.log",
    benchmark:
        FILES.benchmark("eval_tables")
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.experiment(CFG)),
        code=jobs.code("eval_tables"),
        evals=as_json(EVALS),
        sampling=as_json(per_run(SAMPLING_PATTERN)),
        reference=as_json(REFERENCE),
    shell:
        "python -m picollm --log {log} eval-tables --config {params.config:q} --evals {params.evals:q}"
        " --eval-csv {output.eval_csv} --eval-md {output.eval_md} --compare-csv {output.compare_csv}"
        " --sampling-inputs {params.sampling:q} --reference-inputs {params.reference:q}"
        " --sampling-csv {output.sampling_csv} --provenance {output.provenance}"


# Only when the study asks for the scaling figure (figures.scaling).
if MAKES.scaling:

    rule scaling:
        input:
            metrics=paths(METRICS),
            evals=paths(EVALS),
        output:
            fits=table("scaling_table"),
            points=FILES.scaling["points"],
            provenance=FILES.record("scaling"),
        log:
            f"{R}/logs/scaling.log",
        benchmark:
            FILES.benchmark("scaling")
        conda:
            ENV
        threads: 1
        params:
            config=as_json(jobs.experiment(CFG)),
            code=jobs.code("scaling"),
            metrics=as_json(METRICS),
            evals=as_json(EVALS),
        shell:
            "python -m picollm --log {log} scaling --config {params.config:q} --metrics {params.metrics:q}"
            " --evals {params.evals:q} --csv {output.fits} --points {output.points}"
            " --provenance {output.provenance}"
