# One rule per figure of the registry (picollm.registry: OUTPUTS.figures and .cost_figures), each drawn by
# picollm.plots.<name>.


for name, fig in {**OUTPUTS.figures, **OUTPUTS.cost_figures}.items():

    rule:
        name:
            registry.figure_rule(name)
        input:
            paths(fig["inputs"]) if isinstance(fig["inputs"], dict) else fig["inputs"],
        output:
            **{
                f"runs_{ext}": [
                    f"{R}/figures/{name}/{run}.{ext}"
                    for run in OUTPUTS.figure_runs[name]
                ]
                for ext in ("png", "svg")
                if name in OUTPUTS.figure_runs
            },
            png=in_report(FILES.figure(name), name, "Figures"),
            svg=FILES.figure(name, "svg"),
            provenance=FILES.record(registry.figure_rule(name)),
        log:
            f"{R}/logs/figures/{name}.log",
        benchmark:
            FILES.benchmark(registry.figure_rule(name))
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
