# results/<experiment>/hf/<run>/seed<k>/: a Transformer as a Hugging Face folder (not in `all`: only
# Transformers with rope positions export). E.g.
#   snakemake --cores 1 results/offline/hf/transformer/seed1337 --configfile config/offline.yaml


rule export:
    input:
        model=f"{MODEL_DIR}/model.pt",
    output:
        directory(f"{R}/hf/{{run}}/seed{{seed}}"),
    log:
        f"{R}/logs/export/{{run}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/export/{{run}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: 1
    params:
        code=jobs.code("export"),
    shell:
        "python -m picollm --log {log:q} export {input.model:q} {output:q}"
