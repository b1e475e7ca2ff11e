"""The trainer: learning, determinism, exact resume after a real kill, and clear failures."""
import argparse
import dataclasses
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, byte_tokens, picollm, tiny_offline_config
from picollm import codehash, finished, jobs, resume_points
from picollm.errors import PicoError
from picollm.config import Study, TrainConfig, model_config, parse
from picollm.data.tokens import read_meta
from picollm.model_types import model_type
from picollm.models import load_model, read_checkpoint
from picollm.resume_names import kind_of
from picollm.checkpoint import finished_identity, resume_id
from picollm.train import TrainSpec, lr_scale, train

TRAIN = {"max_steps": 60, "batch_size": 8, "lr": 0.003, "min_lr_ratio": 0.1, "warmup_steps": 5, "weight_decay": 0.1,
         "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "eval_interval": 20, "eval_batches": 4,
         "checkpoint_interval": 10, "log_interval": 5, "threads": 1}
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


def run(tokens_dir, out_dir, model=TRANSFORMER, **train_changes):
    return train("m", model, {**TRAIN, **train_changes}, tokens_dir=tokens_dir, out_dir=out_dir, seed=3,
                 block_size=32, device="cpu")


@pytest.mark.parametrize("compact_vocab", [False, True])
def test_activation_scale_is_recorded_every_logged_step(tokens_dir, tmp_path, compact_vocab):
    train("m", TRANSFORMER, {**TRAIN, "max_steps": 10}, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3,
          block_size=32, device="cpu", compact_vocab=compact_vocab)
    logged = pd.read_csv(tmp_path / "metrics.csv").query("step > 0")
    assert len(logged) and (logged["act_rms"] > 0).all() and (logged["grad_norm"] > 0).all()


def test_a_run_that_ends_within_its_warmup_says_so(tokens_dir, tmp_path, capsys):
    """Legal (a smoke test), but its learning rate never peaks nor decays: one note names the run and the fix."""
    run(tokens_dir, tmp_path / "short", max_steps=4)
    assert ("note: m: train.max_steps (4) ends within train.warmup_steps (5), so its learning rate never reaches "
            "train.lr nor decays; lower warmup_steps (e.g. 1) for curves that show the recipe") in capsys.readouterr().out
    run(tokens_dir, tmp_path / "long", max_steps=6)
    assert "warmup_steps" not in capsys.readouterr().out


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_says_what_it_costs(tokens_dir, tmp_path, capsys, monkeypatch, native):
    """train.precision: bf16 asked for on a CPU without native bf16 trains (the user asked), after one note with
    the slowdown measured here and the fix; with native bf16, or under auto, no note."""
    import picollm.device
    monkeypatch.setattr(picollm.device, "native_bf16_cpu", lambda: native)
    run(tokens_dir, tmp_path / "bf16", max_steps=2, warmup_steps=1, precision="bf16")
    out = capsys.readouterr().out
    assert ("note: m: train.precision: bf16 on a CPU without native bf16 (" in out) != native
    if not native:
        assert re.search(r"a bf16 matmul ran \d+ times slower than fp32 here; set train.precision: auto \(fp32 on "
                         r"this CPU\) unless you want bf16's rounding\n", out)
    run(tokens_dir, tmp_path / "auto", max_steps=2, warmup_steps=1, precision="auto")
    assert "bf16" not in capsys.readouterr().out


def metrics_without_clock(path):
    return pd.read_csv(path).drop(columns=["elapsed_s"])


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(**{**TRAIN, "max_steps": 100, "warmup_steps": 10})
    lrs = [cfg.lr * lr_scale(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(cfg.lr) and lrs[-1] == pytest.approx(cfg.lr * 0.1, rel=0.05)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_time_budget_schedule_follows_the_clock():
    """Under max_minutes the cosine runs over the time: half the budget spent is half-way down, whatever the step."""
    cfg = TrainConfig(**{**TRAIN, "max_steps": 10 ** 6, "warmup_steps": 10, "max_minutes": 2.0, "min_lr_ratio": 0.0})
    assert lr_scale(5, cfg, elapsed_s=100.0) == pytest.approx(6 / 10)  # warm-up stays in steps
    assert lr_scale(50, cfg, elapsed_s=60.0) == pytest.approx(0.5)
    assert lr_scale(5000, cfg, elapsed_s=60.0) == pytest.approx(0.5)
    assert lr_scale(50, cfg, elapsed_s=120.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_scale(50, cfg.model_copy(update={"max_minutes": None}), elapsed_s=60.0) == pytest.approx(1.0, abs=1e-6)


def test_max_minutes_stops_on_the_clock_with_a_final_validation(tokens_dir, tmp_path):
    summary = run(tokens_dir, tmp_path, max_steps=10 ** 6, max_minutes=0.05, log_interval=10 ** 6)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert summary["stopped_by"] == "max_minutes" and 0 < summary["steps"] < 10 ** 6
    assert 3.0 <= summary["wall_s"] < 3.0 + 2.0  # stops at the first step after the 3 s are up
    last = metrics.iloc[-1]
    assert last["step"] == summary["steps"] and pd.notna(last["val_loss"])  # the stop step is scored
    assert summary["final_val_loss"] == pytest.approx(last["val_loss"])
    assert last["lr"] < 0.15 * TRAIN["lr"]  # the decay reached its floor (min_lr_ratio 0.1) with the time
    load_model(tmp_path / "model.pt")


def test_max_steps_still_ends_a_budgeted_run_first(tokens_dir, tmp_path):
    summary = run(tokens_dir, tmp_path, max_steps=12, max_minutes=10.0)
    assert summary["stopped_by"] == "max_steps" and summary["steps"] == 12


def test_snapshots_and_a_time_budget_are_refused_in_one_line(tokens_dir, tmp_path):
    with pytest.raises(PicoError, match="max_minutes") as err:
        run(tokens_dir, tmp_path, max_minutes=1.0, snapshot_steps=[10])
    assert "\n" not in str(err.value) and not (tmp_path / "metrics.csv").exists()


def test_training_learns_and_writes_outputs(tokens_dir, tmp_path):
    summary = run(tokens_dir, tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert {"step", "tokens_seen", "train_loss", "val_loss", "lr", "grad_norm", "act_rms", "elapsed_s"} <= set(metrics.columns)
    assert (metrics["grad_norm"].dropna() > 0).all() and (metrics["act_rms"].dropna() > 0).all()
    val = metrics["val_loss"].dropna()
    assert val.iloc[-1] < val.iloc[0] - 1.0  # from ~ln(257) = 5.5 to well below
    assert metrics["tokens_seen"].iloc[-1] == 60 * 8 * 32
    assert summary["final_val_loss"] == pytest.approx(val.iloc[-1]) and summary["params"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["tokens_seen"] == 60 * 8 * 32
    assert not (tmp_path / "last.pt").exists()  # the rolling checkpoint is gone once model.pt exists
    model = load_model(tmp_path / "model.pt")
    assert model(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 257)


def test_checkpoint_spells_out_every_hyperparameter(tokens_dir, tmp_path):
    """model.pt records the schema's defaults as well as what the caller gave: a default that changes later
    cannot rebuild (or resume) it as another network."""
    run(tokens_dir, tmp_path, max_steps=2)
    recorded = read_checkpoint(tmp_path / "model.pt")["model_cfg"]
    assert recorded == model_config(TRANSFORMER).model_dump() and {"mlp", "norm", "pos_encoding"} <= set(recorded)


def test_same_seed_same_numbers(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path / "a")
    run(tokens_dir, tmp_path / "b")
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "a/metrics.csv"),
                                  metrics_without_clock(tmp_path / "b/metrics.csv"))


def test_stale_checkpoint_from_another_config_is_ignored(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path / "ref", max_steps=20)
    out = tmp_path / "x"
    out.mkdir()
    torch.save({"run_id": "something-else", "step": 10}, out / "last.pt")
    run(tokens_dir, out, max_steps=20)
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "ref/metrics.csv"),
                                  metrics_without_clock(out / "metrics.csv"))
    assert torch.load(out / "last.something-el.pt")["step"] == 10  # set aside for its run, not written over


def test_nan_loss_stops_with_the_step_and_keeps_checkpoint(tokens_dir, tmp_path):
    with pytest.raises(PicoError, match=r"loss at step \d+.*lower train.lr"):
        run(tokens_dir, tmp_path, lr=1e30, grad_clip=0.0, warmup_steps=0, max_steps=200, checkpoint_interval=1)
    assert not (tmp_path / "model.pt").exists()


def test_cuda_asked_without_cuda(tokens_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # a CPU build of torch (as CI's) or a CUDA build without a GPU: each its own line
    with pytest.raises(PicoError, match=r"^device: cuda was asked for but this (torch .* is a CPU build|machine has "
                                        r"no usable CUDA GPU)"):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=tmp_path, seed=0, block_size=32, device="cuda")


def test_block_size_larger_than_validation_split(tokens_dir, tmp_path):
    with pytest.raises(PicoError, match="validation split has .* fewer than block_size"):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=tmp_path, seed=0, block_size=100000)


def _train_cmd(tokens_dir, out_dir, steps, **train_changes):
    job = {"models": {"m": TRANSFORMER},
           "train": {**TRAIN, "max_steps": steps, "checkpoint_interval": 25, **train_changes},
           "seed": 3, "block_size": 32, "device": "cpu"}
    return [sys.executable, "-m", "picollm", "train", "--config", json.dumps(job), "--tokens-dir", str(tokens_dir),
            "--out-dir", str(out_dir), "--threads", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tokens_dir, tmp_path_factory):
    """The folder of a training run to its end without a signal, one per set of train changes: the reference
    each interrupted run of those changes must equal (the signal cases share it)."""
    runs = {}

    def run_of(steps: int, env: dict, **changes) -> Path:
        key = json.dumps([steps, changes], sort_keys=True)
        if key not in runs:
            out = tmp_path_factory.mktemp("uninterrupted")
            assert subprocess.run(_train_cmd(tokens_dir, out, steps, **changes), env=env,
                                  capture_output=True).returncode == 0
            runs[key] = out
        return runs[key]
    return run_of


@pytest.mark.parametrize("sig, changes", [
    (signal.SIGTERM, {}), (signal.SIGKILL, {}), (signal.SIGHUP, {}), (signal.SIGTERM, {"optimizer": "muon"}),
    pytest.param(signal.SIGTERM, {"compile": True}, marks=pytest.mark.slow)])
def test_killed_run_resumes_to_identical_results(tokens_dir, tmp_path, uninterrupted, sig, changes):
    steps = 800  # seconds of training between the first checkpoint and the last step, when the signal lands
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    ref = uninterrupted(steps, env, **changes)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tokens_dir, out, steps, **changes), env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # as from a terminal
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not (out / "model.pt").exists() and (out / "last.pt").exists()
    # a signal it can catch (SLURM's time limit; the terminal closed) stops it after a checkpoint, in one line
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), err
    step_at_kill = torch.load(out / "last.pt", weights_only=False)["step"]
    assert 0 < step_at_kill < steps

    resumed = subprocess.run(_train_cmd(tokens_dir, out, steps, **changes), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'last.pt'} at step {step_at_kill}" in resumed.stderr
    pd.testing.assert_frame_equal(metrics_without_clock(ref / "metrics.csv"), metrics_without_clock(out / "metrics.csv"))
    want, got = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (ref, out))
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_corrupt_and_mismatched_checkpoints(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path, max_steps=5)
    good = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(PicoError, match="truncated or corrupt"):
        load_model(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PicoError, match="truncated or corrupt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(PicoError, match=f"^{re.escape(f'{tmp_path} is a folder, not a checkpoint; give {tmp_path}/model.pt')}$"):
        load_model(tmp_path)  # the run's folder, not its model.pt
    seed = tmp_path / "run" / "seed7"  # a run's folder above its seeds: one of their model.pt
    seed.mkdir(parents=True)
    (seed / "model.pt").write_bytes(good)
    with pytest.raises(PicoError, match=f"^{re.escape(f'{seed.parent} is a folder, not a checkpoint; give the model.pt of one of its seeds, e.g. {seed}/model.pt')}$"):
        load_model(seed.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PicoError, match=r"is a folder, not a checkpoint; give the path of a model.pt \(results/"):
        load_model(tmp_path / "empty")  # a folder that holds neither
    (tmp_path / "meta.json").write_text("{}")  # another file named by mistake: no advice to delete it
    with pytest.raises(PicoError, match=r"meta.json is no PyTorch checkpoint; give the model.pt that picollm train "
                                        r"wrote \(results/<experiment>/models/<run>/seed<k>/model.pt\)$"):
        load_model(tmp_path / "meta.json")
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    ckpt["model_cfg"]["d_model"] = 64  # a different model config than the weights
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(PicoError, match="what it records besides its weights .* does not match the checksum"):
        load_model(tmp_path / "other.pt")
    del ckpt["meta_sha256"]  # as a checkpoint saved without that checksum: the weights tell
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(PicoError, match="does not match its model config"):
        load_model(tmp_path / "other.pt")
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    ckpt["vocab_size"] = 50257  # a different vocabulary
    torch.save(ckpt, tmp_path / "vocab.pt")
    with pytest.raises(PicoError, match="does not match"):
        load_model(tmp_path / "vocab.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(PicoError, match="not a pico-llm model checkpoint"):
        load_model(tmp_path / "foreign.pt")
    result = picollm("sample", "--name", "m", "--model-path", tmp_path / "trunc.pt", "--config", "{}",
                     "--out", tmp_path / "s.jsonl")
    assert result.returncode == 1 and result.stderr.startswith("error: checkpoint") and not (tmp_path / "s.jsonl").exists()


def test_snapshots_at_the_listed_steps_with_their_validation_loss(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path / "plain", max_steps=40)
    out = tmp_path / "snap"
    run(tokens_dir, out, max_steps=40, snapshot_steps=[13, 0, 40])  # 13: neither a log nor an eval step
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step0.pt", "step13.pt", "step40.pt"]
    assert not (out / "snapshots.partial").exists() and not (out / "last.pt").exists()
    metrics = pd.read_csv(out / "metrics.csv").set_index("step")
    for step in (0, 13, 40):
        model = load_model(out / "snapshots" / f"step{step}.pt")
        summary = model.checkpoint["summary"]
        assert summary["step"] == step and summary["tokens_seen"] == step * 8 * 32
        assert summary["val_loss"] == pytest.approx(metrics.loc[step, "val_loss"])  # measured there, and logged
        assert model(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 257)
    final = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    last = torch.load(out / "snapshots/step40.pt", weights_only=True)["state_dict"]
    plain = torch.load(tmp_path / "plain/model.pt", weights_only=True)["state_dict"]
    # the extra evaluations leave training alone: the same weights as a run without snapshots
    assert all(torch.equal(final[k], last[k]) and torch.equal(final[k], plain[k]) for k in final)


def test_snapshot_step_beyond_max_steps_is_one_line(tokens_dir, tmp_path):
    with pytest.raises(PicoError) as err:
        run(tokens_dir, tmp_path, max_steps=40, snapshot_steps=[10, 50])
    message = str(err.value)
    assert "\n" not in message and "train.snapshot_steps" in message and "train.max_steps" in message
    assert not any(tmp_path.iterdir())


class Killed(Exception):
    pass


def test_resume_keeps_snapshots_identical(tokens_dir, tmp_path, monkeypatch):
    """Killed at step 31, after the checkpoint at 30 (itself a snapshot step): the rerun resumes at 30,
    keeps the snapshots staged before the kill and writes the same snapshots, metrics and layer health."""
    changes = dict(max_steps=40, checkpoint_interval=10, snapshot_steps=[10, 25, 30, 40])
    run(tokens_dir, tmp_path / "ref", **changes)
    import picollm.train as trainer
    real_step = trainer.train_step

    def dying_step(r, state, *clock):
        if state.step == 31:
            raise Killed
        return real_step(r, state, *clock)

    out = tmp_path / "killed"
    monkeypatch.setattr(trainer, "train_step", dying_step)
    with pytest.raises(Killed):
        run(tokens_dir, out, **changes)
    monkeypatch.setattr(trainer, "train_step", real_step)
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 30
    assert sorted(p.name for p in (out / "snapshots.partial").iterdir()) == ["step10.pt", "step25.pt", "step30.pt"]
    run(tokens_dir, out, **changes)
    for step in changes["snapshot_steps"]:
        ref, got = (torch.load(d / "snapshots" / f"step{step}.pt", weights_only=True) for d in (tmp_path / "ref", out))
        assert ref["summary"] == got["summary"]
        assert all(torch.equal(ref["state_dict"][k], got["state_dict"][k]) for k in ref["state_dict"])
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "ref/metrics.csv"),
                                  metrics_without_clock(out / "metrics.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref/layer_health.csv"), pd.read_csv(out / "layer_health.csv"))


def interrupted(tokens_dir, out_dir, monkeypatch, at, **train_changes):
    """A run killed as it starts step `at`, which leaves the checkpoint before it in last.pt."""
    import picollm.train as trainer
    real_step = trainer.train_step

    def dying_step(r, state, *clock):
        if state.step == at:
            raise Killed
        return real_step(r, state, *clock)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(trainer, "train_step", dying_step)
        run(tokens_dir, out_dir, **train_changes)
    return torch.load(out_dir / "last.pt", weights_only=False)["run_id"][:12]


def test_another_config_sets_the_checkpoint_aside_and_the_first_resumes_it(tokens_dir, tmp_path, monkeypatch, capsys):
    """Stopped at 30, then the folder trained with another lr (stopped at 20): neither run writes over the
    other's last.pt. The first config again resumes at 30 and ends as if never stopped, its staged snapshots
    with it; the other's checkpoint stays set aside past that end, and resumes in turn."""
    first = dict(max_steps=40, checkpoint_interval=10, snapshot_steps=[10, 25, 40])
    other = {**first, "lr": 0.001}
    run(tokens_dir, tmp_path / "ref", **first)
    out = tmp_path / "x"
    first_id = interrupted(tokens_dir, out, monkeypatch, 31, **first)
    capsys.readouterr()
    other_id = interrupted(tokens_dir, out, monkeypatch, 21, **other)
    err = capsys.readouterr().err
    assert (f"ignoring {out / 'last.pt'}: it is from a different config, data or training code; starting from step 0; moved it to "
            f"{out / f'last.{first_id}.pt'}: running with that config again resumes from it") in err
    assert torch.load(out / f"last.{first_id}.pt", weights_only=False)["step"] == 30

    run(tokens_dir, out, **first)
    err = capsys.readouterr().err
    assert (f"ignoring {out / 'last.pt'}: it is from a different config, data or training code; resuming "
            f"{out / f'last.{first_id}.pt'} instead; moved it to {out / f'last.{other_id}.pt'}") in err
    assert (f"resuming from {out / 'last.pt'} at step 30 (set aside as last.{first_id}.pt by a run of another "
            f"config)") in err
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "ref/metrics.csv"),
                                  metrics_without_clock(out / "metrics.csv"))  # the metrics go on from step 30
    for step in first["snapshot_steps"]:  # 10 and 25 staged before the stop, set aside and brought back
        ref, got = (torch.load(d / "snapshots" / f"step{step}.pt", weights_only=True) for d in (tmp_path / "ref", out))
        assert all(torch.equal(ref["state_dict"][k], got["state_dict"][k]) for k in ref["state_dict"])
    assert sorted(p.name for p in out.glob("last*.pt")) == [f"last.{other_id}.pt"]

    run(tokens_dir, out, **other)
    assert f"resuming from {out / 'last.pt'} at step 20 (set aside as last.{other_id}.pt" in capsys.readouterr().err
    assert not list(out.glob("last*.pt")) and not list(out.glob("snapshots.partial*"))


def test_a_training_stopped_under_one_checkpoint_interval_resumes_under_another(tokens_dir, tmp_path, monkeypatch,
                                                                             capsys):
    """How often a training saves itself is no part of what it computes: lowering train.checkpoint_interval after
    a stop (a SLURM time limit) resumes the checkpoint, and the run ends as if never stopped."""
    run(tokens_dir, tmp_path / "ref", max_steps=20, checkpoint_interval=10)
    out = tmp_path / "x"
    interrupted(tokens_dir, out, monkeypatch, 11, max_steps=20, checkpoint_interval=10)
    capsys.readouterr()
    run(tokens_dir, out, max_steps=20, checkpoint_interval=3)
    assert f"resuming from {out / 'last.pt'} at step 10" in capsys.readouterr().err
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "ref/metrics.csv"),
                                  metrics_without_clock(out / "metrics.csv"))
    want, got = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (tmp_path / "ref", out))
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_the_train_command_takes_its_loggers_and_checkpoint_interval_apart_from_its_config():
    """The train rule passes both outside --config (a Snakemake resource, not a param), so changing either reruns
    nothing; the command puts them back before the config is read."""
    from picollm.commands.train import with_watch_and_save
    given = argparse.Namespace(config={"seed": 1, "train": {"lr": 0.01}}, loggers="tensorboard, wandb",
                               checkpoint_interval=7)
    assert with_watch_and_save(given) == {"seed": 1, "train": {"lr": 0.01, "loggers": ["tensorboard", "wandb"],
                                                               "checkpoint_interval": 7}}
    assert jobs.train_checkpoint_interval(parse(Study, tiny_offline_config()), "lstm") == "10"
    assert "checkpoint_interval" not in jobs.train(parse(Study, tiny_offline_config()), "lstm", 7)["train"]


def test_the_resume_points_no_run_reads_are_named_with_their_size(tmp_path):
    models = tmp_path / "models"
    for run_dir in ("lstm/seed1", "transformer/seed2"):
        (models / run_dir).mkdir(parents=True)
        (models / run_dir / "last.pt").write_bytes(b"x" * 10)  # a training's own resume point: never named
    assert resume_points.waiting(tmp_path) is None
    (models / "lstm/seed1/last.0123456789ab.pt").write_bytes(b"x" * 1_000_000)
    (models / "lstm/seed1/snapshots.partial.0123456789ab").mkdir()  # set aside with it, and counted with it
    (models / "lstm/seed1/snapshots.partial.0123456789ab/step10.pt").write_bytes(b"x" * 500_000)
    rm = (f"rm -r {models}/*/*/last.*.pt {models}/*/*/snapshots.partial.* {models}/*/*/tracking.*.json deletes "
          f"every one")
    assert resume_points.waiting(tmp_path) == (
        f"1 resume point is left in {models} (1.5 MB): 1 of another config, set aside (a run of its config resumes "
        f"from it): lstm/seed1/last.0123456789ab.pt; delete those you will not use ({rm})")
    (models / "transformer/seed2/last.damaged.pt").write_bytes(b"x" * 500_000)
    (models / "transformer/seed2/last.fedcba987654.pt").write_bytes(b"x")
    (models / "lstm/seed1/last.abcdefabcdef.pt").write_bytes(b"x")
    (models / "lstm/seed1/last.dead00000000.pt").symlink_to(tmp_path / "gone.pt")  # not a file: left out
    (models / "lstm/seed1/last.backup.pt").write_bytes(b"x" * 10)  # the user's own file: no resume point
    assert resume_points.waiting(tmp_path) == (
        f"4 resume points are left in {models} (2 MB): 3 of other configs, set aside (a run of its config resumes "
        f"from it) and 1 damaged, kept for a look: lstm/seed1/last.0123456789ab.pt, lstm/seed1/last.abcdefabcdef.pt, "
        f"transformer/seed2/last.damaged.pt, ...; delete those you will not use ({rm})")


def test_each_resume_point_is_told_by_its_name(tmp_path):
    """kind_of knows the names resume_points gives (picollm.models says by it why such a file is no model)."""
    last = tmp_path / resume_points.LAST
    assert kind_of(last) == "own" and kind_of(last.with_name(resume_points.DAMAGED)) == "damaged"
    assert kind_of(resume_points.aside_paths(last, "0123456789abcdef")[0]) == "aside"
    assert [kind_of(tmp_path / name) for name in ("model.pt", "last.0123.pt", "last.0123456789AB.pt")] == [None] * 3


# meta.json of a token folder, as the fingerprints read it (its checksums stand in for real ones)
PINNED_META = {"dtype": "uint16", "eot_token": 256, "raw_sha256": {"a/train": "0" * 64}, "tokenizer": "byte",
               "splits": {"train": {"sha256": "1" * 64, "sources": {"a": {"documents": 2, "end": 9, "start": 0}},
                                    "tokens": 9},
                          "val": {"sha256": "2" * 64, "sources": {"a": {"documents": 1, "end": 3, "start": 0}},
                                  "tokens": 3}},
               "train_vocab": [97, 98, 256], "vocab_size": 257}


@pytest.mark.parametrize("model, changes, seed, block_size, compact_vocab, weights, pinned", [
    ({"type": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2}, {}, 1, 8, False, None,
     ("fa8226dd13877c18", "40e253c4bf594328")),
    ({"type": "lstm", "embed_dim": 8, "hidden_dim": 16},
     {"lr": 0.01, "max_steps": 30, "threads": 3, "loggers": ["tensorboard"]}, 7, 16, True, {"a": 2.0},
     ("d60d2d4e836f1ea6", "56963f8bc3444b65")),
    ({"type": "kgram_mlp"}, {"flops": 1e9, "snapshot_steps": [5]}, 3, 32, True, None,
     ("873f6b5dd6d35d25", "4c8339c38b880e89")),
])
def test_the_fingerprints_of_a_training_are_pinned(tmp_path, monkeypatch, model, changes, seed, block_size,
                                                   compact_vocab, weights, pinned):
    """The same training keeps its resume_id and finished_identity through a change of how the trainer is written:
    a changed fingerprint neither resumes a checkpoint nor restores a finished training (the code's own hash is
    left out). A changed default of the configs changes them on purpose (they spell out every key): pin anew then."""
    (tmp_path / "meta.json").write_text(json.dumps(PINNED_META))
    monkeypatch.setattr(finished, "code", lambda type_name: f"code of {type_name}")
    spec = TrainSpec("m", model_config(model), TrainConfig(**changes), seed, block_size, "cpu", weights,
                     compact_vocab)
    meta = read_meta(tmp_path / "meta.json")
    assert (resume_id(spec, meta), finished_identity(spec, meta)) == pinned


def test_a_checkpoint_resumes_only_under_its_weights_and_training_code(tokens_dir, tmp_path, monkeypatch, capsys):
    """Another sources' mixture or an edit of the training code neither resumes a checkpoint nor restores a
    finished training: the interrupted run's last.pt is set aside, and training starts over."""
    (tmp_path / "meta.json").write_text(json.dumps(PINNED_META))
    meta = read_meta(tmp_path / "meta.json")
    model = model_config({"type": "lstm", "embed_dim": 8, "hidden_dim": 16})
    spec = TrainSpec("m", model, TrainConfig(), 1, 8, "cpu", {"a": 1.0}, False)
    reweighted = dataclasses.replace(spec, weights={"a": 2.0})
    assert resume_id(spec, meta) != resume_id(reweighted, meta)
    assert finished_identity(spec, meta) != finished_identity(reweighted, meta)

    out = tmp_path / "x"
    first_id = interrupted(tokens_dir, out, monkeypatch, 11, max_steps=20, checkpoint_interval=10)
    capsys.readouterr()
    real_code = finished.code
    monkeypatch.setattr(finished, "code", lambda type_name: real_code(type_name) + " edited")
    run(tokens_dir, out, max_steps=20, checkpoint_interval=10)
    assert (f"ignoring {out / 'last.pt'}: it is from a different config, data or training code; starting from step "
            f"0; moved it to {out / f'last.{first_id}.pt'}") in capsys.readouterr().err


def test_a_finished_training_records_the_code_of_its_rule():
    """finished/ restores only for the code identity the train rule carries (jobs.model_code)."""
    study = parse(Study, tiny_offline_config())
    for run, entry in study.runs.items():
        rule = jobs.model_code("train", study, run)
        assert finished.code(entry.type) == rule == codehash.code_hash("picollm.commands.train",
                                                                       *model_type(entry.type).modules)


def test_the_snakefile_reads_resume_points_without_torch():
    code = "import sys, picollm.resume_points; assert 'torch' not in sys.modules, 'torch loaded'"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bringing_back, renames", [(False, 1), (True, 3)],
                         ids=["killed-setting-aside", "killed-bringing-back"])
def test_a_kill_between_the_moves_loses_no_staged_snapshot(tokens_dir, tmp_path, monkeypatch, bringing_back, renames):
    """Setting a checkpoint aside (or bringing it back) is several renames: a kill after some of them leaves
    files under either name, and the run they belong to still ends as if never stopped."""
    import picollm.train as trainer
    first = dict(max_steps=40, checkpoint_interval=10, snapshot_steps=[10, 25, 40])
    other = {**first, "lr": 0.001}
    run(tokens_dir, tmp_path / "ref", **first)
    out = tmp_path / "x"
    interrupted(tokens_dir, out, monkeypatch, 31, **first)
    if bringing_back:  # first set aside by the other config, whose own training then stops
        interrupted(tokens_dir, out, monkeypatch, 21, **other)
    real, done = os.replace, []

    def dying_replace(src, dst):  # the kill lands after `renames` renames
        if len(done) == renames:
            raise Killed
        done.append(dst)
        return real(src, dst)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(trainer.os, "replace", dying_replace)
        run(tokens_dir, out, **(first if bringing_back else other))
    if bringing_back:  # the checkpoint came back, its snapshots not yet: a third config comes and goes
        interrupted(tokens_dir, out, monkeypatch, 11, **{**first, "lr": 0.002})
    run(tokens_dir, out, **first)
    for step in first["snapshot_steps"]:
        ref, got = (torch.load(d / "snapshots" / f"step{step}.pt", weights_only=True) for d in (tmp_path / "ref", out))
        assert all(torch.equal(ref["state_dict"][k], got["state_dict"][k]) for k in ref["state_dict"])
    pd.testing.assert_frame_equal(metrics_without_clock(tmp_path / "ref/metrics.csv"),
                                  metrics_without_clock(out / "metrics.csv"))


def test_a_checkpoint_that_names_no_run_is_kept_as_damaged(tokens_dir, tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    torch.save({"step": 3}, tmp_path / "last.pt")
    run(tokens_dir, tmp_path, max_steps=5)
    assert (f"ignoring {tmp_path / 'last.pt'}: it is no training checkpoint (it names no run); starting from step 0; "
            f"moved it to {tmp_path / 'last.damaged.pt'}") in capsys.readouterr().err
    assert torch.load(tmp_path / "last.damaged.pt", weights_only=False) == {"step": 3}


def test_restoring_a_finished_training_sets_another_configs_checkpoint_aside(tokens_dir, tmp_path, monkeypatch,
                                                                             capsys):
    run(tokens_dir, tmp_path, max_steps=10)
    other_id = interrupted(tokens_dir, tmp_path, monkeypatch, 11, max_steps=20, lr=0.001)
    assert run(tokens_dir, tmp_path, max_steps=10)["restored"]
    assert (f"ignoring {tmp_path / 'last.pt'}: it is from a different config, data or training code; restoring the finished "
            f"training; moved it to {tmp_path / f'last.{other_id}.pt'}") in capsys.readouterr().err
    run(tokens_dir, tmp_path, max_steps=20, lr=0.001)
    assert f"resuming from {tmp_path / 'last.pt'} at step 10 (set aside" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["unreadable", "changed"])
def test_a_damaged_checkpoint_is_moved_to_last_damaged(tokens_dir, tmp_path, monkeypatch, capsys, damage):
    interrupted(tokens_dir, tmp_path, monkeypatch, 11, max_steps=20)
    ckpt_path = tmp_path / "last.pt"
    if damage == "unreadable":
        ckpt_path.write_bytes(ckpt_path.read_bytes()[:1000])
    else:  # bytes changed in place: the tensors no longer match their checksum
        ckpt = torch.load(ckpt_path, weights_only=False)
        next(iter(ckpt["model"].values())).view(-1)[0] += 1.0
        torch.save(ckpt, ckpt_path)
    damaged_bytes = ckpt_path.read_bytes()
    capsys.readouterr()
    run(tokens_dir, tmp_path, max_steps=20)
    err = capsys.readouterr().err
    why = "unreadable checkpoint" if damage == "unreadable" else "damaged checkpoint"
    assert re.search(rf"ignoring {why} {re.escape(str(ckpt_path))} \(.*\); starting from step 0; moved it to "
                     rf"{re.escape(str(tmp_path / 'last.damaged.pt'))}$", err, re.M), err
    assert (tmp_path / "last.damaged.pt").read_bytes() == damaged_bytes and "resuming" not in err


@pytest.mark.parametrize("compact_vocab", [False, True])
def test_layer_health_per_block_at_every_logged_step(tokens_dir, tmp_path, compact_vocab):
    train("m", {**TRANSFORMER, "n_layers": 2}, {**TRAIN, "max_steps": 22}, tokens_dir=tokens_dir, out_dir=tmp_path,
          seed=3, block_size=32, device="cpu", compact_vocab=compact_vocab)
    health = pd.read_csv(tmp_path / "layer_health.csv")
    assert list(health.columns) == ["step", "tokens_seen", "block", "attn_grad_norm", "mlp_grad_norm", "resid_rms"]
    assert sorted(zip(health["step"], health["block"])) == [(s, b) for s in (5, 10, 15, 20, 22) for b in (0, 1)]
    assert (health["tokens_seen"] == health["step"] * 8 * 32).all()
    values = health[["attn_grad_norm", "mlp_grad_norm", "resid_rms"]].to_numpy()
    assert (values > 0).all() and pd.notna(values).all() and (values < float("inf")).all()


def test_layer_health_of_a_model_without_blocks_is_the_header(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path, model={"type": "lstm", "embed_dim": 16, "hidden_dim": 32}, max_steps=10)
    assert (tmp_path / "layer_health.csv").read_text().strip() == \
        "step,tokens_seen,block,attn_grad_norm,mlp_grad_norm,resid_rms"


def test_summary_records_the_head_plan_it_trained_with(tokens_dir, tmp_path):
    run(tokens_dir, tmp_path, max_steps=2, eval_interval=2, log_interval=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    head = summary["head_loss"]
    assert head["source"] in ("measured", "cache") and head["machine"]["device"] == "cpu"
    assert {"chunk", "logits", "grad_h", "decode", "plain_rows"} == set(head["plan"])
    assert "head_loss" not in load_model(tmp_path / "model.pt").checkpoint["summary"]  # the machine's, not the model's


@pytest.mark.parametrize("cuda_build, gpu, line", [
    (None, False, r"^device: cuda was asked for but this torch \(\S+\) is a CPU build; install its CUDA build "
                  r"\(conda: CONDA_OVERRIDE_CUDA, docs/cluster.md\), or use device: cpu$"),
    ("12.6", False, r"^device: cuda was asked for but this machine has no usable CUDA GPU; use device: auto or "
                    r"device: cpu$"),
])
def test_device_cuda_without_one_says_whether_torch_or_the_machine_lacks_it(monkeypatch, cuda_build, gpu, line):
    """A conda env solved without CONDA_OVERRIDE_CUDA holds a CPU torch: the line blames the build, not the node."""
    from picollm.device import resolve_device
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    with pytest.raises(PicoError, match=line):
        resolve_device("cuda")


@pytest.mark.parametrize("cuda_build, gpus, line", [
    (None, 0, r"^device: cuda:1 was asked for but this torch \(\S+\) is a CPU build; "),
    ("12.6", 0, r"^device: cuda:1 was asked for but this machine has no usable CUDA GPU; "),
    ("12.6", 1, r"^device: cuda:1 was asked for but this machine's CUDA GPUs are cuda:0 to cuda:0; use one of them, "
                r"or device: cuda$"),
])
def test_device_cuda_n_is_checked_as_cuda_is_and_its_index_too(monkeypatch, cuda_build, gpus, line):
    from picollm.device import resolve_device
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(PicoError, match=line):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
