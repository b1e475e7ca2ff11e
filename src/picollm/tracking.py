"""Live trackers of a training run (train.loggers): TensorBoard, MLflow and W&B, beside metrics.csv.

Each tracker gets every metrics.csv row as the trainer writes it (and the layer-health rows of its step),
the run's config and seed as parameters, and summary.json at the end; rank 0 of a data-parallel run alone
logs. A resumed training continues the run it logged before: the MLflow and W&B run ids are kept in
<out-dir>/tracking.json beside last.pt (and set aside with it when another config trains there: picollm.train),
and TensorBoard hides the events past the checkpoint (purge_step). TensorBoard's folder per run and seed holds
the latest training there: one starting over, or resuming after another config's, clears it.
Trackers only watch a run: they are no part of its resume fingerprint nor of the workflow's params, so
adding or removing one reruns nothing; a tracker that fails during training warns once and is dropped.

The libraries are the optional `tracking` extra (pip install -e .[tracking]), imported only when asked for.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tqdm import tqdm

from picollm.errors import Interrupted, PicoError, first_line
from picollm.io import held_lock, write_json

EXTRA = "pip install -e .[tracking]"
# logger -> the modules it needs (alembic: MLflow's local SQLite store)
MODULES = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "alembic"), "wandb": ("wandb",)}
IDS = "tracking.json"  # beside last.pt: the runs a resumed training continues
OWNER = "fingerprint.txt"  # in a TensorBoard folder: the training whose events it holds
TIMEOUT_S = 5.0  # how long a tracking server may take to answer before training
# the columns of a metrics.csv or layer_health.csv row that place it rather than measure it
ROW_PLACE, HEALTH_PLACE = {"step"}, {"step", "tokens_seen", "block"}


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a run is logged and under which names."""
    root: Path  # results/<experiment>: tensorboard/, mlruns/ and wandb/ go here
    experiment: str  # the MLflow experiment, and the W&B project unless WANDB_PROJECT says another
    run: str
    seed: int
    out_dir: Path  # the training folder, which holds last.pt and tracking.json
    fingerprint: str = ""  # the training's resume fingerprint: whose events a TensorBoard folder holds

    @property
    def name(self) -> str:
        return f"{self.run}/seed{self.seed}"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check(names) -> None:
    """Stop, in one line and before training, when a logger's library is missing or its server is out of reach."""
    for name in names:
        if not all(map(installed, MODULES[name])):
            raise PicoError(f"train.loggers asks for {name}, which is not installed; {EXTRA} (or drop {name} "
                            f"from train.loggers)")
    if "mlflow" in names and os.environ.get("MLFLOW_TRACKING_URI"):
        reachable(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI",
                  "unset it to log to results/<experiment>/mlruns")
    if "wandb" in names:
        settings = wandb_settings()
        if settings.mode not in ("offline", "dryrun", "disabled"):
            reachable(settings.base_url, "the W&B server", "set WANDB_MODE=offline to write the run to files")


def reachable(url: str, what: str, fix: str) -> None:
    """An http(s) server that answers anything within TIMEOUT_S; other kinds of URI are left to their library."""
    if not url.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(url, timeout=TIMEOUT_S).close()
    except urllib.error.HTTPError:  # an answer, if not a welcome one: the server is there
        return
    except (OSError, ValueError) as exc:  # refused, unknown host, timed out, a malformed URL
        reason = getattr(exc, "reason", None) or exc
        raise PicoError(f"{what} {url} cannot be reached ({reason}; waited up to {TIMEOUT_S:g} s); start the "
                        f"server, fix the URL, or {fix}") from None


def wandb_settings():
    """W&B's own settings: WANDB_MODE, WANDB_BASE_URL and the settings files of `wandb offline` or `wandb login`."""
    import wandb
    try:
        return wandb.setup().settings
    except Exception as exc:  # e.g. WANDB_MODE=bogus
        raise PicoError(f"W&B's settings are invalid: {first_line(exc)}") from None


def flat(params: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists and None as text, which every tracker stores."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return out


def numbers(summary: dict) -> dict:
    """The summary's numbers as summary/<key> metrics."""
    return {f"summary/{k}": float(v) for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoard:
    """Event files in results/<experiment>/tensorboard/<run>/seed<k>/: `tensorboard --logdir
    results/<experiment>/tensorboard` shows every run of the study."""

    def __init__(self, target: Target, params: dict, step: int, ids: dict):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
        log_dir = target.root / "tensorboard" / target.run / f"seed{target.seed}"
        owner = log_dir / OWNER
        # a training that starts over, or resumes where the events are another config's: the curves of an
        # earlier one would mix in
        if step == 0 or not (owner.is_file() and owner.read_text() == target.fingerprint):
            shutil.rmtree(log_dir, ignore_errors=True)
        # the run's first events: also a resumed training that TensorBoard was not watching before
        first = not any(log_dir.glob("events.out.tfevents.*"))
        # a resumed run hides what was logged past its checkpoint, which the resumed steps log again
        self.writer = SummaryWriter(log_dir, purge_step=step + 1 if step else None)
        owner.write_text(target.fingerprint)
        if first:
            # the HPARAMS dashboard: each run's config beside its latest losses
            for event in hparams(params, {"train_loss": 0.0, "val_loss": 0.0}):
                self.writer.file_writer.add_summary(event)
            self.writer.add_text("config", "    " + json.dumps(params, indent=2).replace("\n", "\n    "), 0)

    def log(self, step: int, metrics: dict) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # live: TensorBoard shows each row as it is written

    def summary(self, step: int, summary: dict) -> None:
        self.log(step, numbers(summary))
        self.writer.add_text("summary", "    " + json.dumps(summary, indent=2).replace("\n", "\n    "), step)

    def close(self, status: str) -> None:
        self.writer.close()


class MLflow:
    """A run of the MLflow experiment named after the study, on MLFLOW_TRACKING_URI or else in
    results/<experiment>/mlruns/ (a SQLite store, mlflow.db, and its artifacts)."""

    def __init__(self, target: Target, params: dict, step: int, ids: dict):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        local = target.root / "mlruns"
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        # MLflow's own defaults retry a server that went away for minutes (7 tries, 120 s each), inside a training
        # step; a server that does not answer within these is dropped with one warning (a user's setting wins)
        for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
            os.environ.setdefault(var, value)
        try:
            # parallel jobs would each create a new local store's tables (a server's store takes care of its clients)
            with contextlib.nullcontext() if uri else held_lock(local / ".lock"):
                self.client = MlflowClient(uri or f"sqlite:///{(local / 'mlflow.db').resolve()}")
                experiment = self._experiment(target.experiment, None if uri else (local / "artifacts").resolve())
            self.run_id = ids.get("mlflow") if step else None
            if self.run_id and self._continued(experiment):
                return
            run = self.client.create_run(experiment, run_name=target.name,
                                         tags={"picollm.run": target.run, "picollm.seed": str(target.seed)})
            self.run_id = ids["mlflow"] = run.info.run_id
            self._params(params)
        except MlflowException as exc:
            raise PicoError(f"MLflow ({uri or local}): {first_line(exc)}") from None

    def _continued(self, experiment: str) -> bool:
        """Whether the run the checkpoint logged to is still there, in this experiment, and running again."""
        from mlflow.exceptions import MlflowException
        try:
            if self.client.get_run(self.run_id).info.experiment_id != experiment:
                return False
        except MlflowException:  # deleted, or another store (MLFLOW_TRACKING_URI changed)
            return False
        self.client.update_run(self.run_id, status="RUNNING")
        return True

    def _experiment(self, name: str, artifacts: Path | None) -> str:
        from mlflow.exceptions import MlflowException
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifacts and artifacts.as_uri())
        except MlflowException:  # another job created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def _params(self, params: dict) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log(self, step: int, metrics: dict) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def summary(self, step: int, summary: dict) -> None:
        self.log(step, numbers(summary))
        self.client.log_dict(self.run_id, summary, "summary.json")

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class WandB:
    """A W&B run in the user's project (WANDB_PROJECT, else the study's experiment) and entity (WANDB_ENTITY, else
    the login's); WANDB_MODE=offline writes it under results/<experiment>/wandb/ (or WANDB_DIR) for `wandb sync`."""

    def __init__(self, target: Target, params: dict, step: int, ids: dict):
        import wandb
        run_id = ids.get("wandb") if step else None
        ids["wandb"] = run_id or uuid.uuid4().hex[:16]
        folder = Path(os.environ.get("WANDB_DIR") or target.root)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            # W&B's own project setting (WANDB_PROJECT, `wandb init`) first; the entity is left to W&B alone
            self.run = wandb.init(project=wandb_settings().project or target.experiment, name=target.name,
                                  group=target.run, job_type="train", id=ids["wandb"], resume="allow",
                                  dir=str(folder), config=params, settings=wandb.Settings(console="off"))
        except wandb.Error as exc:  # no API key, a refused login, an unknown entity
            raise PicoError(f"W&B: {first_line(exc)}; or set WANDB_MODE=offline to write the run to files") from None

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def summary(self, step: int, summary: dict) -> None:
        self.run.summary.update(numbers(summary))

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


LOGGERS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


class Tracking:
    """Every tracker of one run, fed by the trainer; a context that closes them with how training ended."""

    def __init__(self, loggers: dict, ids_path: Path | None = None, last_row: dict | None = None):
        self.loggers = loggers
        self.ids_path = ids_path
        self.last_row = last_row  # for tokens/s over the rows between two logged steps

    def row(self, row: dict, health: list) -> None:
        """One metrics.csv row and its step's layer-health rows."""
        metrics = {k: float(v) for k, v in row.items() if k not in ROW_PLACE and math.isfinite(v)}
        prev = self.last_row
        if prev is not None and row["elapsed_s"] > prev["elapsed_s"] and row["step"] > prev["step"]:
            seconds = row["elapsed_s"] - prev["elapsed_s"]
            metrics["tokens_per_s"] = (row["tokens_seen"] - prev["tokens_seen"]) / seconds
        for h in health:
            block = f"health/block{h['block']}"
            metrics.update({f"{block}/{k}": float(v) for k, v in h.items()
                            if k not in HEALTH_PLACE and math.isfinite(v)})
        self.last_row = row
        self._each("log", row["step"], metrics)

    def summary(self, step: int, summary: dict) -> None:
        self._each("summary", step, {k: v for k, v in summary.items() if k != "provenance"})

    def _each(self, method: str, *args) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:  # a tracker that fails must not stop the training it watches
                tqdm.write(f"warning: {name} stopped logging ({type(exc).__name__}: {first_line(exc)}); training "
                           f"goes on and metrics.csv has every row", file=sys.stderr)
                del self.loggers[name]
                if method != "close":  # its run marked failed where it can still be, not left "running"
                    with contextlib.suppress(Exception):
                        logger.close("FAILED")

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, (Interrupted, KeyboardInterrupt)) \
            else "FAILED"
        self._each("close", status)
        if status == "FINISHED" and self.ids_path is not None:
            self.ids_path.unlink(missing_ok=True)  # finished: a later training of this folder is another run


def _kept(path: Path) -> dict:
    """tracking.json as written by start(), or {} when it is missing or not that."""
    with contextlib.suppress(ValueError, OSError):
        kept = json.loads(Path(path).read_text())
        if isinstance(kept, dict) and isinstance(kept.get("ids"), dict):
            return kept
    return {}


def kept_fingerprint(path: Path) -> str | None:
    """The fingerprint of the training whose trackers' run ids `path` (tracking.json) keeps."""
    return _kept(path).get("fingerprint")


def kept_ids(path: Path) -> dict:
    return _kept(path).get("ids", {})


def start(names, target: Target, params: dict, fingerprint: str, step: int, last_row: dict | None) -> Tracking:
    """The trackers `names` (checked with `check`) of a run about to train from `step` (0: from the start),
    each continuing the run it logged before when the checkpoint it resumes (`fingerprint`) is that run's."""
    if not names:
        return Tracking({})
    path = target.out_dir / IDS
    ids = dict(kept_ids(path)) if step and kept_fingerprint(path) == fingerprint else {}
    params = flat(params)
    tracking = Tracking({}, path, last_row)
    try:
        for name in dict.fromkeys(names):  # each once, in the order given
            tracking.loggers[name] = LOGGERS[name](target, params, step, ids)
    except BaseException:
        tracking._each("close", "FAILED")
        raise
    write_json(path, {"fingerprint": fingerprint, "ids": ids})
    return tracking
