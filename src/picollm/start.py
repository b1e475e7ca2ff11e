"""What the workflow checks before it plans a job (workflow/rules/common.smk calls these once, at parse time):
each problem a command line can meet there is one line naming it and its fix, before Snakemake's own traceback
and before a rerun that would delete finished work. Imported once the model types are read (common.smk does that
first), since the config classes are built from them. Snakemake's argument parser comes from the Snakefile
(`parser`, snakemake.cli.get_argument_parser): the jobs' environments, which import picollm, have no Snakemake.
"""
from __future__ import annotations

import os
from pathlib import Path

from picollm import slurm
from picollm.codehash import check_syntax
from picollm.config import DEFAULT_STUDY, Study, command_line, load_study
from picollm.data.check import check_folder
from picollm.data.sources import check_local_files
from picollm.errors import PicoError
from picollm.hf_form import refusals
from picollm.io import check_room, check_writable
from picollm.owner import slurm_job_of, snakemakes_in


def check_directory(workflow, root: Path) -> None:
    """results/ and the relative paths of the study files land in the working directory: the project root, or one
    named on purpose with --directory (jobs that Snakemake itself starts inherit it)."""
    if workflow.is_main_process and workflow.overwrite_workdir is None and Path.cwd().resolve() != root.resolve():
        raise PicoError(f"run snakemake from the project root ({root}), not from {Path.cwd()}; "
                        f"or name the working directory on purpose with --directory DIR")


def check_unlock(workflow, argv: list[str]) -> None:
    """--unlock takes the lock from whatever holds it: refused while a snakemake still runs here, or SLURM jobs of
    this directory are queued or running (squeue), whose files a second run would then write over. It is for a
    lock left by a snakemake that is gone (killed, a power loss) and whose jobs are gone too."""
    if not (workflow.is_main_process and "--unlock" in argv):
        return
    steps = {pid: slurm_job_of(pid) for pid in snakemakes_in(Path.cwd())}  # a SLURM job's step, or None
    local = [pid for pid, job in steps.items() if job is None]
    if local:
        pids = ", ".join(map(str, local))
        raise PicoError(f"--unlock while snakemake (pid {pids}) runs in this directory would let two runs write "
                        f"the same files; wait for it to end (or stop it: kill {pids}); --unlock is for the lock of "
                        f"a snakemake that is gone")
    # the SLURM jobs of a run whose snakemake is gone: queued or running, their job steps here or on other nodes
    jobs = sorted({*steps.values(), *slurm.jobs_in(Path.cwd())}, key=int)
    if jobs:
        raise PicoError(f"--unlock while SLURM job(s) {', '.join(jobs)} of this directory are queued or running would "
                        f"let a new run write the files they write; wait for them to end (squeue --me), or cancel "
                        f"them: scancel {' '.join(jobs)}; then --unlock, and rerun with --rerun-incomplete")


def study(workflow, root: Path) -> Study:
    """The study files (--configfile, or the default study) each with its `base:` chain, then --config on top:
    built here rather than by Snakemake's own merge, so that a study file replaces the default study. Snakemake
    hands the study files over as absolute paths: a line about one names it as typed, from the working directory.
    The code is read for syntax errors too, which would otherwise surface in the first job."""
    files = [os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
             for path in workflow.overwrite_configfiles or [root / DEFAULT_STUDY]]
    cfg = load_study(files, dict(workflow.config_settings.config))
    check_syntax()
    return cfg


def check_files(workflow, argv: list[str], parser, cfg: Study, results: str) -> None:
    """The files a run starts from, checked before Snakemake plans (and so deletes) anything:
    - a command line that runs jobs (not a dry run, report or graph) needs room for Snakemake's own lock, and
      results/<experiment>/ with every folder in it writable (else Snakemake ends in its own traceback on a
      write-protected output or a read-only folder inside);
    - token files that no longer match their meta.json stop it before anything downstream of them reruns
      (checksums of files up to 256 MiB, which cost little at every parse; the train and evaluate jobs check
      the larger ones before they read them);
    - so does a local data file that is missing."""
    if workflow.is_main_process and command_line.runs_jobs(argv, parser):
        check_room(".")
        check_writable(results, tree=True)
    check_folder(f"{results}/data/tokens", checksum_up_to=256 << 20)
    check_local_files(cfg.data.sources)


def check_targets(workflow, argv: list[str], parser, cfg: Study, results: str, outputs) -> None:
    """A target under this study's results folder that none of its rules makes, or the export of a model with no
    Hugging Face form: one line naming why, rather than Snakemake's "No rule to produce" it, or the export job's
    own failure after Snakemake has planned (and maybe trained) what it needs."""
    if not workflow.is_main_process:
        return
    no_export = refusals({run: model.model_dump() for run, model in cfg.runs.items()})
    problem = command_line.study_targets_problem(
        argv, parser, workflow.overwrite_configfiles, results=results, runs=list(cfg.runs),
        seeds=cfg.seeds, not_made=outputs.not_made, figure_runs=outputs.figure_runs, unexportable=no_export)
    if problem:
        raise PicoError(problem)


def check_device(workflow, argv: list[str], parser, cfg: Study) -> None:
    """device: cuda with a CPU build of torch installed: one line as a run starts, rather than from every train
    job once the data are made (a dry run only plans, and is not refused). Not where the jobs bring a torch of
    their own (--sdm conda or apptainer); whether this machine has a GPU is the job's to tell (a cluster's login
    node may have none)."""
    if cfg.device != "cuda" or workflow.deployment_settings.deployment_method:
        return
    if not (workflow.is_main_process and command_line.runs_jobs(argv, parser)):
        return
    from picollm.device import check_cuda_build  # imports torch: only for a study that asks for CUDA
    check_cuda_build()


def check_cluster(workflow, argv: list[str], parser, cfg: Study) -> None:
    """On SLURM (profiles/slurm), a job no partition it may go to can run: one line before anything is submitted
    (a dry run says it too), instead of a job pending for good or sbatch refusing it halfway through the run
    (picollm.slurm). Not for a command that plans no job (--unlock, a report)."""
    if not (workflow.is_main_process and command_line.runs_jobs(argv, parser, dry_run=True)):
        return
    if problems := slurm.problems(cfg, argv[1:]):
        raise PicoError(problems[0])
