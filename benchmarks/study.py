"""5. Wall time of the offline study and of the default TinyStories study (extrapolated) on this machine.

Offline: `snakemake --cores N all --configfile config/offline.yaml`, run whole in a temporary --directory.
TinyStories: the Hub is not always reachable, so config/config.yaml is run with its data source swapped for
a `text` source over local TinyStories files (../shared/tinystories) and train.max_steps cut to a few dozen
steps; the full run is then extrapolated from each model's measured step time, validation time and
checkpoint time. The download from the Hub and the extra tokenization of 20000 streamed stories are
estimated separately or left out, and the JSON says which.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from benchmarks.common import METER, REPO, Sizes
from picollm.config import load_study

TITLE = "Study wall time on this machine"
STUDY_FILES = ["config/offline.yaml", "config/config.yaml"]  # the studies timed, as the record names them
SHARED = REPO.parent / "shared"
TINYSTORIES_TRAIN = SHARED / "tinystories" / "TinyStories-train-head.txt"
TINYSTORIES_VALID = SHARED / "tinystories" / "TinyStories-valid-head.txt"


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # rules' `python`
    cache = SHARED / "tiktoken-cache"
    if "TIKTOKEN_CACHE_DIR" not in env and cache.is_dir():
        env["TIKTOKEN_CACHE_DIR"] = str(cache)
    env["HF_HUB_OFFLINE"] = env.get("HF_HUB_OFFLINE", "1")
    return env


LAST_RUN = {}  # CPU the rest of the machine used during the last snakemake run, in cores on average


def snakemake(configfile: Path, workdir: Path, cores: int) -> float:
    exe = Path(sys.executable).parent / "snakemake"
    cmd = [str(exe) if exe.exists() else "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(workdir), "--cores", str(cores), "all", "--configfile", str(configfile), "-q"]
    before = METER.snapshot()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    LAST_RUN["others_cores"] = round(METER.others(before, METER.snapshot()) / wall, 2)
    if proc.returncode != 0:
        failed = [f"--- {log.relative_to(workdir)}:\n" + "".join(log.read_text(errors="replace").splitlines(True)[-12:])
                  for log in sorted(workdir.glob("results/*/logs/**/*.log")) if "Traceback" in log.read_text(errors="replace")]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) after {wall:.0f} s; failing job logs:\n"
                           + ("\n".join(failed) or (proc.stdout + proc.stderr)[-3000:]))
    return wall


def offline(sz: Sizes, work: Path) -> dict:
    wall = snakemake(REPO / "config" / "offline.yaml", work / "offline", sz.threads)
    return {"wall_s": round(wall, 1), "measured": True, "other_processes_cores": LAST_RUN.get("others_cores"),
            "command": f"snakemake --cores {sz.threads} all --configfile config/offline.yaml (in an empty directory)"}


def _half_file(src: Path, dst: Path) -> None:
    """The first half of a file's lines (the valid-head file holds ~1000 stories; the study validates on 500)."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[:len(lines) // 2]), encoding="utf-8")


def _model_times(metrics_csv: Path) -> dict:
    """Step and validation seconds from metrics.csv's elapsed_s: rows that only log are pure training steps."""
    m = pd.read_csv(metrics_csv)
    eval_s = float(m.loc[0, "elapsed_s"])  # the step-0 row is written after its validation pass
    logs = m[m["val_loss"].isna()]
    if len(logs) >= 2:  # skip the first logged interval's warm-up: from the first log-only row to the last
        step_s = float((logs["elapsed_s"].iloc[-1] - logs["elapsed_s"].iloc[0]) / (logs["step"].iloc[-1] - logs["step"].iloc[0]))
    else:
        step_s = float((m["elapsed_s"].iloc[-1] - 2 * eval_s) / m["step"].iloc[-1])
    return {"step_s": step_s, "eval_s": eval_s}


def _checkpoint_s(model_pt: Path, tmp: Path) -> float:
    """Time to torch.save a checkpoint-sized dict: the weights and two AdamW moments (as last.pt holds)."""
    sd = torch.load(model_pt, map_location="cpu", weights_only=True)["state_dict"]
    state = {"model": sd, "exp_avg": {k: v.clone() for k, v in sd.items()}, "exp_avg_sq": {k: v.clone() for k, v in sd.items()}}
    times = []
    for _ in range(3):
        t = time.perf_counter()
        torch.save(state, tmp / "ckpt.pt")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _tokenize_s(raw_train: Path, tmp: Path, threads: int) -> float:
    from picollm.data.tokenizer import get_tokenizer
    from picollm.data.tokens import tokenize_split
    os.environ.update({k: v for k, v in _env().items() if k == "TIKTOKEN_CACHE_DIR"})
    t = time.perf_counter()
    tokenize_split(get_tokenizer("gpt2"), {"tinystories": raw_train}, tmp / "tok.bin", threads)
    return time.perf_counter() - t


def extrapolate(real, out: Path, n: int, tmp: Path) -> tuple[dict, float]:
    """From a study's run of `n` steps a training (results folder `out`), each run's step, validation and checkpoint
    seconds (the mean over its seeds), its training's length at the study's own steps, and the seconds the whole
    study (`real`, a picollm.config.Study) would add: each training's steps, validations and checkpoints left."""
    models, extra = {}, 0.0
    for name in real.runs:
        train = real.train_of(name)
        full_steps = train.max_steps
        evals_full, evals_run = validations(train, full_steps), validations(train.model_copy(update={"max_steps": n}), n)
        ckpts_full = (full_steps - 1) // train.checkpoint_interval
        folders = [out / "models" / name / f"seed{seed}" for seed in real.seeds]
        per_seed = [_model_times(folder / "metrics.csv") for folder in folders]
        times = {key: statistics.mean(t[key] for t in per_seed) for key in ("step_s", "eval_s")}
        times["checkpoint_s"] = _checkpoint_s(folders[0] / "model.pt", tmp)
        left_s = (full_steps - n) * times["step_s"] + (evals_full - evals_run) * times["eval_s"] \
            + ckpts_full * times["checkpoint_s"]
        times["extrapolated_extra_s"] = left_s
        times["train_full_s"] = full_steps * times["step_s"] + evals_full * times["eval_s"] \
            + ckpts_full * times["checkpoint_s"]
        models[name] = {**{k: float(f"{v:.4g}") for k, v in times.items()}, "trainings": len(folders),
                        "validations": evals_full, "checkpoints": ckpts_full}
        extra += left_s * len(folders)
    return models, extra


def validations(train, steps: int) -> int:
    """Validation passes of a training of `steps` on its schedule (train.is_eval_step), the last step included."""
    return sum(train.is_eval_step(step) for step in range(steps + 1)) + (not train.is_eval_step(steps))


def short_study(full: dict, steps: int, val_file: Path) -> dict:
    """config/config.yaml (`full`) on the local TinyStories text, trained for `steps`: the snapshots past them
    dropped, as the config check asks."""
    study = yaml.safe_load(yaml.safe_dump(full))
    study["experiment"] = "bench_tinystories"
    study["data"]["sources"] = [{"kind": "text", "name": "tinystories", "train_files": [str(TINYSTORIES_TRAIN)],
                                 "val_files": [str(val_file)]}]
    train = study["train"]
    train["max_steps"] = steps
    train["snapshot_steps"] = [step for step in train.get("snapshot_steps", []) if step <= steps]
    train["log_interval"] = 5  # more log-only rows to time steps between (logging costs nothing)
    return study


def tinystories(sz: Sizes, work: Path) -> dict:
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if not (TINYSTORIES_TRAIN.is_file() and TINYSTORIES_VALID.is_file()):
        return {"measured": False, "skipped": f"no local TinyStories text at {TINYSTORIES_TRAIN.parent}"}
    (work / "ts").mkdir(parents=True)
    val = work / "ts" / "valid-half.txt"
    _half_file(TINYSTORIES_VALID, val)
    study = short_study(full, sz.study_steps, val)
    configfile = work / "ts" / "config.yaml"
    configfile.write_text(yaml.safe_dump(study, sort_keys=False))
    wall = snakemake(configfile, work / "ts", sz.threads)
    others_cores = LAST_RUN.get("others_cores")

    from picollm.config import Study, parse
    real = parse(Study, full)  # the real study, defaults filled in
    cfg, n = real.model_dump(), sz.study_steps
    out = work / "ts" / "results" / "bench_tinystories"
    models, extra = extrapolate(real, out, n, work / "ts")
    raw_train = out / "data" / "raw" / "tinystories" / "train.txt"
    n_docs = sum(1 for line in raw_train.open(encoding="utf-8") if line.strip() == "<|endoftext|>")
    tok_s = _tokenize_s(raw_train, work / "ts", sz.threads)
    source = cfg["data"]["sources"][0]
    stories = source.get("train_stories", 20000)
    tok_extra = tok_s * max(0.0, stories / max(n_docs, 1) - 1)
    total = wall + extra + tok_extra
    return {
        "measured": False, "extrapolated": True,
        "measured_run": {"wall_s": round(wall, 1), "max_steps": n, "train_documents": n_docs,
                         "other_processes_cores": others_cores,
                         "command": f"snakemake --cores {sz.threads} all --configfile <config/config.yaml with a local "
                                    f"text source and train.max_steps={n}>"},
        "full_max_steps": cfg["train"]["max_steps"], "seeds": len(real.seeds), "per_model": models,
        "tokenize": {"local_train_s": round(tok_s, 2), "local_train_documents": n_docs, "study_train_stories": stories,
                     "extrapolated_extra_s": round(tok_extra, 1)},
        "wall_s": round(total, 1),
        "not_included": f"streaming {stories + source.get('val_stories', 0)} stories from the Hugging Face Hub (the "
                        f"download stage; unreachable here)",
        "formula": "measured wall of the short run + per training (each run, each seed) (max_steps - measured steps) "
                   "* step_s + (validations left) * eval_s + rolling checkpoints * checkpoint_s + tokenizing the extra "
                   "stories (scaled linearly from the local file); train jobs run one after another at --cores = "
                   "train.threads; step_s and eval_s are the mean over the run's seeds",
    }


def run(sz: Sizes, peak: dict) -> dict:
    if sz.quick:
        return {"title": TITLE, "results": {}, "skipped": "--quick: the study runs are skipped", "targets": [],
                "notes": ["Skipped with --quick."], "table": {"columns": ["study", "wall"], "rows": []}}
    work = Path(tempfile.mkdtemp(prefix="picollm-bench-study-"))
    results, errors = {}, []
    try:
        for key, fn in (("offline", offline), ("tinystories", tinystories)):
            try:
                results[key] = fn(sz, work)
            except Exception as exc:  # a failing study is reported, and the other one still runs
                results[key] = {"error": f"{type(exc).__name__}: {exc}"[-4000:]}
                errors.append(f"{key}: {results[key]['error']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    off, ts = results["offline"], results["tinystories"]
    rows, notes = [], []
    if "error" in off:
        rows.append(["offline (config/offline.yaml)", "FAILED", "-"])
    else:
        rows.append(["offline (config/offline.yaml)", "measured, whole pipeline", f"{off['wall_s']:,.0f} s"])
        notes.append(f"Offline study: {off['command']}, one run, timed end to end (data, tokenize, train, sample, "
                     f"evaluate, tables, figures, report); other processes used {off['other_processes_cores']} "
                     f"cores on average meanwhile.")
    if "error" in ts:
        rows.append(["TinyStories (config/config.yaml)", "FAILED", "-"])
    elif ts.get("extrapolated"):
        rows.append(["TinyStories (config/config.yaml)",
                     f"extrapolated from {ts['measured_run']['max_steps']} measured steps per model",
                     f"{ts['wall_s']:,.0f} s ({ts['wall_s'] / 60:,.0f} min)"])
        per = ", ".join(f"{m}: {v['step_s']:.3f} s/step, {v['eval_s']:.1f} s/validation, "
                        f"~{v['train_full_s'] / 60:.0f} min a training, {v['trainings']} trainings"
                        for m, v in ts["per_model"].items())
        notes += [
            f"TinyStories study: EXTRAPOLATED, not run to the end. {ts['measured_run']['command']} ran the whole "
            f"pipeline in {ts['measured_run']['wall_s']:,.0f} s on {ts['measured_run']['train_documents']} local "
            f"stories (../shared/tinystories; other processes used {ts['measured_run']['other_processes_cores']} "
            f"cores on average meanwhile); then {ts['formula']}.",
            f"Per model: {per}.",
            f"Not included: {ts['not_included']}.",
        ]
    else:
        rows.append(["TinyStories (config/config.yaml)", "skipped", ts.get("skipped", "")])
    notes += [f"FAILED {e}" for e in errors]
    return {"title": TITLE, "results": results, "errors": errors, "targets": [], "notes": notes,
            "table": {"columns": ["study", "how", "wall time"], "rows": rows}, "configs": outlines(STUDY_FILES)}


def outlines(paths) -> dict:
    """{study file: what it ran} (Study.outline) for the record: the docs compare it with the file of today."""
    return {path: load_study([str(REPO / path)]).outline() for path in paths}
