# results/<experiment>/hf/<run>/seed<k>/: a Transformer as a Hugging Face folder (not in `all`: only
# Transformers with a Hugging Face form export: rope + RMSNorm is Llama/Arcee, learned + LayerNorm is GPT-2). E.g.
#   snakemake --cores 1 results/offline/hf/transformer/seed1337 --configfile config/offline.yaml


rule export:
    input:
        model=TRAINED["model"],
    output:
        directory(f"{R}/hf/{{run}}/seed{{seed}}"),
    log:
        f"{R}/logs/export/{{run}}/seed{{seed}}.log",
    benchmark:
        FILES.benchmark("export", "{run}", "{seed}")
    conda:
        ENV
    threads: 1
    params:
        code=lambda wc: jobs.model_code("export", CFG, wc.run),
    shell:
        "python -m picollm --log {log:q} export {input.model:q} {output:q}"


# results/<experiment>/hf/lm_eval_task/: the validation text as an lm-evaluation-harness task (docs/lm-eval.md),
# beside the exports it scores (not in `all`). E.g.
#   snakemake --cores 1 results/offline/hf/lm_eval_task --configfile config/offline.yaml
rule lm_eval_task:
    input:
        val=expand(f"{R}/data/raw/{{source}}/val.txt", source=SOURCES),
    output:
        task=directory(f"{R}/hf/lm_eval_task"),
        provenance=FILES.record("lm_eval_task"),
    log:
        f"{R}/logs/lm_eval_task.log",
    benchmark:
        FILES.benchmark("lm_eval_task")
    conda:
        ENV
    threads: 1
    params:
        config=as_json(jobs.lm_eval_task(CFG)),
        code=jobs.code("lm_eval_task"),
        sources=SOURCES,
        raw_dir=lambda wc, input: Path(input.val[0]).parent.parent,
    shell:
        "python -m picollm --log {log} lm-eval-task --config {params.config:q} --raw-dir {params.raw_dir}"
        " --sources {params.sources} --out-dir {output.task} --provenance {output.provenance}"
