"""The closing lines of a stopped run (picollm.stopped, from hand-written Snakemake logs) and `picollm report`'s
failure, which must leave no truncated report."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
from argparse import Namespace
from pathlib import Path

import pytest

from conftest import ROOT
from picollm.commands import report
from picollm.errors import PicoError
from picollm.stopped import summary, tell

FIGURE = "results/offline/figures/attention_heads"
CTRL_C = "Terminating processes on user request, this might take some time.\n"


def error_block(rule: str, outputs: list[str], log: str | None) -> str:
    """Snakemake 9's block for a job that did not finish."""
    return (f"Error in rule {rule}:\n    jobid: 3\n    input: results/offline/tables/attention.csv\n"
            f"    output: {', '.join(outputs)}\n"
            + (f"    log: {log} (check log file(s) for error details)\n" if log else "")
            + "    shell:\n        python -m picollm ...\n        (command exited with non-zero exit code)\n")


def stopped_figure(root: Path) -> Path:
    """A Ctrl-C that stopped the attention_heads figure job; its log says so. Returns Snakemake's log."""
    log = root / "results/offline/logs/figures/attention_heads.log"
    log.parent.mkdir(parents=True)
    log.write_text("interrupted; rerun to continue\n")
    outputs = [f"{FIGURE}.png", f"{FIGURE}.svg", "results/offline/provenance/figures/attention_heads.json"]
    run_log = root / "run.log"
    run_log.write_text(CTRL_C + error_block("figure_attention_heads", outputs, str(log.relative_to(root))))
    return run_log


def test_a_job_stopped_with_part_of_its_outputs_asks_for_rerun_incomplete(tmp_path, monkeypatch):
    """Snakemake refuses a plain rerun over a stopped job's outputs (IncompleteFilesException): the closing line
    says --rerun-incomplete and names the job; no training was stopped, so no word of a checkpoint."""
    monkeypatch.chdir(tmp_path)  # Snakemake's outputs are relative to its working directory, the hook's too
    run_log = stopped_figure(tmp_path)
    assert summary(run_log)[-1] == "pico-llm: rerun the same command to continue."
    (tmp_path / f"{FIGURE}.png").parent.mkdir(parents=True)
    (tmp_path / f"{FIGURE}.png").write_bytes(b"\x89PNG")  # written; its .svg not yet
    assert summary(run_log) == [
        "pico-llm: stopped by Ctrl-C: 1 job(s) did not finish; every finished output is kept.",
        "  figures/attention_heads: interrupted; rerun to continue  "
        "(results/offline/logs/figures/attention_heads.log)",
        "pico-llm: rerun the same command with --rerun-incomplete to continue; it reruns just "
        "figures/attention_heads, which stopped with outputs on disk.",
    ]


def test_the_checkpoint_is_named_only_when_a_training_was_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_log = stopped_figure(tmp_path)
    train_log = tmp_path / "results/offline/logs/train/lstm/seed7.log"
    train_log.parent.mkdir(parents=True)
    train_log.write_text("stopped at step 40\ninterrupted; rerun to continue\n")
    # a training stages its outputs until it ends: none is on disk
    with open(run_log, "a") as f:
        f.write(error_block("train", ["results/offline/models/lstm/seed7/model.pt"], str(train_log)))
    assert summary(run_log)[-1] == "pico-llm: rerun the same command to continue (training resumes from its last " \
                                   "checkpoint)."


def test_outputs_of_a_job_started_after_the_block_are_not_the_stopped_jobs(tmp_path, monkeypatch):
    """A block without output or log, followed by the description of a job that started: that job's outputs
    (on disk) and log are its own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "done.csv").write_text("x\n")
    run_log = tmp_path / "run.log"
    run_log.write_text(CTRL_C + "Error in rule study_config:\n    jobid: 1\n" + "[Sun Dec  6 12:14:00 2026]\n"
                       "localrule tables:\n    output: done.csv\n    log: results/offline/logs/tables.log\n")
    assert summary(run_log) == [
        "pico-llm: stopped by Ctrl-C: 1 job(s) did not finish; every finished output is kept.",
        "  study_config: see its error block above",
        "pico-llm: rerun the same command to continue.",
    ]


# The end of Snakemake 9's log after `kill -TERM <snakemake>`: it let its running job finish, then stopped.
SIGTERM_LOG = """\
localrule train:
    output: results/tiny/models/lstm/seed7/model.pt, results/tiny/models/lstm/seed7/metrics.csv
    log: results/tiny/logs/train/lstm/seed7.log
    jobid: 0
Will exit after finishing currently running jobs (scheduler).
[Sun Dec  6 12:14:06 2026]
Finished jobid: 0 (Rule: train)
3 of 4 steps (75%) done
Will exit after finishing currently running jobs (scheduler).
Shutting down, this might take some time.
"""


def mark_incomplete(snakemake_dir: Path, output: str) -> None:
    """Snakemake's marker of an output whose job it has not seen end: .snakemake/incomplete/<its path in URL-safe
    base64>, here in one part (a short path)."""
    marker = snakemake_dir / "incomplete" / base64.urlsafe_b64encode(output.encode()).decode()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text('{"external_jobid": null}')


def test_ctrl_c_as_a_job_ends_asks_for_rerun_incomplete(tmp_path, monkeypatch):
    """Ctrl-C after a job wrote its outputs but before Snakemake saw it end: no job failed, but Snakemake still
    marks its outputs incomplete and refuses a plain rerun, so the closing line asks for --rerun-incomplete."""
    monkeypatch.chdir(tmp_path)
    run_log = tmp_path / ".snakemake" / "log" / "run.snakemake.log"
    run_log.parent.mkdir(parents=True)
    run_log.write_text("localrule train:\n" + CTRL_C)
    assert summary(run_log) == ["pico-llm: stopped by Ctrl-C with no job running; every finished output is kept.",
                                "pico-llm: rerun the same command to continue."]
    model = "results/offline/models/lstm/seed1337/model.pt"
    mark_incomplete(tmp_path / ".snakemake", model)
    mark_incomplete(tmp_path / ".snakemake", "results/offline/models/lstm/seed1337/metrics.csv")  # not written
    assert summary(run_log)[0].endswith("with no job running; every finished output is kept.")  # none exists yet
    (tmp_path / model).parent.mkdir(parents=True)
    (tmp_path / model).write_bytes(b"weights")
    assert summary(run_log) == [
        "pico-llm: stopped by Ctrl-C as a job ended; every finished output is kept.",
        f"pico-llm: rerun the same command with --rerun-incomplete to continue; it reruns just the jobs of {model}, "
        "which Snakemake had not seen end (a finished training is restored, not retrained)."]


def test_a_signal_during_interpreter_shutdown_adds_no_traceback(tmp_path):
    """`python -m picollm`: once the stage has said how it ended, Ctrl-C while the interpreter shuts down (an
    atexit callback, as torch's) prints no KeyboardInterrupt traceback and keeps the stage's exit status."""
    code = ("import atexit, os, runpy, signal, sys; "
            "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT)); "  # runs last, after the stage
            "sys.argv = ['picollm', 'validate-config', 'config/offline.yaml']; "
            "runpy.run_module('picollm', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr
    assert "KeyboardInterrupt" not in result.stderr and "Traceback" not in result.stderr


def test_sigterm_to_snakemake_alone_is_one_line_that_nothing_is_lost(tmp_path, capsys):
    """No job failed, yet Snakemake ends in "At least one job did not complete successfully": the hook says
    why it stopped and that a rerun continues."""
    (tmp_path / "run.log").write_text(SIGTERM_LOG)
    line = ("pico-llm: stopped by SIGTERM after its running jobs finished; nothing is lost; rerun the same command "
            "to continue.")
    assert summary(tmp_path / "run.log") == [line]
    tell([str(tmp_path / "run.log")])  # as the Snakefile's onerror hook calls it
    assert capsys.readouterr().err == f"\n{line}\n"


# --- picollm report: a failed snakemake --report leaves no truncated report ----------------------------------

def fake_snakemake(returncode: int, said: str = ""):
    """subprocess.run for `snakemake --report PATH`: writes part of a report to PATH, then ends with returncode."""
    def run(command, **kwargs):
        path = Path(command[command.index("--report") + 1])
        assert path.name == "report.html"  # the suffix picks the report's format
        path.write_text("<html>part of the new report")
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr=said)
    return run


def report_args(out: Path) -> Namespace:
    return Namespace(snakefile="Snakefile", configfile="study.yaml", out=str(out), stylesheet=None)


@pytest.mark.parametrize("said, line", [
    ("OSError: [Errno 28] No space left on device\n", "no space left on"),
    ("WorkflowError:\nsomething else\n", "snakemake --report failed (something else)"),
])
def test_a_failed_report_keeps_the_previous_one_and_leaves_no_part(said, line, tmp_path, monkeypatch):
    out = tmp_path / "results/x/report.html"
    out.parent.mkdir(parents=True)
    out.write_text("<html>the previous report</html>")
    monkeypatch.setattr(report.subprocess, "run", fake_snakemake(1, said))
    with pytest.raises(PicoError, match=re.escape(line)):
        report.run(report_args(out))
    assert out.read_text() == "<html>the previous report</html>"
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left beside it
    out.unlink()
    with pytest.raises(PicoError):
        report.run(report_args(out))
    assert list(out.parent.iterdir()) == []


def test_a_report_that_succeeds_replaces_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("<html>the previous report</html>")
    monkeypatch.setattr(report.subprocess, "run", fake_snakemake(0))
    report.run(report_args(out))
    assert out.read_text() == "<html>part of the new report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def slurm_failure(rule: str, outputs: list[str], log: str, slurm_id: int, status: str, copied: str) -> str:
    """The SLURM executor's block for a job that failed (show-failed-logs: true): its message names the SLURM
    status, then the job's log and its SLURM log are copied in, the latter holding the job's own Snakemake's
    blocks for the same rule."""
    head = error_block(rule, outputs, f"{log}, .snakemake/slurm_logs/{slurm_id}.log").replace(
        "    jobid: 3\n", f"    message: SLURM-job '{slurm_id}' failed, SLURM status is: '{status}'. Detailed "
                         "failure reason unavailable.\n    jobid: 3\n")
    fence = "=" * 80
    return (head + f"Logfile {log}:\n{fence}\n{copied}\n{fence}\nLogfile .snakemake/slurm_logs/{slurm_id}.log:\n"
            f"{fence}\nslurmstepd: error: *** JOB {slurm_id} CANCELLED DUE TO TIME LIMIT ***\n"
            + error_block(rule, outputs, log) + "Will exit after finishing currently running jobs (scheduler).\n"
            + error_block(rule, outputs, log) + f"srun: error: task 0: Exited with exit code 1\n{fence}\n")


def test_a_slurm_job_is_one_line_however_often_its_blocks_are_copied_and_retried(tmp_path, monkeypatch):
    """On SLURM, Snakemake's log repeats a failed job's block inside the job's copied logs, and once more per
    --retries attempt: one job is one line, a time limit is said as one with the fix; a failure is one line too."""
    monkeypatch.chdir(tmp_path)
    log = "results/offline/logs/train/lstm/seed7.log"
    (tmp_path / log).parent.mkdir(parents=True)
    (tmp_path / log).write_text("stopped at step 3319\ninterrupted; rerun to continue\n")
    outputs = ["results/offline/models/lstm/seed7/model.pt"]
    run_log = tmp_path / "run.log"
    run_log.write_text("".join(slurm_failure("train", outputs, log, jobid, "TIMEOUT", "interrupted; rerun to continue")
                               for jobid in (267, 268)))
    assert summary(run_log) == [
        "pico-llm: 1 job(s) hit their SLURM time limit; every finished output is kept.",
        "  train/lstm/seed7: hit its SLURM time limit (TIMEOUT), interrupted, stopped at step 3319 (2 attempts)  "
        f"({log})",
        "pico-llm: rerun the same command to continue (training resumes from its last checkpoint); to finish within "
        "it, raise the rule's runtime (set-resources in profiles/slurm/config.yaml) or add --retries "
        "(docs/cluster.md).",
    ]
    bad = "results/offline/logs/download/bad.log"
    (tmp_path / bad).parent.mkdir(parents=True)
    (tmp_path / bad).write_text("error: data file x.txt is not UTF-8\n")
    run_log.write_text(slurm_failure("download", ["results/offline/data/raw/bad/train.txt"], bad, 301, "FAILED",
                                     "error: data file x.txt is not UTF-8"))
    assert summary(run_log)[:2] == ["pico-llm: 1 job(s) failed; every finished output is kept.",
                                    f"  download/bad: error: data file x.txt is not UTF-8  ({bad})"]


def slurm_start(rule: str, jobid: int, log: str, slurm_id: int | None) -> str:
    """Snakemake's block as it starts a job, and the SLURM executor's line as it submits it."""
    return (f"[Mon Dec  7 10:15:43 2026]\nrule {rule}:\n    output: results/offline/{rule}/{jobid}.out\n"
            f"    log: {log}\n    jobid: {jobid}\n    resources: mem_mb=2000, runtime=30\n"
            + (f"Job {jobid} has been submitted with SLURM jobid {slurm_id} (log: .snakemake/slurm_logs/"
               f"{slurm_id}.log).\n" if slurm_id else ""))


def test_ctrl_c_on_slurm_names_each_cancelled_job(tmp_path, monkeypatch):
    """The SLURM executor cancels its jobs on Ctrl-C without an error block: the jobs it submitted and did not
    see end are the stopped ones, each with its own last word (a training's checkpoint, written a moment after
    scancel: the summary waits for it), or cancelled when it said none (still queued); a job that ended is not."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("picollm.stopped.SETTLE", 5.0)
    train_log, late_log = "results/offline/logs/train/lstm/seed7.log", "results/offline/logs/train/gru/seed7.log"
    for log in (train_log, late_log):
        (tmp_path / log).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / train_log).write_text("step 480 | loss 2.1\nstopped at step 492; last.pt holds it\n"
                                      "interrupted; rerun to continue\n")
    (tmp_path / late_log).write_text("step 100 | loss 2.5\n")  # still writing its checkpoint
    run_log = tmp_path / "run.log"
    run_log.write_text("Job stats:\njob      count\n"
                       + slurm_start("download", 4, "results/offline/logs/download/x.log", 270)
                       + "Finished jobid: 4 (Rule: download)\n"
                       + slurm_start("train", 5, train_log, 272) + slurm_start("train", 6, late_log, 273)
                       + slurm_start("reference", 17, "results/offline/logs/reference/seed7.log", 274)
                       + CTRL_C + "Cleaning up SLURM log files older than 10 day(s).\n")
    threading.Timer(1.0, lambda: (tmp_path / late_log).write_text(
        "step 100 | loss 2.5\nstopped at step 101; last.pt holds it\ninterrupted; rerun to continue\n")).start()
    assert summary(run_log) == [
        "pico-llm: stopped by Ctrl-C: 3 job(s) did not finish; every finished output is kept.",
        f"  train/lstm/seed7: interrupted, stopped at step 492; last.pt holds it  ({train_log})",
        f"  train/gru/seed7: interrupted, stopped at step 101; last.pt holds it  ({late_log})",
        "  reference/seed7: cancelled (SLURM job 274)",  # still queued: no log to name
        "pico-llm: rerun the same command to continue (training resumes from its last checkpoint).",
    ]
    local = run_log.read_text().replace("has been submitted with SLURM jobid", "was started as")
    run_log.write_text(local)  # a local run's killed jobs each have their error block: none here stopped
    assert summary(run_log)[0] == "pico-llm: stopped by Ctrl-C with no job running; every finished output is kept."


def test_ctrl_c_names_each_task_of_a_slurm_array_by_its_task_id(tmp_path, monkeypatch):
    """--slurm-array-jobs submits several jobs in one sbatch: each is the array's task in the order of the ids
    the executor names (SLURM job <array>_<task>), so a queued task is cancelled under its own id."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("picollm.stopped.SETTLE", 0.5)
    logs = [f"results/offline/logs/train/{run}/seed7.log" for run in ("lstm", "gru", "kgram_mlp")]
    (tmp_path / logs[0]).parent.mkdir(parents=True)
    (tmp_path / logs[0]).write_text("stopped at step 12; last.pt holds it\ninterrupted; rerun to continue\n")
    run_log = tmp_path / "run.log"
    run_log.write_text("Job stats:\n" + "".join(slurm_start("train", jobid, log, None)
                                                 for jobid, log in zip((8, 9, 11), logs))
                       + "Submitted array job with Snakemake IDs 8,9,11 and SLURM job ID 301. The individual task "
                         "IDs are 4-6.\n" + CTRL_C)
    assert summary(run_log)[1:4] == [
        f"  train/lstm/seed7: interrupted, stopped at step 12; last.pt holds it  ({logs[0]})",
        "  train/gru/seed7: cancelled (SLURM job 301_5)",
        "  train/kgram_mlp/seed7: cancelled (SLURM job 301_6)",
    ]


def test_a_queued_slurm_job_cancelled_by_ctrl_c_is_not_read_from_an_earlier_runs_files(tmp_path, monkeypatch):
    """A job still queued at Ctrl-C wrote nothing: its log and outputs, if any, are an earlier run's (older than
    the run, which Snakemake's log names), so it is only cancelled. A retry cancelled after a time limit is the
    cancelled one. Under --quiet progress (no "Job stats", no "Finished jobid") nothing is said of SLURM jobs."""
    monkeypatch.chdir(tmp_path)
    old_log, model = "results/offline/logs/reference/seed7.log", "results/offline/reference/17.out"
    for path in (old_log, model):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("error: an earlier run's failure\n")
        os.utime(tmp_path / path, (1e9, 1e9))  # 2001
    timeout = slurm_failure("train", ["results/offline/models/lstm/seed7/model.pt"], "results/offline/logs/train/lstm/"
                            "seed7.log", 272, "TIMEOUT", "interrupted; rerun to continue")
    text = ("Job stats:\n" + slurm_start("train", 3, "results/offline/logs/train/lstm/seed7.log", 272) + timeout
            + slurm_start("train", 3, "results/offline/logs/train/lstm/seed7.log", 275)
            + slurm_start("reference", 17, old_log, 274) + CTRL_C)
    run_log = tmp_path / ".snakemake" / "log" / "2026-12-07T101508.241758.snakemake.log"
    run_log.parent.mkdir(parents=True)
    run_log.write_text(text)
    assert summary(run_log) == [
        "pico-llm: stopped by Ctrl-C: 2 job(s) did not finish; every finished output is kept.",
        "  train/lstm/seed7: cancelled (SLURM job 275) (2 attempts)",  # it wrote no log this run: none named
        "  reference/seed7: cancelled (SLURM job 274)",
        "pico-llm: rerun the same command to continue (training resumes from its last checkpoint).",
    ]
    run_log.write_text(text.replace("Job stats:\n", ""))
    assert [line.split(":")[0] for line in summary(run_log)[1:-1]] == ["  train/lstm/seed7"]  # the timeout alone


# The SLURM executor's block for a job sbatch refused, as Snakemake 9 logs it.
SBATCH_REFUSED = """\
Error in rule train:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Invalid generic resource (gres) specification'.
    sbatch call:
        sbatch --parsable --job-name 564ec2b1 -p debug -t 240 --mem 8000 --nodes=1 --cpus-per-task=1 --gpus=1
For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 0
    output: results/offline/models/lstm/seed7/model.pt, results/offline/models/lstm/seed7/metrics.csv
    log: results/offline/logs/train/lstm/seed7.log (check log file(s) for error details)
    shell:
        python -m picollm ...
        (command exited with non-zero exit code)
Logfile results/offline/logs/train/lstm/seed7.log not found.
"""


def test_a_job_sbatch_refused_says_why_and_the_fix(tmp_path, monkeypatch):
    """sbatch's refusal is the job's line (it never ran, so it has no log and left no outputs); a GPU request on a
    partition without GPUs names the profile's setting that fixes it, an unreachable controller says so."""
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "results/offline/models/lstm/seed7/model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"an earlier run's")
    run_log = tmp_path / "run.log"
    run_log.write_text(SBATCH_REFUSED)
    assert summary(run_log) == [
        "pico-llm: 1 job(s) failed; every finished output is kept.",
        "  train/lstm/seed7: not submitted: sbatch refused its GPUs (Invalid generic resource (gres) specification); "
        "the partition has none (of that model): name a GPU partition as slurm_partition under set-resources: "
        "{train, evaluate} in profiles/slurm/config.yaml (docs/cluster.md)",
        "pico-llm: fix what each line names, then rerun the same command.",
    ]
    two_lines = SBATCH_REFUSED.replace(
        "'sbatch: error: Invalid generic resource (gres) specification'.",
        "'sbatch: error: QOSMaxGRESPerUser\nsbatch: error: Batch job submission failed: Job violates accounting/QOS "
        "policy'.")
    run_log.write_text(two_lines)
    assert summary(run_log)[1] == ("  train/lstm/seed7: not submitted: QOSMaxGRESPerUser; Batch job submission failed: "
                                   "Job violates accounting/QOS policy")
    down = SBATCH_REFUSED.replace(
        "SLURM sbatch failed. The error message was 'sbatch: error: Invalid generic resource (gres) specification'.",
        "Job submission failed with exception: Failed to run sinfo for retrieval of cluster partitions: "
        "slurm_load_partitions: Unable to contact slurm controller (connect failure)For further error details see "
        "the cluster/cloud log and the log files of the involved rule(s).")
    run_log.write_text(down)
    assert summary(run_log)[1] == (
        "  train/lstm/seed7: not submitted: Failed to run sinfo for retrieval of cluster partitions: "
        "slurm_load_partitions: Unable to contact slurm controller (connect failure); run it where `sinfo` answers "
        "(a login node), or once SLURM is back")
