"""The study on a real SLURM cluster: a single-node cluster on this machine (tests/slurm_cluster.py).

Runs docs/cluster.md's cluster command (`snakemake --profile profiles/slurm --workflow-profile none all
--configfile ...`; no `--sdm conda`, conda channels are out of reach here) on a shortened copy of
config/offline.yaml, and checks that every job ran as a SLURM job with the CPUs its rule asked for and
no GPU, and that the outputs carry the same numbers as a local run of the same config. A job that fails
(a data file that is not UTF-8) must make snakemake fail, not hang. Every snakemake call has a timeout.
Slow tests (`pytest -m slow`): `all` on the cluster, and a training job past its time limit resuming.

The cluster tests are opt-in, since they install packages and start daemons on the machine: they run only
when PICOLLM_SLURM_TESTS=1 is set, and are skipped (with the reason) otherwise, or when not root, or when
SLURM is missing and apt-get is unavailable. The sbatch-options test needs no cluster and always runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

import slurm_cluster
from conftest import NO_SLURM_BIN

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PARTS = ["workflow", "src", "profiles", "config"]
SLURM_PROFILE = ["--profile", "profiles/slurm", "--workflow-profile", "none"]
# the test cluster answers within a second: check job states sooner than the profile's 40 s
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]
TIMEOUT_S = 420
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.opt_in_missing() or slurm_cluster.why_unavailable()
    if reason:
        pytest.skip(reason)
    c = slurm_cluster.Cluster()
    try:
        yield c.start()
    finally:
        c.stop()


def tiny_config(experiment: str) -> dict:
    """config/offline.yaml, shortened: fewer sequences, steps and samples, and two of its three models
    (the k-gram MLP, and the transformer that the attention figure of `all` needs)."""
    cfg = yaml.safe_load((ROOT / "config" / "offline.yaml").read_text())
    cfg["experiment"] = experiment
    cfg["models"] = {name: cfg["models"][name] for name in ("kgram_mlp", "transformer")}
    cfg["data"]["sources"][0]["num_sequences"] = 600
    cfg["train"].update(max_steps=20, warmup_steps=4, eval_interval=10, eval_batches=2, checkpoint_interval=10,
                        log_interval=5, snapshot_steps=[10, 20])
    cfg["seeds"], cfg["sweep"] = cfg["seeds"][:1], {}  # one seed, no sweep: the cluster test stays short
    cfg["sampling"].update(max_new_tokens=12, num_samples=1, p_values=[0.9])
    return cfg


def project_copy(dest: Path) -> Path:
    """What a fresh clone has for running the workflow (code, rules, profiles, configs)."""
    for part in PROJECT_PARTS:
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


HEAD_PLANS: list[Path] = []  # the fused head's plan cache every run of this module reads (seed_head_plans)


def seed_head_plans(cfg: dict, cache: Path) -> None:
    """Time the fused head's plan of each of the study's models once, into `cache`, at the threads its train job
    runs with. A machine's first run times it: two runs timing it at once, each under the other's load, may keep
    different plans, whose sums differ in the last bits; the SLURM and the local run must read one plan."""
    from picollm.loss import head_plan_record
    from picollm.models import build_model

    before_env, before_threads = os.environ.get("PICOLLM_CACHE_DIR"), torch.get_num_threads()
    os.environ["PICOLLM_CACHE_DIR"] = str(cache)
    torch.set_num_threads(cfg["train"]["threads"])
    try:
        for model in cfg["models"].values():
            head_plan_record(build_model(model, 257, cfg["block_size"]), "cpu")  # the byte tokenizer's vocabulary
    finally:
        torch.set_num_threads(before_threads)
        if before_env is None:
            os.environ.pop("PICOLLM_CACHE_DIR")
        else:
            os.environ["PICOLLM_CACHE_DIR"] = before_env
    HEAD_PLANS[:] = [cache]


def snakemake_env() -> dict:
    env = dict(os.environ)
    if HEAD_PLANS:
        env["PICOLLM_CACHE_DIR"] = str(HEAD_PLANS[0])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the jobs run `python`
    for var in ("SNAKEMAKE_PROFILE", "PYTHONPATH"):
        env.pop(var, None)
    return env


def start_snakemake(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """snakemake in its own session (so a timeout can stop it and its children), output to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=snakemake_env(),
                                stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (snakemake then cancels its SLURM jobs), SIGKILL if it is still there a minute later."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def show_job(job_id: str) -> dict:
    """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge seconds)."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def rule_threads(out: str) -> dict[str, int]:
    """{snakemake jobid: threads} from snakemake's job listing (`threads:` is shown when it is not 1)."""
    threads = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        if m := re.search(r"^\s+jobid: (\d+)$", block, re.M):
            t = re.search(r"^\s+threads: (\d+)$", block, re.M)
            threads[m.group(1)] = int(t.group(1)) if t else 1
    return threads


def memory_overrides(cluster) -> list[str]:
    """--set-resources that shrink the profile's memory requests to fit a smaller test node."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    rules = {r: v["mem_mb"] for r, v in profile.get("set-resources", {}).items() if "mem_mb" in v}
    limit = cluster.memory_mb // 2  # two jobs side by side
    return [f"{r}:mem_mb={limit}" for r, mb in rules.items() if mb > limit]


def comparable(results: Path) -> dict[str, object]:
    """The outputs that carry the study's numbers, with run-dependent fields (times, paths) left out. A
    training's finished/ folder (second names of the same files, picollm.finished) is not an output."""
    out = {}
    for path in sorted(results.glob("models/*/*/metrics.csv")):
        out[str(path.relative_to(results))] = pd.read_csv(path).drop(columns="elapsed_s").to_csv(index=False)
    for pattern in ("samples/*/*.jsonl", "tables/samples.csv", "data/raw/*/*.txt", "data/tokens/*.bin"):
        for path in sorted(results.glob(pattern)):
            out[str(path.relative_to(results))] = path.read_bytes()
    for path in sorted(results.glob("models/*/*/summary.json")):
        summary = json.loads(path.read_text())
        kept = {k: v for k, v in summary.items() if k not in ("wall_s", "tokens_per_s", "provenance", "head_loss")}
        # the head's plan sets the numerics; whether this job measured it or read the cache depends on job order
        kept["head_plan"] = (summary.get("head_loss") or {}).get("plan")
        out[str(path.relative_to(results))] = kept
    return out


class Run:
    """One snakemake run: its project copy, results folder, exit status, output and wall time."""

    def __init__(self, name: str, project: Path, experiment: str, args: list[str]):
        self.name, self.project, self.results = name, project, project / "results" / experiment
        self.log = project / "snakemake.out"
        self.t0 = time.monotonic()
        self.proc = start_snakemake(args, project, self.log)
        self.rc = self.wall_s = None

    @property
    def out(self) -> str:
        return self.log.read_text(errors="replace")

    def poll(self) -> bool:
        if self.rc is None and (rc := self.proc.poll()) is not None:
            self.rc, self.wall_s = rc, time.monotonic() - self.t0
        return self.rc is not None


def finish(runs: list[Run], timeout: float) -> None:
    """Wait for every run; one still going after `timeout` seconds is stopped and the test fails."""
    deadline = time.monotonic() + timeout
    while not all([run.poll() for run in runs]):  # (a list: poll every run, each time)
        if time.monotonic() > deadline:
            hung = [run for run in runs if not run.poll()]
            for run in hung:
                stop(run.proc)
            pytest.fail("snakemake did not finish within {:.0f} s (hung?): {}\n{}".format(
                timeout, ", ".join(r.name for r in hung), "\n".join(r.out[-4000:] for r in hung)))
        time.sleep(0.5)


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def bad_data_config(tmp: Path) -> dict:
    """A `text` source whose file is Latin-1, not UTF-8: its download job fails."""
    bad = tmp / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    return {"experiment": "slurm_bad", "device": "cpu", "tokenizer": "byte", "block_size": 16,
            "data": {"sources": [{"kind": "text", "name": "bad", "train_files": [str(bad)]}]},
            "models": {"kgram_mlp": {"type": "kgram_mlp", "k": 2, "embed_dim": 8, "hidden_dim": 16}}}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Three snakemake runs at once (SLURM jobs mostly wait, so they overlap):
    the small study on SLURM, the same study run locally, and a study whose data file is bad, on SLURM."""
    tmp = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    cfg = tiny_config("slurm_tiny")
    config = write_config(cfg, tmp / "tiny.yaml")
    seed_head_plans(cfg, tmp / "picollm-cache")
    r = f"results/{cfg['experiment']}"
    # Data, models, samples and the samples table: 5 jobs deep, each level slow on SLURM (each job starts
    # snakemake twice; the plugin polls). `all` adds figures, evaluation and report, 4 levels more:
    # test_whole_study_on_slurm (slow) runs it.
    targets = [f"{r}/tables/samples.csv"]
    extra = memory_overrides(cluster)
    started = {
        "slurm": Run("slurm", project_copy(tmp / "slurm"), cfg["experiment"],
                     [*SLURM_PROFILE, *FAST_STATUS, *targets, *(["--set-resources", *extra] if extra else []),
                      "--configfile", str(config)]),
        # the docs' local command (workflow/profiles/default), up to what the comparison reads
        "local": Run("local", project_copy(tmp / "local"), cfg["experiment"],
                     ["--cores", "2", f"{r}/tables/samples.csv", "--configfile", str(config)]),
        "bad": Run("bad", project_copy(tmp / "bad"), "slurm_bad",
                   [*SLURM_PROFILE, *FAST_STATUS, "all", "--configfile",
                    str(write_config(bad_data_config(tmp), tmp / "bad.yaml"))]),
    }
    finish(list(started.values()), TIMEOUT_S)
    print("\nsnakemake runs (at once): " + ", ".join(f"{n} {run.wall_s:.0f} s" for n, run in started.items())
          + f"; {time.monotonic() - t0:.0f} s with the copies")
    return {**started, "config": cfg}


def workflow_local_rules() -> set[str]:
    """The rules the workflow runs in snakemake itself: `all` (no command) and those marked `localrule: True`."""
    local = {"all"}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for rule in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            if re.search(r"^\s+localrule: True$", rule, re.M):
                local.add(rule.split(":", 1)[0])
    return local


def check_slurm_jobs(out: str) -> set[str]:
    """Every job of the run was a SLURM job that completed with --cpus-per-task = its threads and no GPU;
    only the workflow's local rules run in snakemake itself. Returns the rules seen."""
    assert "Using profile profiles/slurm for" in out
    total = int(re.search(r"^total\s+(\d+)$", out, re.M).group(1))
    submitted = dict(SUBMITTED.findall(out))
    local_rules = set(re.findall(r"^localrule (\w+):", out, re.M))
    assert local_rules <= workflow_local_rules(), f"jobs ran outside SLURM: {local_rules - workflow_local_rules()}"
    assert len(submitted) == total - len(local_rules), f"{len(submitted)} SLURM jobs for {total} jobs"
    assert len(set(submitted.values())) == len(submitted)
    threads = rule_threads(out)
    rules = set()
    for jobid, slurm_id in submitted.items():
        job = show_job(slurm_id)
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        rules.add(re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", job["Comment"]).group(1))
        assert int(job["CPUs/Task"]) == threads[jobid], (jobid, job)
        assert "gpu" not in job.get("TRES", "") and "gpu" not in job.get("TresPerJob", ""), job
    return rules


def test_every_job_ran_as_a_slurm_job(runs):
    run, cfg = runs["slurm"], runs["config"]
    assert run.rc == 0, f"snakemake on SLURM failed:\n{run.out[-8000:]}"
    rules = check_slurm_jobs(run.out)
    assert {"download", "tokenize", "train", "sample", "tables"} <= rules
    assert max(rule_threads(run.out).values()) == 2  # tokenize's 2 threads: a multi-CPU job was exercised

    # each job gave torch the CPUs it was given: --threads in each stage's command = its rule's threads
    for record in [run.results / "provenance" / "tokenize.json", *run.results.glob("provenance/train/*/*.json")]:
        command = json.loads(record.read_text())["command"]
        given = int(command[command.index("--threads") + 1])
        assert given == (2 if "tokenize" in command else cfg["train"]["threads"]), (record, given)
        # the record names its SLURM job and the memory that job was granted (tables/resources.csv shows them)
        slurm = json.loads(record.read_text())["slurm"]
        assert f"{slurm['mem_mb']}M" == show_job(slurm["job_id"])["MinMemoryNode"], (record, slurm)


def test_outputs_match_a_local_run(runs):
    slurm, local = runs["slurm"], runs["local"]
    assert slurm.rc == 0, f"snakemake on SLURM failed:\n{slurm.out[-8000:]}"
    assert local.rc == 0, f"the local run failed:\n{local.out[-8000:]}"
    assert "Using workflow specific profile workflow/profiles/default" in local.out
    on_slurm, here = comparable(slurm.results), comparable(local.results)
    assert sum(k.endswith("metrics.csv") for k in here) == len(runs["config"]["models"])
    assert any(k.startswith("samples/") for k in here)
    assert on_slurm.keys() == here.keys()
    for key in here:
        assert on_slurm[key] == here[key], f"{key} differs between the SLURM and the local run"


def test_failing_job_fails_the_run(runs):
    """A bad data file: the download job fails on SLURM; snakemake says so and exits non-zero (no hang)."""
    run = runs["bad"]
    assert run.rc != 0, run.out[-6000:]
    assert SUBMITTED.search(run.out), "the download job was not submitted to SLURM"
    assert "Error in rule download" in run.out and "FAILED" in run.out, run.out[-6000:]
    assert "is not UTF-8" in (run.results / "logs" / "download" / "bad.log").read_text()


class _Resources(dict):
    __getattr__ = dict.__getitem__  # what the plugin's submit functions read: resources.get(...) and resources.x


# (device, what the snakemake that plans the jobs found for device: auto, train.nodes, the GPU option)
TRAINING = [("cpu", None, 1, None), ("cuda", None, 1, "--gpus=1"), ("auto", "1", 1, "--gpus=1"),
            ("auto", "0", 1, None), ("cpu", None, 2, None)]


@pytest.mark.parametrize("device, auto_gpu, nodes, gpus", TRAINING)
def test_sbatch_options_of_a_training_job(tmp_path, device, auto_gpu, nodes, gpus):
    """No cluster needed: the train job's resources under profiles/slurm (a dry run), turned into sbatch
    options by the plugin's own functions: --cpus-per-task = threads, memory and time from the profile (for
    training on several nodes too, rule train_nodes), and a GPU exactly when the study runs on CUDA. device: auto
    is decided by the snakemake that plans the jobs (jobs.AUTO_GPU), which a job parsing the workflow again on
    its node is handed: the job asks for what its sbatch got."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from picollm.jobs import AUTO_GPU

    cfg = tiny_config("sbatch_options")
    cfg["device"], cfg["train"]["threads"], cfg["train"]["nodes"] = device, 2, nodes
    config = write_config(cfg, tmp_path / "cfg.yaml")
    env = {**no_partitions_env(), **({AUTO_GPU: auto_gpu} if auto_gpu else {})}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", *SLURM_PROFILE, "--directory", str(tmp_path),
                           "all", "--configfile", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rule = "train" if nodes == 1 else "train_nodes"
    train = next(b for b in re.split(r"\n(?=\[[^\]]+\]\n)", proc.stdout) if re.search(rf"^rule {rule}:", b, re.M))
    threads = cfg["train"]["threads"]  # the rule's threads (a remote dry run does not print them)
    resources = _Resources(
        (k, int(v) if v.isdigit() else v)
        for k, v in re.findall(r"(\w+)=([^,\s]+)", re.search(r"^\s+resources: (.*)$", train, re.M).group(1)))
    job = SimpleNamespace(resources=resources, threads=threads)
    params = dict(run_uuid="uuid", slurm_logfile="log", comment_str=f"rule_{rule}", account="", partition="",
                  workdir=str(tmp_path))
    call = get_submit_command(job, params) + set_gres_string(job)
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())["set-resources"][rule]
    assert "--cpus-per-task=2" in call and f"--mem {profile['mem_mb']}" in call and f"-t {profile['runtime']}" in call
    assert re.findall(r"--gpus=\S+|--gres=\S+", call) == ([gpus] if gpus else []), call
    assert nodes == 1 or f"--nodes={nodes}" in call, call


def test_a_resources_option_that_drops_the_profiles_memory_is_a_note(tmp_path):
    """--set-resources on the command line replaces the profile's whole set-resources: raising training's time
    limit would drop its memory without a word. A note names what is dropped and the words that keep it; given
    those, nothing is dropped and the training job keeps the profile's memory with the new time."""
    from picollm.config.profile import dropped_resources

    config = write_config(tiny_config("resources_note"), tmp_path / "cfg.yaml")
    command = [sys.executable, "-m", "snakemake", "-n", *SLURM_PROFILE, "--directory", str(tmp_path), "all",
               "--configfile", str(config), "--set-resources", "train:runtime=480"]
    proc = subprocess.run(command, cwd=ROOT, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: --set-resources")]
    assert len(notes) == 1 and "train:mem_mb=8000" in notes[0], proc.stderr[-3000:]
    keep = notes[0].split("give them too: --set-resources ")[1].split(" (or edit")[0].split()
    assert keep[0] == "train:runtime=480" and "train:mem_mb=8000" in keep
    profile = ["--profile", "profiles/slurm"]
    assert dropped_resources([*profile, "all", "--set-resources", *keep]) == []
    assert dropped_resources([*profile, "--set-resources", *keep, "train:mem=8G"]) == []  # mem is mem_mb
    proc = subprocess.run([*command, *keep[1:]], cwd=ROOT, env=snakemake_env(), capture_output=True, text=True,
                          timeout=300)
    assert "note:" not in proc.stderr and re.search(r"^rule train:(\n\s+.*)*resources: .*mem_mb=8000.*runtime=480",
                                                    proc.stdout, re.M), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mem_mb=2000, runtime=30" in dropped_resources([*profile, "--default-resources", "slurm_account=abc"])[0]


def no_partitions_env() -> dict:
    """snakemake_env() where sinfo finds no cluster (the cluster's single node has no GPUs, and one node): the
    sbatch options of any study, unchecked against the partitions (picollm.slurm)."""
    env = snakemake_env()
    return {**env, "PATH": f"{NO_SLURM_BIN}{os.pathsep}{env['PATH']}"}


SINFO = "debug*|1|1-infinite|(null)\ngpu|3|1-2|gpu:a100:4(S:0-1)\ngpu|1|1-2|gpu:a100:4(S:0-1)\n"


def sinfo_env(tmp_path: Path) -> dict:
    """snakemake_env() with an `sinfo` that shows two partitions: debug (the default: one node, no GPUs) and gpu
    (four GPU nodes, two states, and a job spans at most two)."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "sinfo").write_text(f"#!/bin/sh\nprintf '{SINFO}'\n")
    (tmp_path / "bin" / "sinfo").chmod(0o755)
    env = snakemake_env()
    return {**env, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{NO_SLURM_BIN}{os.pathsep}{env['PATH']}"}


SKIP = "(where the cluster reroutes jobs itself, PICOLLM_SLURM_CHECK=0 skips this check)"


@pytest.mark.parametrize("overrides, line", [
    ("train={nodes: 2}", "error: run kgram_mlp trains on train.nodes = 2 nodes, but SLURM partition debug has 1 "
                         "node(s), so the job could never start; lower train.nodes, or name a larger partition as "
                         f"slurm_partition under set-resources: train_nodes: in profiles/slurm/config.yaml {SKIP}"),
    ("device=cuda", "error: the study runs on device cuda, but SLURM partition debug has no GPUs, so sbatch would "
                    "refuse every train job; name a GPU partition as slurm_partition under set-resources: train: in "
                    f"profiles/slurm/config.yaml (or run on device: cpu) {SKIP}"),
])
def test_a_job_no_partition_can_run_is_one_line_before_anything_is_submitted(tmp_path, overrides, line):
    """No cluster needed (sinfo is a stand-in): a training on more nodes than a job may span there would pend for
    good, a GPU study on a partition without GPUs would have sbatch refuse its jobs; either is one line at once."""
    config = write_config(tiny_config("partitions"), tmp_path / "cfg.yaml")
    command = [sys.executable, "-m", "snakemake", *SLURM_PROFILE, "--directory", str(tmp_path), "all",
               "--configfile", str(config), "--config", overrides]
    env = sinfo_env(tmp_path)
    proc = subprocess.run([*command, "-n"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == line, proc.stderr[-3000:]
    # --unlock plans no job: the command a lost login session needs is not refused
    proc = subprocess.run([*command, "--unlock"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_partitions_a_study_names_are_the_ones_checked(monkeypatch):
    """picollm.slurm reads the partition of each rule as Snakemake would: the command line's set-resources (or
    default-resources) replacing the profile's whole map; a partition that can run the job passes, and without
    the SLURM profile (or without an answer from sinfo) nothing is checked."""
    from picollm import slurm
    from picollm.config import parse
    from picollm.config.study import Study

    cfg = tiny_config("partitions")
    cfg["train"]["nodes"], cfg["device"] = 2, "cuda"
    study = parse(Study, cfg)
    found = slurm.partitions(lambda *a, **k: SimpleNamespace(returncode=0, stdout=SINFO))
    assert found["gpu"] == slurm.Partition("gpu", 4, 2, True, False) and found["debug"].default
    base = ["all", *SLURM_PROFILE]
    on_gpu = ["--set-resources", "train_nodes:slurm_partition=gpu", "evaluate:slurm_partition=gpu"]
    assert slurm.problems(study, [*base, *on_gpu], sinfo=lambda: found) == []
    assert slurm.problems(study, [*base, "--default-resources", "slurm_partition=gpu"], sinfo=lambda: found) == []
    wide = slurm.problems(study, [*base, "--set-resources", "evaluate:slurm_partition=gpu"], sinfo=lambda: found)
    assert [line.split(",")[0] for line in wide] == ["run kgram_mlp trains on train.nodes = 2 nodes",
                                                     "run transformer trains on train.nodes = 2 nodes",
                                                     "the study runs on device cuda"]  # train_nodes: on debug
    cfg["train"]["nodes"], cfg["train"]["batch_size"] = 3, 12  # the global batch splits over the ranks
    assert "lets a job span at most 2 (its MaxNodes)" in slurm.problems(parse(Study, cfg), [*base, *on_gpu],
                                                                         sinfo=lambda: found)[0]
    assert slurm.problems(study, ["all"], sinfo=lambda: found) == []  # a local run
    assert slurm.problems(study, base, sinfo=lambda: None) == []  # sinfo did not answer
    # where the job may go to a partition that fits, or to one sinfo does not show, nothing is refused
    for words in (["train_nodes:slurm_partition='debug,gpu'", "evaluate:slurm_partition=gpu"],
                  ["train_nodes:slurm_partition=elsewhere", "evaluate:slurm_partition=gpu"],
                  ["train_nodes:slurm_cluster=other", "evaluate:slurm_partition=gpu"]):
        assert slurm.problems(study, [*base, "--set-resources", *words], sinfo=lambda: found) == [], words
    assert slurm.problems(study, [*base, "--slurm-partition-config", "p.yaml"], sinfo=lambda: found) == []
    monkeypatch.setenv("PICOLLM_SLURM_CHECK", "0")
    assert slurm.problems(study, base, sinfo=lambda: found) == []


def test_a_profile_is_found_where_snakemake_looks_and_read_in_either_form(tmp_path, monkeypatch):
    """--profile takes one word (a target may follow it), a folder or a name under ~/.config/snakemake; a profile
    may write its resource maps as lists of the command line's words."""
    from picollm.config.profile import dropped_resources, profile_file, read_profile, resource_maps

    monkeypatch.chdir(ROOT)
    assert profile_file(["--profile", "profiles/slurm", "all"]) == Path("profiles/slurm/config.yaml")
    assert profile_file(["--profile=profiles/slurm", "all"]) == Path("profiles/slurm/config.yaml")
    mine = tmp_path / "snakemake" / "mine"
    mine.mkdir(parents=True)
    (mine / "config.v8+.yaml").write_text("executor: slurm\ndefault-resources:\n  - mem_mb=3000\n  - runtime=60\n"
                                          "set-resources:\n  - train:mem_mb=9000\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    argv = ["--profile", "mine", "all"]
    assert profile_file(argv) == mine / "config.v8+.yaml"
    assert resource_maps(argv, read_profile(profile_file(argv))) == ({"train": {"mem_mb": "9000"}},
                                                                     {"mem_mb": "3000", "runtime": "60"})
    assert "train:mem_mb=9000 no longer apply" in dropped_resources([*argv, "--set-resources", "train:runtime=5"])[0]


@pytest.mark.slow
def test_whole_study_on_slurm(cluster, tmp_path):
    """`all` of the small study on SLURM: also the evaluation and report stages."""
    cfg = tiny_config("slurm_all")
    config = write_config(cfg, tmp_path / "tiny.yaml")
    run = Run("all", project_copy(tmp_path / "project"), cfg["experiment"],
              [*SLURM_PROFILE, *FAST_STATUS, "all", "--configfile", str(config)])
    finish([run], 2 * TIMEOUT_S)
    assert run.rc == 0, f"snakemake on SLURM failed:\n{run.out[-8000:]}"
    check_slurm_jobs(run.out)
    assert (run.results / "report.html").exists()


def endless_training(tmp_path: Path, experiment: str) -> tuple[Path, list[str], Path]:
    """A project copy, the SLURM command that trains one transformer for ever (no checkpoint but on a signal), and
    its training's log."""
    cfg = tiny_config(experiment)
    cfg["models"] = {"transformer": cfg["models"]["transformer"]}
    cfg["train"].update(max_steps=10**7, checkpoint_interval=10**6, eval_interval=10**6, log_interval=1000)
    config = write_config(cfg, tmp_path / "long.yaml")
    project = project_copy(tmp_path / "project")
    target = f"results/{experiment}/models/transformer/seed{cfg['seeds'][0]}/model.pt"
    log = project / "results" / experiment / "logs" / "train" / "transformer" / f"seed{cfg['seeds'][0]}.log"
    return project, [*SLURM_PROFILE, *FAST_STATUS, target, "--configfile", str(config)], log


@pytest.mark.slow
def test_training_resumes_after_the_time_limit(cluster, tmp_path):
    """A training job that outlives its SLURM time limit (1 minute) checkpoints on SIGTERM; running the
    same command again resumes it from last.pt (two runs, each past the time limit)."""
    project, args, log = endless_training(tmp_path, "slurm_timeout")
    args += ["--set-resources", "train:runtime=1"]
    last = log.parents[3] / "models" / "transformer" / log.stem / "last.pt"
    steps = []
    for attempt in (1, 2):
        run = Run(f"attempt {attempt}", project, "slurm_timeout", args)
        finish([run], TIMEOUT_S)
        assert run.rc != 0 and "TIMEOUT" in run.out, run.out[-6000:]
        assert last.exists(), f"no checkpoint after the time limit:\n{log.read_text()[-3000:]}"
        steps.append(torch.load(last, map_location="cpu", weights_only=False)["step"])
        if attempt == 2:
            assert re.search(rf"resuming from \S*last\.pt at step {steps[0]}\b", log.read_text()), log.read_text()[-3000:]
    assert 0 < steps[0] < steps[1], steps  # the second attempt went on from the first one's checkpoint


@pytest.mark.slow
def test_ctrl_c_cancels_the_slurm_jobs_and_names_each(cluster, tmp_path):
    """Ctrl-C while a training runs as a SLURM job: the job is cancelled, checkpoints, and the run's closing lines
    name it with the step its last.pt holds (the SLURM executor logs no error block for a job it cancels); the
    rerun resumes from there."""
    project, args, log = endless_training(tmp_path, "slurm_ctrl_c")
    run = Run("ctrl-c", project, "slurm_ctrl_c", args)
    deadline = time.monotonic() + TIMEOUT_S
    while not (log.exists() and "step/s" in log.read_text(errors="replace")):  # training, past its start-up
        assert not run.poll() and time.monotonic() < deadline, run.out[-6000:]
        time.sleep(1)
    os.killpg(run.proc.pid, signal.SIGINT)
    finish([run], 120)
    line = next((line for line in run.out.splitlines() if line.startswith("  train/transformer/")), run.out[-6000:])
    assert "pico-llm: stopped by Ctrl-C: 1 job(s) did not finish" in run.out, run.out[-6000:]
    step = int(re.search(r"interrupted, stopped at step (\d+); \S+last\.pt holds it", line).group(1))
    assert not subprocess.run(["squeue", "--noheader"], capture_output=True, text=True).stdout.strip()
    rerun = Run("rerun", project, "slurm_ctrl_c", args)
    resumed = re.compile(rf"resuming from \S*last\.pt at step {step}\b")
    while not (log.exists() and resumed.search(log.read_text(errors="replace"))):
        assert not rerun.poll() and time.monotonic() < deadline + TIMEOUT_S, rerun.out[-6000:] + log.read_text()
        time.sleep(1)
    os.killpg(rerun.proc.pid, signal.SIGINT)
    finish([rerun], 120)


@pytest.mark.slow
def test_ctrl_c_names_a_queued_task_of_a_slurm_array_by_its_task(cluster, tmp_path):
    """--slurm-array-jobs train: two endless trainings of 2 CPUs each in one sbatch array, on a node of 2 CPUs,
    so one runs and one waits; Ctrl-C names the running one by its checkpoint and the queued one by its task,
    <array>_<task>, which is what squeue and scancel call it."""
    project, args, log = endless_training(tmp_path, "slurm_array")
    config = Path(args[-1])
    cfg = yaml.safe_load(config.read_text())
    cfg["models"]["lstm"] = {"type": "lstm", "embed_dim": 16, "hidden_dim": 32, "num_layers": 1}
    cfg["train"]["threads"] = 2
    write_config(cfg, config)
    seed = cfg["seeds"][0]
    targets = [f"results/slurm_array/models/{run}/seed{seed}/model.pt" for run in ("transformer", "lstm")]
    run = Run("array", project, "slurm_array", [*SLURM_PROFILE, *FAST_STATUS, *targets, "--configfile", str(config),
                                                "--slurm-array-jobs", "train"])
    deadline = time.monotonic() + TIMEOUT_S
    logs = [log.parent.parent / name / log.name for name in ("transformer", "lstm")]
    while not any(path.exists() and "step/s" in path.read_text(errors="replace") for path in logs):
        assert not run.poll() and time.monotonic() < deadline, run.out[-6000:]
        time.sleep(1)
    array = re.search(r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID (\d+)", run.out)
    assert array, run.out[-6000:]
    os.killpg(run.proc.pid, signal.SIGINT)
    finish([run], 120)
    lines = [line for line in run.out.splitlines() if line.startswith("  train/")]
    assert "pico-llm: stopped by Ctrl-C: 2 job(s) did not finish" in run.out, run.out[-6000:]
    assert any("interrupted, stopped at step" in line for line in lines), lines
    assert any(re.search(rf"cancelled \(SLURM job {array.group(1)}_\d+\)$", line) for line in lines), lines


def test_two_rank_training_job_on_slurm(cluster, tmp_path):
    """train.devices: 2 on CPU: one SLURM job holding devices x threads = 2 CPUs runs torchrun's two gloo
    ranks (each given --threads 1), and its metrics are one process's up to float rounding (tests/test_ddp.py)."""
    from picollm.train import train

    cfg = tiny_config("slurm_ddp")
    cfg["models"] = {"transformer": cfg["models"]["transformer"]}
    # fp32: under bf16 (precision: auto on a CPU with native bf16) two ranks' summed gradients round differently
    cfg["train"].update(devices=2, threads=1, snapshot_steps=[], precision="fp32")
    config = write_config(cfg, tmp_path / "ddp.yaml")
    seed = cfg["seeds"][0]
    target = f"results/{cfg['experiment']}/models/transformer/seed{seed}/model.pt"
    extra = memory_overrides(cluster)
    run = Run("ddp", project_copy(tmp_path / "project"), cfg["experiment"],
              [*SLURM_PROFILE, *FAST_STATUS, target, *(["--set-resources", *extra] if extra else []),
               "--configfile", str(config)])
    finish([run], TIMEOUT_S)
    assert run.rc == 0, f"snakemake on SLURM failed:\n{run.out[-8000:]}"
    assert "train" in check_slurm_jobs(run.out)  # --cpus-per-task = the rule's threads = 2
    assert max(rule_threads(run.out).values()) == 2
    command = json.loads((run.results / f"provenance/train/transformer/seed{seed}.json").read_text())["command"]
    assert command[command.index("--threads") + 1] == "2" and command[command.index("--devices") + 1] == "2"
    log = run.results / f"logs/train/transformer/seed{seed}.log"
    assert Path(f"{log}.rank1").exists()  # rank 1 ran, beside rank 0

    out = run.results / f"models/transformer/seed{seed}"
    job = json.loads(command[command.index("--config") + 1])
    alone = train("transformer", job["models"]["transformer"], job["train"], tokens_dir=run.results / "data/tokens",
                  out_dir=tmp_path / "alone", seed=seed, block_size=job["block_size"], device="cpu")
    assert alone["steps"] == cfg["train"]["max_steps"]
    two, one = (pd.read_csv(d / "metrics.csv").drop(columns="elapsed_s") for d in (out, tmp_path / "alone"))
    pd.testing.assert_frame_equal(one, two, atol=1e-4, rtol=0)
