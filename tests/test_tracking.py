"""train.loggers: every metrics.csv row, read back from each tracker with its library's own reader, the run's
parameters and summary, a resumed run continuing the same tracked run, and each bad setup in one line."""
import json
import os
import math
import socket
import struct
import sys
import threading

import pandas as pd
import pytest

from conftest import byte_tokens
from picollm import cli, tracking
from picollm.health import HEALTH_COLUMNS
from picollm.errors import PicoError
from picollm.train import train

TRAIN = {"max_steps": 12, "batch_size": 8, "lr": 0.003, "warmup_steps": 3, "eval_interval": 5, "eval_batches": 2,
         "checkpoint_interval": 5, "log_interval": 2, "threads": 1}
MODEL = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2}
COLUMNS = ["train_loss", "val_loss", "lr", "grad_norm", "act_rms", "tokens_seen", "elapsed_s"]
needs_extra = pytest.mark.skipif(not all(tracking.installed(m) for ms in tracking.MODULES.values() for m in ms),
                                 reason="the tracking extra: pip install -e .[tracking]")


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """W&B writes files only, MLflow uses the study's local store, W&B's settings files are not the user's."""
    for name in ("MLFLOW_TRACKING_URI", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield
    if "wandb" in sys.modules:  # W&B reads the environment once per process: the next test starts it anew
        sys.modules["wandb"].teardown()


def run(tokens_dir, root, loggers, **changes):
    """A tiny training of run `m`, seed 3, in root/exp/models/m/seed3, tracked under root/exp."""
    out = root / "exp" / "models" / "m" / "seed3"
    summary = train("m", MODEL, {**TRAIN, "loggers": loggers, **changes}, tokens_dir=tokens_dir, out_dir=out, seed=3,
                    block_size=32, device="cpu", tracking_dir=root / "exp")
    return out, summary


def expected(out_dir) -> dict:
    """{metric: {step: value}} of metrics.csv (its measured values) and layer_health.csv."""
    rows = pd.read_csv(out_dir / "metrics.csv")
    want = {c: {int(s): v for s, v in zip(rows["step"], rows[c]) if math.isfinite(v)} for c in COLUMNS}
    for h in pd.read_csv(out_dir / "layer_health.csv").to_dict("records"):
        for k in HEALTH_COLUMNS[3:]:  # after step, tokens_seen and block
            want.setdefault(f"health/block{h['block']}/{k}", {})[int(h["step"])] = h[k]
    return want


def assert_same(got: dict, want: dict) -> None:
    for key, series in want.items():
        assert got.get(key, {}).keys() == series.keys(), key
        assert got[key] == pytest.approx(series, rel=1e-6), key  # TensorBoard keeps float32


def tensorboard_scalars(log_dir) -> tuple[dict, object]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}, events


def mlflow_runs(root):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{root / 'exp' / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("exp")
    return client, client.search_runs([experiment.experiment_id])


def mlflow_metrics(client, run_id, keys) -> dict:
    """{metric: {step: value}}, the last value logged at a step (a resumed run logs again what its checkpoint
    did not reach)."""
    out = {}
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        out[key] = {m.step: m.value for m in history}
    return out


def wandb_records(path):
    """The records of a W&B run file (run-<id>.wandb), W&B's own protobufs in a LevelDB-style log: 32 KiB
    blocks of chunks, each with a 7-byte header (checksum, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def wandb_run(root) -> tuple[set, dict, dict, dict]:
    """({(project, run id)}, config, {metric: {step: value}}, summary) of every offline run file under root/exp/wandb."""
    ids, config, history, summary = set(), {}, {}, {}
    for path in sorted((root / "exp" / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add((record.run.project, record.run.run_id))
                config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "history":
                items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
                for key, value in items.items():
                    history.setdefault(key, {})[items["_step"]] = value
            elif kind == "summary":
                summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json)
                                for u in record.summary.update})
    return ids, config, history, summary


@pytest.fixture(scope="module")
def tracked(tokens_dir, tmp_path_factory):
    """One training logged to all three trackers."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("WANDB_PROJECT", raising=False)
        out, summary = run(tokens_dir, root, ["tensorboard", "mlflow", "wandb"])
    return root, out, summary


@needs_extra
def test_tensorboard_has_every_row_the_config_and_the_summary(tracked):
    root, out, summary = tracked
    log_dir = root / "exp" / "tensorboard" / "m" / "seed3"
    got, events = tensorboard_scalars(log_dir)
    assert_same(got, expected(out))
    assert got["summary/final_val_loss"] == {12: pytest.approx(summary["final_val_loss"])}
    assert "tokens_per_s" in got and all(v > 0 for v in got["tokens_per_s"].values())
    assert {"config/text_summary", "summary/text_summary"} <= set(events.Tags()["tensors"])
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"seed": 3' in config and '"model.d_model": 32' in config
    assert not (out / tracking.IDS).exists()  # a finished run forgets its tracked runs


@needs_extra
def test_mlflow_has_every_row_the_config_and_the_summary(tracked):
    root, out, summary = tracked
    client, (mlrun,) = mlflow_runs(root)
    assert mlrun.info.run_name == "m/seed3" and mlrun.info.status == "FINISHED"
    want = expected(out)
    assert_same(mlflow_metrics(client, mlrun.info.run_id, want), want)
    params = mlrun.data.params
    assert params["seed"] == "3" and params["train.lr"] == "0.003" and params["model.type"] == "transformer"
    assert "train.loggers" not in params  # the trackers watch the run; they are not part of it
    assert mlrun.data.metrics["summary/final_val_loss"] == pytest.approx(summary["final_val_loss"])


@needs_extra
def test_wandb_offline_files_have_every_row_the_config_and_the_summary(tracked):
    root, out, summary = tracked
    ids, config, history, wb_summary = wandb_run(root)
    assert len(ids) == 1 and next(iter(ids))[0] == "exp"  # the study's experiment, without WANDB_PROJECT
    assert_same(history, expected(out))
    assert config["seed"] == 3 and config["train.lr"] == 0.003
    assert wb_summary["summary/final_val_loss"] == pytest.approx(summary["final_val_loss"])


class Killed(Exception):
    pass


@needs_extra
def test_a_resumed_run_continues_the_same_tracked_run(tokens_dir, tmp_path, monkeypatch):
    """Killed at step 7, after the checkpoint at 5: the rerun resumes there and logs into the same runs."""
    import picollm.train as trainer
    real_step = trainer.train_step

    def dying_step(r, state, *clock):
        if state.step == 7:
            raise Killed
        return real_step(r, state, *clock)

    loggers = ["tensorboard", "mlflow", "wandb"]
    monkeypatch.setattr(trainer, "train_step", dying_step)
    with pytest.raises(Killed):
        run(tokens_dir, tmp_path, loggers)
    out = tmp_path / "exp" / "models" / "m" / "seed3"
    assert json.loads((out / tracking.IDS).read_text())["ids"].keys() == {"mlflow", "wandb"}
    monkeypatch.setattr(trainer, "train_step", real_step)
    run(tokens_dir, tmp_path, loggers)

    want = expected(out)
    got, _ = tensorboard_scalars(tmp_path / "exp" / "tensorboard" / "m" / "seed3")
    assert_same(got, want)  # the steps logged past the checkpoint (6) are purged, then logged again
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert_same(mlflow_metrics(client, runs[0].info.run_id, want), want)
    ids, _, history, _ = wandb_run(tmp_path)
    # the resumed process writes a second offline run file of the same run, which `wandb sync` joins
    assert len(ids) == 1 and len(list((tmp_path / "exp" / "wandb").glob("offline-run-*"))) == 2
    assert_same(history, want)


@needs_extra
def test_a_config_set_aside_and_resumed_continues_its_own_tracked_run(tokens_dir, tmp_path, monkeypatch):
    """Stopped at 7 (checkpoint 5), the folder trained with another lr and stopped too, then the first config
    resumes: MLflow continues the first config's run, and TensorBoard shows none of the other's steps."""
    import picollm.train as trainer
    real_step = trainer.train_step

    def dying_step(r, state, *clock):
        if state.step == 7:
            raise Killed
        return real_step(r, state, *clock)

    loggers = ["tensorboard", "mlflow"]
    monkeypatch.setattr(trainer, "train_step", dying_step)
    for lr in (TRAIN["lr"], TRAIN["lr"] / 3):
        with pytest.raises(Killed):
            run(tokens_dir, tmp_path, loggers, lr=lr)
    monkeypatch.setattr(trainer, "train_step", real_step)
    out, _ = run(tokens_dir, tmp_path, loggers)
    want = expected(out)
    client, runs = mlflow_runs(tmp_path)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(runs) == 2 and len(finished) == 1 and float(finished[0].data.params["train.lr"]) == TRAIN["lr"]
    resumed = {k: v for k, v in want["train_loss"].items() if k > 5}
    assert mlflow_metrics(client, finished[0].info.run_id, ["train_loss"])["train_loss"].keys() >= resumed.keys()
    got = tensorboard_scalars(tmp_path / "exp" / "tensorboard" / "m" / "seed3")[0]["train_loss"]
    # what the resumed training logged, from its checkpoint on: none of the other lr's steps
    assert min(got) >= 5 and max(got) == max(want["train_loss"]) and got.keys() >= resumed.keys()
    assert got == pytest.approx({k: want["train_loss"][k] for k in got}, rel=1e-6)


def test_an_unknown_logger_is_one_line(tokens_dir, tmp_path, capsys):
    code = cli.main(["train", "--config", json.dumps({"models": {"m": MODEL}, "train": TRAIN, "block_size": 32}),
                     "--tokens-dir", str(tokens_dir), "--out-dir", str(tmp_path / "out"), "--loggers", "neptune"])
    err = capsys.readouterr().err
    assert code == 1 and err == ("error: config key 'train.loggers.0' is 'neptune'; allowed: tensorboard, mlflow "
                                 "or wandb\n")
    assert not (tmp_path / "out").exists()


def test_a_missing_extra_stops_the_job_in_one_line_naming_it(tokens_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(PicoError) as err:
        run(tokens_dir, tmp_path, ["tensorboard", "mlflow"])
    message = str(err.value)
    assert "\n" not in message and "mlflow" in message and "pip install -e .[tracking]" in message
    out = tmp_path / "exp" / "models" / "m" / "seed3"
    assert not (out / "metrics.csv").exists() and not (out / "last.pt").exists()
    assert not (tmp_path / "exp" / "tensorboard").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tracking_server_that_refuses_is_one_line_before_training(tokens_dir, tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(PicoError) as err:
        run(tokens_dir, tmp_path, ["mlflow"])
    message = str(err.value)
    assert "\n" not in message and f"MLFLOW_TRACKING_URI http://127.0.0.1:{port} cannot be reached" in message
    assert not (tmp_path / "exp" / "models" / "m" / "seed3" / "last.pt").exists()


@needs_extra
def test_a_tracking_server_that_never_answers_is_one_line_after_the_timeout(tokens_dir, tmp_path, monkeypatch):
    """A server that takes the connection and says nothing: the wait ends at tracking.TIMEOUT_S."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    monkeypatch.setattr(tracking, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    try:
        with pytest.raises(PicoError) as err:
            run(tokens_dir, tmp_path, ["wandb"])
    finally:
        silent.close()
    message = str(err.value)
    assert "\n" not in message and "the W&B server" in message and "timed out" in message
    assert "WANDB_MODE=offline" in message


@needs_extra
def test_a_tracker_that_fails_during_training_warns_once_and_training_goes_on(tokens_dir, tmp_path, monkeypatch,
                                                                              capsys):
    closed = []

    class Broken(tracking.TensorBoard):
        def log(self, step, metrics):
            raise OSError("disk gone")

        def close(self, status):
            closed.append(status)
            super().close(status)

    monkeypatch.setitem(tracking.LOGGERS, "tensorboard", Broken)
    out, summary = run(tokens_dir, tmp_path, ["tensorboard"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: tensorboard stopped logging (OSError: disk gone); training goes on and "
                        "metrics.csv has every row"]
    assert summary["steps"] == 12 and (out / "model.pt").exists()
    assert closed == ["FAILED"]  # its run closed as failed when dropped (an MLflow run would not stay "running")


@needs_extra
def test_wandb_takes_the_users_project_and_entity(tokens_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    monkeypatch.setenv("WANDB_ENTITY", "my-team")
    run(tokens_dir, tmp_path, ["wandb"], max_steps=2)
    (path,) = (tmp_path / "exp" / "wandb").glob("offline-run-*/run-*.wandb")
    record = next(r.run for r in wandb_records(path) if r.WhichOneof("record_type") == "run")
    assert (record.project, record.entity, record.display_name, record.run_group) == ("my-project", "my-team",
                                                                                      "m/seed3", "m")


@needs_extra
@pytest.mark.parametrize("users", [None, "5"])
def test_mlflow_gives_up_on_a_server_gone_in_seconds_not_minutes(tokens_dir, tmp_path, monkeypatch, users):
    """MLflow's defaults retry a vanished server 7 times, 120 s each, inside a training step: the logger lowers
    them where the user has not set them, so the one warning comes in under a minute."""
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(var, "")  # recorded, so the test leaves the variables as it found them
        monkeypatch.delenv(var)
    if users:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", users)
    run(tokens_dir, tmp_path, ["mlflow"], max_steps=2)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == (users or "2")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20"


@needs_extra
def test_tensorboard_added_to_a_resumed_training_gets_its_config(tmp_path):
    """A tracker asked for when a training resumes from its checkpoint: TensorBoard has no events of the run yet,
    so it writes the config and the HPARAMS entry as a training from step 0 does (from the checkpoint's step on)."""
    for step in (0, 40):  # from the start; and resumed with TensorBoard new to it (another folder)
        target = tracking.Target(tmp_path / f"at{step}", "exp", "m", 3, tmp_path / "m")
        logger = tracking.TensorBoard(target, {"train.lr": 0.1}, step, {})
        logger.log(step + 5, {"train_loss": 1.0})
        logger.close("FINISHED")
        _, events = tensorboard_scalars(tmp_path / f"at{step}" / "tensorboard" / "m" / "seed3")
        assert "config/text_summary" in events.Tags()["tensors"], events.Tags()
