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
import datetime as dt
import re
import signal
import sys
import threading
import time
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
FINISHED_WORD = "finished, but stopped before Snakemake saw it end: finished/ keeps it, and the rerun restores it"


SLURM_STATUS = re.compile(r"SLURM status is: '(\w+)'")  # the SLURM executor's message of a job that failed
MESSAGE = re.compile(r"\s+message: (.+)$")  # an error block's first line: None for a job that ran and failed
# the SLURM executor's message of a job it could not submit: sbatch's own words (quoted, over one line or more),
# or the plugin's (no controller)
SBATCH_REFUSED = re.compile(r"SLURM sbatch failed(?: for array job submission \([^)]*\))?\. The error message was '")
SUBMIT_FAILED = "Job submission failed with exception: "
FURTHER = "For further error details see"  # the SLURM executor's words after its message, inside the block
GRES = "generic resource"  # sbatch refusing --gpus: the partition has none (of that model)
STARTED = re.compile(r"^(?:local)?rule (\S+):$")  # the block Snakemake logs as it starts a job
JOBID = re.compile(r"\s+jobid: (\d+)$")
FINISHED_JOB = re.compile(r"^Finished jobid: (\d+)")
SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+)")
# --slurm-array-jobs: one sbatch for several jobs, each a task of the array (SLURM job <id>_<task>)
SUBMITTED_ARRAY = re.compile(r"^Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)\. "
                             r"The individual task IDs are (\d+)-")
PROGRESS_SHOWN = "Job stats:"  # logged as a run starts, unless --quiet progress also hid "Finished jobid"
SETTLE = 10.0  # seconds a SLURM job cancelled by Ctrl-C gets to write its last word (a training, its checkpoint)
COPIED = re.compile(r"^Logfile .+:$")  # show-failed-logs: a job's log copied in, between two lines of '='
FENCE = re.compile(r"^={20,}$")


@dataclass
class StoppedJob:
    """A job that did not finish: one with an "Error in rule" block in Snakemake's log, or a SLURM job Ctrl-C
    cancelled."""
    rule: str
    killed: str | None  # the signal that killed it
    log: str | None = None
    outputs: list[str] = field(default_factory=list)
    slurm_status: str | None = None  # the SLURM executor's word for it (TIMEOUT, FAILED, ...)
    times: int = 1  # how many times it stopped (--retries)
    not_submitted: str | None = None  # why sbatch (or the plugin) did not submit it
    slurm_job: str | None = None  # the SLURM job id of a job Ctrl-C cancelled
    jobid: str | None = None  # Snakemake's
    at: int = 0  # the line of Snakemake's log its block starts on
    stale: bool = False  # a cancelled job's log and outputs are older than the run: an earlier run's


def stopped_jobs(run_log: str, cancelled: bool = False) -> list[StoppedJob]:
    """The jobs that did not finish in `run_log`, the text of Snakemake's log: every job with an "Error in rule"
    block, and with `cancelled` (Ctrl-C) the SLURM jobs submitted and not seen to end since their last start, which
    the SLURM executor cancels without a block. A job's log copied in (show-failed-logs: on SLURM, the blocks of
    the job's own Snakemake) is not read; a job that stopped again (--retries) is one job."""
    failed, started, job, killed, fences_left, quoted = [], [], None, None, 0, False
    submitted, ended = {}, {}  # Snakemake's job ids: their SLURM job ids; the line each was last seen to end on
    for at, line in enumerate(run_log.splitlines()):
        if fences_left:  # inside a copied log, up to its second fence
            fences_left -= bool(FENCE.match(line))
        elif quoted:  # sbatch's refusal, quoted over several lines
            words = line.strip().removeprefix("sbatch: error: ")
            job.not_submitted += "; " + words.removesuffix("'.")
            quoted = not words.endswith("'.")
        elif COPIED.match(line):
            fences_left, job = 2, None
        elif match := KILLED.search(line):  # Snakemake's CalledProcessError, just above the job's block
            killed = match.group(1) or signal_name(int(match.group(2)) - 128)
        elif match := FAILED.match(line):
            job = StoppedJob(match.group(1), killed, at=at)
            failed.append(job)
            killed = None
        elif match := STARTED.match(line):
            job = StoppedJob(match.group(1), None, at=at)
            started.append(job)
        elif match := SUBMITTED.match(line):
            submitted[match.group(1)] = match.group(2)
        elif match := SUBMITTED_ARRAY.match(line):
            jobids, array, first = match.group(1).split(","), match.group(2), int(match.group(3))
            submitted.update({jobid: f"{array}_{first + i}" for i, jobid in enumerate(jobids)})
        elif match := FINISHED_JOB.match(line):
            ended[match.group(1)] = at
        elif not line[:1].isspace() and not line.startswith(FURTHER):  # a block's lines are indented: a job
            job = None  # started after it has its own
        elif job:
            quoted = _read_block_line(job, line)
    for job in failed:
        ended[job.jobid] = max(ended.get(job.jobid, -1), job.at)
    if cancelled and PROGRESS_SHOWN in run_log:  # (--quiet progress: which jobs ended is not known)
        for job in started:  # the last start of each job, after its last end
            if job.jobid in submitted and ended.get(job.jobid, -1) < job.at:
                job.slurm_job = submitted[job.jobid]
                failed.append(job)
                ended[job.jobid] = job.at
    merged = {}
    for job in failed:  # a retry's block names the same log (or rule and outputs)
        key = (job.rule, job.log or tuple(job.outputs))
        if key in merged:
            job.times += merged.pop(key).times
        merged[key] = job
    return list(merged.values())


def _read_block_line(job: StoppedJob, line: str) -> bool:
    """One indented line of a job's block: its id, log, outputs, and (an error block) the executor's message.
    True when that message is sbatch's refusal, quoted on into the next lines."""
    if job.jobid is None and (match := JOBID.match(line)):
        job.jobid = match.group(1)
    elif job.log is None and (match := LOG.match(line)):
        job.log = match.group(1).split(", ")[0]
    elif not job.outputs and (match := OUTPUT.match(line)):
        job.outputs = match.group(1).split(", ")
    elif match := MESSAGE.match(line):
        message = match.group(1)
        if status := SLURM_STATUS.search(message):
            job.slurm_status = status.group(1)
        elif refused := SBATCH_REFUSED.match(message):
            words = message[refused.end():].rstrip()
            job.not_submitted = words.removeprefix("sbatch: error: ").removesuffix("'.")
            return not words.endswith("'.")
        elif message.startswith(SUBMIT_FAILED):
            job.not_submitted = message[len(SUBMIT_FAILED):].split(FURTHER)[0].strip()
    return False


# What a second Ctrl-C says while Snakemake waits for the jobs the first one stopped (hold_second_ctrl_c)
STILL_STOPPING = ("pico-llm: still stopping: the stopped jobs are saving their work (a training, its checkpoint); "
                  "this run ends by itself in a few seconds, and another Ctrl-C changes nothing")


def hold_second_ctrl_c() -> None:
    """The first Ctrl-C stops a run as before (KeyboardInterrupt: Snakemake cancels its jobs and waits for them);
    a second one, while it waits, would break the wait off in some hundred lines of Snakemake's tracebacks and
    skip the closing summary (tell): it prints STILL_STOPPING instead, and is otherwise ignored. The jobs ignore
    it themselves (picollm.cli). Left alone where Ctrl-C is already ignored (a run in the background) or
    handled by someone else, and outside the main thread, which alone sets signal handlers."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return

    def again(signum, frame):
        print(STILL_STOPPING, file=sys.stderr, flush=True)

    def first(signum, frame):
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)


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
    # Ctrl-C reaches Snakemake (which logs it) and its jobs; jobs stopped by a signal Snakemake did not get
    # (it ignored SIGINT, or the jobs alone were signalled) each say so themselves
    ctrl_c = CTRL_C in run_log
    jobs = stopped_jobs(run_log, cancelled=ctrl_c)
    since = run_started(snakemake_log)
    for job in jobs:  # a job still queued wrote nothing: what its paths hold, an earlier run did
        job.stale = bool(job.slurm_job and since and not _written_since(job.log, since))
    _settle([job for job in jobs if job.slurm_job and not job.stale])
    timed_out = sum(job.slurm_status == "TIMEOUT" for job in jobs)
    for job in jobs:
        rule, job_log, outputs = job.rule, job.log, job.outputs
        said = job_word(job)
        words.append(said or "")
        name = _job_name(rule, job_log)
        # a job that never ran (not submitted, still queued) wrote no log
        shown_log = job_log and not job.not_submitted and not job.stale and Path(job_log).exists()
        lines.append(f"  {name}: {said or 'see its error block above'}" + (f"  ({job_log})" if shown_log else ""))
        training = training or rule in TRAINING
        # Snakemake removes a job's outputs before it runs it: any there now, this job wrote before it stopped
        if not job.not_submitted and not job.stale and any(Path(output).exists() for output in outputs):
            left.append(name)
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


def job_word(job: StoppedJob) -> str | None:
    """What a stopped job's line says: its own last word, and what stopped it where its log cannot say."""
    said = last_word(job.log) if job.log and not job.stale else None
    if job.not_submitted:  # it never ran: a log of the same name is an earlier run's
        said = not_submitted_word(job.not_submitted)
    elif job.slurm_job and said is None:
        said = f"cancelled (SLURM job {job.slurm_job})"
    if job.slurm_status == "TIMEOUT":  # SLURM stopped it at the job's --time: its own last word says where
        said = "hit its SLURM time limit (TIMEOUT)" + (f", {said}" if said else "")
    if job.times > 1:
        said = f"{said or 'failed'} ({job.times} attempts)"
    if said is None and job.killed:  # it said nothing: stopped from outside, the OOM killer's SIGKILL most often
        oom = " (most often the out-of-memory killer: `dmesg` says)" if job.killed == "SIGKILL" else ""
        resume = "; a rerun resumes a training from its last checkpoint" if job.rule in TRAINING else ""
        said = f"killed by {job.killed}{oom}{resume}"
    return said


def not_submitted_word(reason: str) -> str:
    """A job sbatch refused (or the plugin could not submit), with the fix for the refusals a study's own settings
    cause."""
    if GRES in reason:
        return (f"not submitted: sbatch refused its GPUs ({reason}); the partition has none (of that model): name "
                f"a GPU partition as slurm_partition under set-resources: {{train, evaluate}} in "
                f"profiles/slurm/config.yaml (docs/cluster.md)")
    if "Unable to contact slurm controller" in reason:
        return f"not submitted: {reason}; run it where `sinfo` answers (a login node), or once SLURM is back"
    return f"not submitted: {reason}"


def _settle(cancelled: list[StoppedJob]) -> None:
    """Wait (up to SETTLE seconds) for each SLURM job that Ctrl-C cancelled as it ran (its log has lines) to
    write its last word: the SLURM executor's cancel returns as soon as scancel has sent SIGTERM, while a training
    still writes its checkpoint."""
    deadline = time.monotonic() + SETTLE
    waiting = [job for job in cancelled if job.log and _has_lines(job.log) and last_word(job.log) is None]
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: say what is known now
        while waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            waiting = [job for job in waiting if last_word(job.log) is None]


def run_started(snakemake_log: str | Path) -> float | None:
    """When the run began, from its log's name (Snakemake's .snakemake/log/<%Y-%m-%dT%H%M%S.%f>.snakemake.log, in
    local time); None for a log named otherwise."""
    stamp = Path(snakemake_log).name.removesuffix(".snakemake.log")
    try:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H%M%S.%f").timestamp()
    except ValueError:
        return None


def _written_since(path: str | None, since: float) -> bool:
    with contextlib.suppress(OSError, TypeError):
        return Path(path).stat().st_mtime >= since
    return False


def _has_lines(path: str) -> bool:
    with contextlib.suppress(OSError):
        return Path(path).stat().st_size > 0
    return False


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
