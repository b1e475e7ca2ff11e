"""What a Snakemake run that stopped says last: one line per job that did not finish, with that job's own words.

When a job fails, or Ctrl-C stops every running job, Snakemake prints a block of some twenty lines per job
(its command, inputs, outputs), and the one line each job wrote (`error: ...`, or `interrupted; rerun to
continue`) scrolls away above them. The Snakefile's `onerror:` hook calls `tell()` with Snakemake's log of the
run: it finds each failed job's log there and repeats the job's last word under the blocks, where the eye is.
Its closing line says how to continue: with --rerun-incomplete when a stopped job left outputs on disk.
"""
from __future__ import annotations

import base64
import contextlib
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

FAILED = re.compile(r"Error in rule (\S+):$")
LOG = re.compile(r"\s+log: (.+?)(?: \(check log file\(s\) for error details\))?$")
OUTPUT = re.compile(r"\s+output: (.+)$")
CTRL_C = "Terminating processes on user request"  # what Snakemake logs when SIGINT stops it
# what Snakemake logs when SIGTERM reaches it alone: it lets its running jobs finish, starts no other, and ends
# in "At least one job did not complete successfully" though none failed
SIGTERM = "Will exit after finishing currently running jobs"
# its jobs all finished, and what it had not started a rerun starts
STOPPED_BY_SIGTERM = ("pico-llm: stopped by SIGTERM after its running jobs finished; nothing is lost; rerun the same "
                      "command to continue.")
TRAINING = {"train", "train_nodes"}  # the rules whose jobs resume from a checkpoint
SAID = re.compile(r"(error: |interrupted|stopped at step )")  # the lines picollm writes as a stage ends
EXCEPTION = re.compile(r"[\w.]*(Error|Exception|Interrupt)\b.*")  # a traceback's last line
TAIL = 64 << 10  # the end of a job's log holds its last word: a training log can be long
KILLED = re.compile(r"died with <Signals\.(SIG[A-Z]+): \d+>|exit status (13[0-9]|14[0-9])\b")  # a job's signal
# a training's last line is its summary (JSON): a job that wrote it finished, whatever stopped it after
FINISHED = re.compile(r'^\{"model": .*"steps": \d+')
FINISHED_WORD = "finished, but stopped before Snakemake saw it end: its outputs are kept"


SLURM_STATUS = re.compile(r"SLURM status is: '(\w+)'")  # the SLURM executor's message of a job that failed
COPIED = re.compile(r"^Logfile .+:$")  # show-failed-logs: a job's log copied in, between two lines of '='
FENCE = re.compile(r"^={20,}$")


@dataclass
class StoppedJob:
    """A job with an "Error in rule" block in Snakemake's log."""
    rule: str
    killed: str | None  # the signal that killed it
    log: str | None = None
    outputs: list[str] = field(default_factory=list)
    slurm_status: str | None = None  # the SLURM executor's word for it (TIMEOUT, FAILED, ...)
    times: int = 1  # how many times it stopped (--retries)


def stopped_jobs(run_log: str) -> list[StoppedJob]:
    """Every job with an "Error in rule" block in `run_log`, the text of Snakemake's log. A job's log copied in
    (show-failed-logs: on SLURM, the blocks of the job's own Snakemake) is not read; a job that failed again
    (--retries) is one job."""
    jobs, job, killed, fences_left = [], None, None, 0
    for line in run_log.splitlines():
        if fences_left:  # inside a copied log, up to its second fence
            fences_left -= bool(FENCE.match(line))
            continue
        if COPIED.match(line):
            fences_left, job = 2, None
        elif match := KILLED.search(line):  # Snakemake's CalledProcessError, just above the job's block
            killed = match.group(1) or signal_name(int(match.group(2)) - 128)
        elif match := FAILED.match(line):
            job = StoppedJob(match.group(1), killed)
            jobs.append(job)
            killed = None
        elif not line[:1].isspace():  # the block's lines are indented: a job started after it has its own
            job = None
        elif job and job.log is None and (match := LOG.match(line)):
            job.log = match.group(1).split(", ")[0]
        elif job and not job.outputs and (match := OUTPUT.match(line)):
            job.outputs = match.group(1).split(", ")
        elif job and (match := SLURM_STATUS.search(line)):
            job.slurm_status = match.group(1)
    merged = {}
    for job in jobs:  # a retry's block names the same log (or rule and outputs)
        key = (job.rule, job.log or tuple(job.outputs))
        if key in merged:
            job.times += merged.pop(key).times
        merged[key] = job
    return list(merged.values())


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_word(job_log: str | Path) -> str | None:
    """The job's closing line (for an interrupted training, the step its checkpoint holds), else the last
    exception a traceback in it names; None when it has neither (the job was stopped from outside, or its log
    is missing)."""
    try:
        with open(job_log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
    # a progress bar leaves its last frame unended: a line said after it follows on the same line
    said = [line[match.start():] for line in lines if (match := SAID.search(line))]
    if not said and lines and FINISHED.match(lines[-1]):
        return FINISHED_WORD
    if not said:  # a bug's traceback ends in its exception; any other last line would mislead
        raised = [line for line in lines if EXCEPTION.match(line)]
        return raised[-1] if raised else None
    stopped = [line for line in said if line.startswith("stopped at step ")]
    return f"interrupted, {stopped[-1]}" if said[-1].startswith("interrupted") and stopped else said[-1]


def summary(snakemake_log: str | Path) -> list[str]:
    """The lines tell() prints: each stopped job's last word, then what to do."""
    run_log = Path(snakemake_log).read_text(errors="replace")
    lines, words, left, training = [], [], [], False
    timed_out = 0
    for job in stopped_jobs(run_log):
        rule, job_log, killed, outputs = job.rule, job.log, job.killed, job.outputs
        said = last_word(job_log) if job_log else None
        if job.slurm_status == "TIMEOUT":  # SLURM stopped it at the job's --time: its own last word says where
            timed_out += 1
            said = "hit its SLURM time limit (TIMEOUT)" + (f", {said}" if said else "")
        if job.times > 1:
            said = f"{said or 'failed'} ({job.times} attempts)"
        if said is None and killed:  # it said nothing: stopped from outside, the OOM killer's SIGKILL most often
            oom = " (most often the out-of-memory killer: `dmesg` says)" if killed == "SIGKILL" else ""
            resume = "; a rerun resumes a training from its last checkpoint" if rule in TRAINING else ""
            said = f"killed by {killed}{oom}{resume}"
        words.append(said or "")
        name = _job_name(rule, job_log)
        lines.append(f"  {name}: {said or 'see its error block above'}" + (f"  ({job_log})" if job_log else ""))
        training = training or rule in TRAINING
        # Snakemake removes a job's outputs before it runs it: any there now, this job wrote before it stopped
        if any(Path(output).exists() for output in outputs):
            left.append(name)
    # Ctrl-C reaches Snakemake (which logs it) and its jobs; jobs stopped by a signal Snakemake did not get
    # (it ignored SIGINT, or the jobs alone were signalled) each say so themselves
    ctrl_c = CTRL_C in run_log
    if not lines:  # no job stopped: Snakemake's own error (a DAG error) says it all, but not that a signal did
        if ctrl_c:
            return _stopped_between_jobs(Path(snakemake_log).parents[1])
        return [STOPPED_BY_SIGTERM] if SIGTERM in run_log else []
    said = [word for word in words if word]
    interrupted = ctrl_c or (said and all(word.startswith(("interrupted", FINISHED_WORD)) for word in said))
    head = (f"{len(lines)} job(s) hit their SLURM time limit" if timed_out == len(lines) and not ctrl_c
            else f"stopped by {'Ctrl-C' if ctrl_c else 'a signal'}: {len(lines)} job(s) did not finish" if interrupted
            else f"{len(lines)} job(s) failed")
    fix = _fix(interrupted or timed_out == len(lines), training, left, FINISHED_WORD in words)
    if timed_out:
        fix += ("; to finish within it, raise the rule's runtime (set-resources in profiles/slurm/config.yaml) or "
                "add --retries (docs/cluster.md)")
    return [f"pico-llm: {head}; every finished output is kept.", *lines, f"pico-llm: {fix}."]


def incomplete_outputs(snakemake_dir: Path) -> list[str]:
    """The outputs Snakemake still marks incomplete (.snakemake/incomplete/: a marker per output, named by its
    path in URL-safe base64, cut into parts of a file name's length, all but the last led by '@'), that exist."""
    found = []
    for path in sorted((snakemake_dir / "incomplete").rglob("*")):
        if not path.is_file() or path.name == "migration_underway":
            continue
        parts = path.relative_to(snakemake_dir / "incomplete").parts
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            name = base64.urlsafe_b64decode("".join(part.removeprefix("@") for part in parts)).decode()
            if Path(name).exists():
                found.append(name)
    return found


def _stopped_between_jobs(snakemake_dir: Path) -> list[str]:
    """Ctrl-C with no job stopped: as a job ended, its outputs written but not yet seen by Snakemake (which
    still marks them incomplete, and a plain rerun refuses), or between jobs."""
    left = incomplete_outputs(snakemake_dir)
    if not left:
        return ["pico-llm: stopped by Ctrl-C with no job running; every finished output is kept.",
                "pico-llm: rerun the same command to continue."]
    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    return ["pico-llm: stopped by Ctrl-C as a job ended; every finished output is kept.",
            f"pico-llm: rerun the same command with --rerun-incomplete to continue; it reruns just the jobs of "
            f"{shown}, which Snakemake had not seen end (a finished training is restored, not retrained)."]


def _fix(interrupted: bool, training: bool, left: list[str], finished: bool) -> str:
    """What to do next. A job stopped with outputs on disk (`left`) is refused by a plain rerun, which calls them
    incomplete (IncompleteFilesException): --rerun-incomplete reruns just those jobs."""
    rerun = "rerun the same command" + (" with --rerun-incomplete" if left else "")
    fix = (f"{rerun} to continue" + (" (training resumes from its last checkpoint)" if training else "")
           if interrupted else f"fix what each line names, then {rerun}")
    restored = " (a finished training is restored, not retrained)" if finished else ""
    if left:
        return f"{fix}; it reruns just {', '.join(left)}, which stopped with outputs on disk{restored}"
    if finished:  # a log without the job's outputs: Snakemake asks for --rerun-incomplete when it finds them
        return f"{fix}; add --rerun-incomplete where Snakemake asks for it{restored}"
    return fix


def _job_name(rule: str, job_log: str | None) -> str:
    """train/lstm/seed7 for the log results/<experiment>/logs/train/lstm/seed7.log; the rule without a log."""
    if not job_log:
        return rule
    parts = Path(job_log).with_suffix("").parts
    return "/".join(parts[parts.index("logs") + 1:]) if "logs" in parts else rule


def tell(snakemake_logs: list[str] | str | None) -> None:
    """Print summary() on stderr, from the run's log (Snakemake's onerror hook gives a list of its log files);
    nothing when there is none to read."""
    logs = [snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else snakemake_logs or []
    log = next((path for path in logs if Path(path).is_file()), None)
    lines = summary(log) if log else []
    if lines:
        print("", *lines, sep="\n", file=sys.stderr, flush=True)
