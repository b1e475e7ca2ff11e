rule train:
    input:
        train=f"{R}/data/tokens/train.bin",
        val=f"{R}/data/tokens/val.bin",
        meta=f"{R}/data/tokens/meta.json",
    output:
        model=TRAINED["model"],
        metrics=TRAINED["metrics"],
        summary=TRAINED["summary"],
        health=TRAINED["health"],
        snapshots=directory(TRAINED["snapshots"]),
        provenance=FILES.record("train", "{run}", "{seed}"),
    log:
        f"{R}/logs/train/{{run}}/seed{{seed}}.log",
    benchmark:
        FILES.benchmark("train", "{run}", "{seed}")
    wildcard_constraints:
        run=one_of(r for r in RUNS if r not in NODES_RUNS),
    conda:
        ENV
    # train.devices processes of train.threads each: SLURM's --cpus-per-task, and --gpus on CUDA. Threads and
    # resources, unlike params, trigger no rerun: devices and nodes change no result, the loggers (train.loggers,
    # the live trackers) only watch it, and a training resumes exactly from any checkpoint (TrainConfig.SCHEDULING).
    threads: lambda wc: jobs.train_threads(CFG, wc.run)
    resources:
        gpu=lambda wc: jobs.train_gpus(CFG, wc.run),
        devices=lambda wc: jobs.train_devices(CFG, wc.run),
        nodes=1,
        loggers=lambda wc: jobs.train_loggers(CFG, wc.run),
        checkpoint_interval=lambda wc: jobs.train_checkpoint_interval(CFG, wc.run),
    params:
        config=lambda wc: as_json(jobs.train(CFG, wc.run, int(wc.seed))),
        code=lambda wc: jobs.model_code("train", CFG, wc.run),
        tokens_dir=lambda wc, input: Path(input.meta).parent,
        out_dir=lambda wc, output: Path(output.model).parent,
        # results/<experiment>: the trackers' files (tensorboard/, mlruns/, wandb/) and their names
        tracking_dir=lambda wc, output: layout.study_root(output.model),
    # --devices/--nodes above 1: the command checks the launch and runs itself through torchrun (distributed.py).
    # PICOLLM_PARENT_PID: this Snakemake ($PPID of the job's shell); if it is killed, training checkpoints and
    # stops instead of running on beside the job a rerun starts (picollm.owner).
    shell:
        "PICOLLM_PARENT_PID=$PPID python -m picollm --log {log:q} train --config {params.config:q}"
        " --tokens-dir {params.tokens_dir}"
        " --out-dir {params.out_dir:q} --threads {threads} --devices {resources.devices}"
        " --nodes {resources.nodes} --loggers={resources.loggers:q}"
        " --checkpoint-interval {resources.checkpoint_interval} --tracking-dir {params.tracking_dir:q}"
        " --provenance {output.provenance:q}"


# One SLURM job over train.nodes machines: one task per node (`tasks`; `mpi` makes the plugin run the
# command on the first node without its own srun, since the command's srun starts the per-node torchruns),
# each task with devices x threads CPUs and, on CUDA, `devices` GPUs per node.
if NODES_RUNS:

    use rule train as train_nodes with:
        wildcard_constraints:
            run=one_of(NODES_RUNS),
        resources:
            gpu=0,
            devices=lambda wc: jobs.train_devices(CFG, wc.run),
            nodes=lambda wc: jobs.train_nodes(CFG, wc.run),
            loggers=lambda wc: jobs.train_loggers(CFG, wc.run),
            checkpoint_interval=lambda wc: jobs.train_checkpoint_interval(CFG, wc.run),
            tasks=lambda wc: jobs.train_nodes(CFG, wc.run),
            mpi="srun",
            slurm_extra=lambda wc: jobs.slurm_gpus(CFG, wc.run),


# Only when some run keeps snapshots (train.snapshot_steps).
if MAKES.snapshots:

    rule snapshots:
        input:
            first_seed(TRAINED["snapshots"]).values(),
        output:
            csv=table("snapshots_table"),
            md=f"{R}/tables/snapshots.md",
            provenance=FILES.record("snapshots"),
        log:
            f"{R}/logs/snapshots.log",
        benchmark:
            FILES.benchmark("snapshots")
        conda:
            ENV
        threads: 1
        params:
            config=as_json(jobs.snapshots(CFG)),
            code=jobs.types_code("snapshots", CFG),
            inputs=as_json(first_seed(TRAINED["snapshots"])),
        shell:
            "python -m picollm --log {log} snapshots --config {params.config:q} --inputs {params.inputs:q}"
            " --csv {output.csv} --md {output.md} --threads {threads} --provenance {output.provenance}"
