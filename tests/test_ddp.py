"""Data-parallel training (train.devices > 1): two gloo ranks on this CPU, started by the train rule's command
(`picollm train --devices 2`, which runs itself through torchrun), against one process on the same seed and
global batch; a killed two-rank run resumes to the uninterrupted one; and each bad launch is one line.
Several nodes (train.nodes: 2): the train_nodes rule's command with an srun stand-in that starts one torchrun
agent per node on this machine, against one process; a rank that dies ends the job in one line."""
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, byte_tokens, tiny_offline_config
from picollm import distributed, jobs, launch
from picollm.config import Study, parse
from picollm.errors import PicoError
from picollm.models import load_model

STEPS = 200
# fp32 on every CPU (precision: auto would be bf16 on one with native bf16): one process and two ranks sum the
# gradients in a different order, which fp32 keeps within ATOL and bf16's 8-bit mantissa does not.
TRAIN = {"max_steps": STEPS, "batch_size": 8, "lr": 0.003, "warmup_steps": 5, "eval_interval": 50, "eval_batches": 4,
         "checkpoint_interval": 25, "log_interval": 10, "threads": 1, "precision": "fp32"}
MODEL = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2}
ATOL = 1e-4


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


def study(devices: int, nodes: int = 1, device: str = "cpu", **train) -> Study:
    """A one-model study whose train job the workflow would start with `devices` ranks."""
    cfg = tiny_offline_config(models={"m": MODEL}, block_size=32, seed=3, device=device)
    cfg["train"] = {**TRAIN, "devices": devices, "nodes": nodes, **train}
    return parse(Study, cfg)


def job_config(cfg: Study) -> str:
    """The train job's --config, without the study's data sources (this token folder has its own)."""
    return json.dumps({k: v for k, v in jobs.train(cfg, "m", 3).items() if k != "data"})


def train_command(tokens_dir, out_dir, devices: int, nodes: int = 1, cfg: dict | None = None) -> str:
    """The train rule's shell command for this study: its config slice, threads and resources."""
    cfg = cfg or study(devices, nodes)
    return (f"python -m picollm --log {out_dir}.log train --config '{job_config(cfg)}' --tokens-dir {tokens_dir} "
            f"--out-dir {out_dir} --threads {jobs.train_threads(cfg, 'm')} --devices {jobs.train_devices(cfg, 'm')} "
            f"--nodes {jobs.train_nodes(cfg, 'm')} --provenance {out_dir}.json")


def env() -> dict:
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # torchrun, python
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": path}


def start(tokens_dir, out_dir, devices: int, cfg: Study | None = None) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", train_command(tokens_dir, out_dir, devices, cfg=cfg)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_to_end(tokens_dir, out_dir, devices: int, cfg: Study | None = None):
    proc = start(tokens_dir, out_dir, devices, cfg)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:] + open(f"{out_dir}.log").read()[-3000:]
    return out_dir


def tree_cpu_s() -> float:
    """CPU seconds of every process this one has waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


@pytest.fixture(scope="module")
def runs(tokens_dir, tmp_path_factory):
    """{ranks: training folder} of the same study with 1 and 2 ranks; the CPU seconds of each job's processes
    beside it, as the kernel counted them, at {-ranks: seconds}."""
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    for n in (1, 2):
        before = tree_cpu_s()
        out[n] = train_to_end(tokens_dir, tmp / f"ranks{n}", n)
        out[-n] = tree_cpu_s() - before
    return out


def test_the_cost_of_a_data_parallel_job_is_every_ranks(runs):
    """The job's record (tables/resources.csv reads its usage) counts torchrun and both ranks, not rank 0 alone,
    which wrote it: within the shell and interpreter start-up of the job's own process."""
    usage = json.loads(Path(f"{runs[2]}.json").read_text())["usage"]
    assert 0.8 * runs[-2] < usage["cpu_s"] <= runs[-2]


def metrics(out_dir) -> pd.DataFrame:
    return pd.read_csv(out_dir / "metrics.csv").drop(columns=["elapsed_s"])


def assert_same_metrics(one: pd.DataFrame, two: pd.DataFrame, label: str) -> None:
    """Two runs' metrics.csv rows at the same steps, every measure within ATOL (the largest gaps printed)."""
    assert list(one["step"]) == list(two["step"]) and list(one["tokens_seen"]) == list(two["tokens_seen"])
    diff = (one - two).abs()
    print(f"\nmax |1 process - {label}| in metrics.csv: train_loss {diff['train_loss'].max():.2e}, "
          f"val_loss {diff['val_loss'].max():.2e}, grad_norm {diff['grad_norm'].max():.2e}")
    for column in ("train_loss", "val_loss", "grad_norm", "act_rms", "lr"):
        pd.testing.assert_series_equal(one[column], two[column], atol=ATOL, rtol=0)


def test_two_ranks_train_as_one_process(runs):
    one, two = metrics(runs[1]), metrics(runs[2])
    assert_same_metrics(one, two, "2 ranks")
    assert one["val_loss"].dropna().iloc[-1] < one["val_loss"].dropna().iloc[0] - 1.0  # it learned
    # layer health: gradients are the all-reduced ones, residual RMS is reduced over the global batch
    pd.testing.assert_frame_equal(pd.read_csv(runs[1] / "layer_health.csv"), pd.read_csv(runs[2] / "layer_health.csv"),
                                  atol=ATOL, rtol=0)
    models = [load_model(r / "model.pt") for r in (runs[1], runs[2])]
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in b)
    assert all(torch.allclose(a[k], b[k], atol=ATOL) for k in a)
    assert json.loads((runs[2] / "summary.json").read_text())["tokens_seen"] == STEPS * 8 * 32
    assert not (runs[2] / "last.pt").exists()
    assert open(f"{runs[2]}.log.rank1").read() == ""  # rank 1 writes nothing; rank 0 reports
    assert not list(runs[2].parent.glob("ranks2.log.rank0"))


def test_rank_0_alone_logs_to_the_trackers(tokens_dir, tmp_path):
    """Two ranks with train.loggers: one TensorBoard event file, rank 0's, with every row of metrics.csv."""
    pytest.importorskip("tensorboard", reason="the tracking extra: pip install -e .[tracking]")
    from test_tracking import assert_same, expected, tensorboard_scalars
    cfg = study(2, max_steps=20, eval_interval=10, loggers=["tensorboard"])
    out = tmp_path / "ranks2"
    command = (f"{train_command(tokens_dir, out, 2, cfg=cfg)} --loggers {jobs.train_loggers(cfg, 'm')} "
               f"--tracking-dir {tmp_path / 'exp'}")
    proc = subprocess.run(["bash", "-c", command], env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + open(f"{out}.log").read()[-3000:]
    log_dir = tmp_path / "exp" / "tensorboard" / "m" / "seed3"
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 alone wrote events
    assert_same(tensorboard_scalars(log_dir)[0], expected(out))


def test_two_ranks_stop_together_on_a_time_budget(tokens_dir, tmp_path):
    """train.max_minutes under DDP: rank 0's clock decides for both ranks (else one would wait forever in the
    next all-reduce), and the schedule follows that one clock."""
    cfg = study(2, max_steps=10 ** 6, max_minutes=0.05, checkpoint_interval=10 ** 6)
    out = tmp_path / "budget"
    proc = subprocess.Popen(["bash", "-c", train_command(tokens_dir, out, 2, cfg=cfg)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "max_minutes" and 0 < summary["steps"] < 10 ** 6
    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    assert last["step"] == summary["steps"] and pd.notna(last["val_loss"])


# --- several nodes: the SLURM rule's srun launch, two nodes' worth of processes on this machine ----------------

SRUN_STANDIN = ROOT / "tests" / "srun-standin"  # an `srun` that starts one task per node here


def nodes_env() -> dict:
    """The environment of the train_nodes job's command on the first node: a SLURM job (SLURM_JOB_ID) whose srun
    is the stand-in."""
    environ = env()
    return {**environ, "PATH": os.pathsep.join([str(SRUN_STANDIN), environ["PATH"]]),
            "SLURM_JOB_ID": f"{os.getpid()}{time.monotonic_ns() % 10 ** 6}"}


def start_nodes(tokens_dir, out_dir, nodes: int = 2, cfg: Study | None = None) -> subprocess.Popen:
    """The rule's command, `PICOLLM_PARENT_PID=$PPID python -m picollm ... train --nodes 2`: it runs srun, which
    starts a torchrun agent per node; the agents meet at the c10d rendezvous on this machine."""
    command = f"PICOLLM_PARENT_PID=$PPID {train_command(tokens_dir, out_dir, 1, nodes, cfg)}"
    return subprocess.Popen(["bash", "-c", command], env=nodes_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_nodes_train_as_one_process(tokens_dir, runs, tmp_path):
    out = tmp_path / "nodes2"
    proc = start_nodes(tokens_dir, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and stdout == stderr == "", stderr[-3000:] + open(f"{out}.log").read()[-3000:]
    assert_same_metrics(metrics(runs[1]), metrics(out), "2 nodes")
    a, b = (torch.load(r / "model.pt", weights_only=True)["state_dict"] for r in (runs[1], out))
    assert all(torch.allclose(a[k], b[k], atol=ATOL) for k in a)
    assert open(f"{out}.log.rank1").read() == ""  # the second node's rank writes nothing; rank 0 reports
    assert sorted(p.name for p in tmp_path.glob("nodes2.log*")) == [
        "nodes2.log", "nodes2.log.node0", "nodes2.log.node1", "nodes2.log.rank1"]


@pytest.mark.parametrize("node", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_a_rank_that_dies_ends_every_node_in_one_line(tokens_dir, tmp_path, node):
    """SIGKILL (the kernel's out-of-memory killer, say) to the rank on one node: the other rank fails at its next
    collective, srun ends the other node, and the job's terminal has one line naming the dead rank."""
    import psutil
    out = tmp_path / "killed"
    proc = start_nodes(tokens_dir, out, cfg=study(1, 2, max_steps=100000))  # never ends before the kill
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before a rank could be killed"
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True)
             if "LOCAL_RANK" in p.environ() and p.environ().get("SLURM_NODEID") == str(node)]
    assert len(ranks) == 1
    rank = ranks[0].environ()["RANK"]
    family = psutil.Process(proc.pid).children(recursive=True)
    killed_at = time.monotonic()
    ranks[0].kill()
    _, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - killed_at
    assert took < 60 and proc.returncode == 1
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: rank {rank} died of SIGKILL"), stderr
    assert "rerun to resume" in stderr and not (out / "model.pt").exists()
    assert open(f"{out}.log").read().endswith(stderr)  # the launcher's line ends rank 0's log too
    psutil.wait_procs(family, timeout=10)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # no rank left behind
    print(f"\nrank {rank} on node {node} killed: the job ended {took:.1f} s later with: {stderr.strip()}")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_batch_that_does_not_split_over_the_ranks():
    with pytest.raises(PicoError) as err:
        distributed.check_world(3, 3, 16, torch.device("cpu"), 0)
    assert "train.batch_size (16)" in one_line(err) and "multiple of 3" in one_line(err)
    cfg = tiny_offline_config(models={"m": MODEL})
    cfg["train"].update(devices=2, nodes=3, batch_size=8)
    with pytest.raises(PicoError) as err:
        parse(Study, cfg)
    assert "train.batch_size" in one_line(err) and "multiple of 6" in one_line(err)


def test_more_devices_than_gpus():
    """device: cuda with devices: 2 on a one-GPU machine; also more devices than a node shows."""
    with pytest.raises(PicoError) as err:
        distributed.check_world(2, 2, 8, torch.device("cuda"), 1)
    assert "train.devices is 2 but this node has 1 CUDA GPU(s)" in one_line(err) and "1 or fewer" in one_line(err)
    distributed.check_world(2, 2, 8, torch.device("cpu"), 0)  # CPU ranks need no GPU


def bad_launch(tokens_dir, tmp_path, cfg: dict) -> str:
    """The train rule's command for `cfg`, which must stop before starting torchrun: its one line."""
    environ = {k: v for k, v in env().items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", "-c", train_command(tokens_dir, tmp_path / "out", 0, cfg=cfg)], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")  # no torchrun report: none started
    assert open(tmp_path / "out.log").read() == proc.stderr
    return proc.stderr


def test_two_cuda_ranks_on_this_machine_are_one_line(tokens_dir, tmp_path):
    """device: cuda with devices: 2 as a user meets it, on a machine with fewer GPUs (or none)."""
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    cfg = study(2, device="cuda")
    line = bad_launch(tokens_dir, tmp_path, cfg)
    if torch.cuda.is_available():
        assert "train.devices is 2 but this node has 1" in line
    else:  # a CPU build of torch (CI's), or a CUDA build on a machine without a GPU
        assert re.search(r"device: cuda was asked for but this (torch .* is a CPU build|machine has no usable CUDA)",
                         line), line


def test_nodes_outside_a_slurm_job(tokens_dir, tmp_path):
    line = bad_launch(tokens_dir, tmp_path, study(1, nodes=2))
    assert "train.nodes is 2 but this is not a SLURM job" in line and "profiles/slurm" in line


def test_devices_and_nodes_only_schedule(monkeypatch):
    """They change nothing a job computes (test_two_ranks_train_as_one_process): no rerun, same config slice."""
    one, two = study(1), study(2, nodes=2)
    assert jobs.train(one, "m", 3) == jobs.train(two, "m", 3)
    assert jobs.train_threads(two, "m") == 2 and jobs.train_gpus(two, "m") == 0 and jobs.train_nodes(two, "m") == 2
    # sbatch asks for GPUs on each node only where the ranks run on CUDA
    on_cuda = study(2, nodes=2, device="cuda")
    assert jobs.slurm_gpus(two, "m") == "" and jobs.slurm_gpus(on_cuda, "m") == "--gpus-per-node=2"
    one_node = launch.launch_command(["train"], 2, 1, 2, gpus=False)
    assert one_node[1:] == ["-m", "picollm.launch", "--nproc-per-node", "2", "--standalone", "-m", "picollm",
                            "--", "train"]
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    nodes = launch.launch_command(["train"], 4, 2, 8, gpus=True)
    assert nodes[:6] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=8", "--kill-on-bad-exit=1",
                         "--gpus-per-node=4"]
    assert "--nnodes" in nodes and "--rdzv-endpoint" in nodes and nodes[-2:] == ["--", "train"]


def test_a_killed_two_rank_run_resumes_to_the_same_result_and_its_ranks_draw_their_own_dropout_masks(
        tokens_dir, tmp_path):
    """SIGTERM to torchrun (bash and picollm exec it) passes to both ranks, which stop after a checkpoint; the rerun
    resumes to the uninterrupted run exactly. With dropout, rank 1 (rows of its own) draws from a stream of its
    own; last.pt keeps each rank's."""
    cfg = study(2, max_steps=240, checkpoint_interval=20)  # seconds of training after last.pt appears
    cfg = cfg.model_copy(update={"models": {"m": cfg.models["m"].model_copy(update={"dropout": 0.2})}})
    whole = train_to_end(tokens_dir, tmp_path / "whole", 2, cfg)
    out = tmp_path / "killed"
    proc = start(tokens_dir, out, 2, cfg)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (out / "model.pt").exists(), err[-3000:]
    checkpoint = torch.load(out / "last.pt", weights_only=False)
    step_at_kill, states = checkpoint["step"], checkpoint["rng"]
    assert 0 < step_at_kill < 240
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])

    train_to_end(tokens_dir, out, 2, cfg)
    assert f"resuming from {out / 'last.pt'} at step {step_at_kill}" in open(f"{out}.log").read()
    pd.testing.assert_frame_equal(metrics(whole), metrics(out))
    ref, got = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (whole, out))
    assert all(torch.equal(ref[k], got[k]) for k in ref)