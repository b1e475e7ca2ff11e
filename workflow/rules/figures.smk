# One rule per figure of the registry (common.smk: FIGURES and COST_FIGURES), each drawn by picollm.plots.<name>.


for name, fig in {**FIGURES, **COST_FIGURES}.items():

    rule:
        name:
            f"figure_{name}"
        input:
            paths(fig["inputs"]) if isinstance(fig["inputs"], dict) else fig["inputs"],
        output:
            **{
                f"runs_{ext}": [
                    f"{R}/figures/{name}/{run}.{ext}" for run in fig["inputs"]
                ]
                for ext in ("png", "svg")
                if name in PER_RUN_FIGURES
            },
            png=in_report(figure_path(name), name, "Figures"),
            svg=figure_path(name, "svg"),
            provenance=f"{R}/provenance/figures/{name}.json",
        log:
            f"{R}/logs/figures/{name}.log",
        benchmark:
            f"{R}/benchmarks/figure_{name}.tsv"
        conda:
            ENV
        threads: 1
        params:
            figure=name,
            config=as_json(fig["job"](CFG)),
            code=jobs.code("figure", f"picollm.plots.{name}", *fig.get("code", [])),
            inputs=(
                as_json(fig["inputs"])
                if isinstance(fig["inputs"], dict)
                else lambda wc, input: input[0]
            ),
        shell:
            "python -m picollm --log {log} figure {params.figure} --config {params.config:q} --inputs {params.inputs:q}"
            " --out {output.png} --provenance {output.provenance}"
