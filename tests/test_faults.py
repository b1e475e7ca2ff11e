"""Issue 23, "nothing lost when things go wrong": each fault, with real processes and signals where it has
them, ends in one line on the terminal, and the rerun continues without losing finished work."""
import contextlib
import errno
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (ROOT, byte_tokens, local_run_env, snakemake, snakemake_command, tiny_offline_config,
                      write_config)
from picollm.owner import alive
from picollm.train import train

TRAIN = {"max_steps": 10, "batch_size": 8, "lr": 0.003, "warmup_steps": 2, "eval_interval": 5, "eval_batches": 2,
         "checkpoint_interval": 5, "log_interval": 5, "threads": 1}
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
INTERRUPTED = "interrupted; rerun to continue\n"


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def model_path(tokens_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    return out / "model.pt"


def with_ctrl_c():
    """In the child: SIGINT and SIGHUP as a terminal's foreground job has them (a test runner started in the
    background, or under nohup, may pass them on ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start(*args, **kwargs) -> subprocess.Popen:
    """`python -m picollm ...` as Snakemake starts it from a terminal, running on."""
    return subprocess.Popen([sys.executable, "-m", "picollm", *map(str, args)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=with_ctrl_c, **kwargs)


def wait_for(condition, proc=None, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)


# --- Ctrl-C, SIGTERM and SIGHUP outside training: one line, no traceback --------------------------------

def long_sampling() -> str:
    return json.dumps({"sampling": {"prompts": ["1 2 3"], "p_values": [1.0], "max_new_tokens": 4000,
                                    "num_samples": 200, "stop_at_eot": False}})


@pytest.mark.parametrize("stage, sig", [("sample", signal.SIGINT), ("evaluate", signal.SIGTERM),
                                        ("sample", signal.SIGTERM), ("sample", signal.SIGHUP)])
def test_a_signal_stops_a_stage_with_one_line(stage, sig, model_path, tokens_dir, tmp_path):
    log = tmp_path / "stage.log"
    common = ["--name", "m", "--model-path", model_path, "--config", long_sampling()]
    if stage == "sample":
        args = ["sample", *common, "--out", tmp_path / "s.jsonl"]
    else:
        samples = tmp_path / "s.jsonl"
        samples.write_text(json.dumps({"model": "m", "prompt": "1 2 3", "decoding": 1.0, "p": 1.0, "sample": 0,
                                       "seed": 1, "text": "", "new_tokens": 1, "token_ids": [5]}) + "\n")
        args = ["evaluate", *common, "--tokens-dir", tokens_dir, "--samples", samples, "--out", tmp_path / "e.json"]
    proc = start("--log", log, *args)
    wait_for(log.exists, proc)  # the CLI is up and owns the signals
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (128 + sig, INTERRUPTED)
    assert log.read_text().endswith(INTERRUPTED) and "Traceback" not in log.read_text()


def test_ctrl_c_without_a_log_is_one_line_too(model_path, tmp_path):
    proc = start("sample", "--name", "m", "--model-path", model_path, "--config", long_sampling(),
                 "--out", tmp_path / "s.jsonl")
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, INTERRUPTED)


def test_a_prompt_past_block_size_is_noted_on_the_terminal(model_path, tmp_path):
    cfg = {"sampling": {"prompts": ["1 2 3 " * 20], "p_values": [1.0], "max_new_tokens": 2, "num_samples": 1}}
    log = tmp_path / "sample.log"
    result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(log), "sample", "--name", "m",
                             "--model-path", str(model_path), "--config", json.dumps(cfg), "--out",
                             str(tmp_path / "s.jsonl")], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, log.read_text()
    line = "note: prompt 0 has 121 tokens, more than block_size 32; the model sees its last 32\n"
    assert result.stderr == line and line in log.read_text()


# --- a full disk --------------------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(folder: Path, size: str, options: str = ""):
    """A tmpfs of `size` at `folder`, with more mount `options` (ro) if given (root only: skipped, with the
    reason, elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def grow(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def train_command(tokens_dir, out_dir, steps=10, **changes):
    job = {"models": {"m": TRANSFORMER}, "train": {**TRAIN, "max_steps": steps, **changes}, "seed": 3,
           "block_size": 32, "device": "cpu"}
    return ["train", "--config", json.dumps(job), "--tokens-dir", tokens_dir, "--out-dir", out_dir]


def test_a_full_disk_in_training_is_one_line_and_the_rerun_finishes(tokens_dir, tmp_path):
    with small_disk(tmp_path / "disk", "200k") as disk:
        out = disk / "m"
        log = tmp_path / "train.log"  # the log elsewhere: its tail shows what training did
        result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(log),
                                 *map(str, train_command(tokens_dir, out))], env=ENV, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 1, log.read_text()
        assert result.stderr.startswith(f"error: no space left on {out} (writing ") and result.stderr.count("\n") == 1
        assert not list(out.glob(".*.tmp"))  # the half-written file is gone
        grow(disk, "4m")
        again = subprocess.run([sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out))], env=ENV,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert (out / "model.pt").is_file()


def test_a_file_size_limit_in_training_is_one_line_not_a_bug(tokens_dir, tmp_path):
    """A write that stops short on a disk with room (a quota, a file-size limit) names the file and the likely
    causes, where torch's zip writer says only 'unexpected pos'; nothing written before is lost."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))

    out = tmp_path / "m"
    result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / "train.log"),
                             *map(str, train_command(tokens_dir, out))], env=ENV, capture_output=True, text=True,
                            timeout=300, preexec_fn=limit)
    assert result.returncode == 1, (tmp_path / "train.log").read_text()
    assert result.stderr.startswith("error: could not write ") and result.stderr.count("\n") == 1, result.stderr
    assert f" in {out} (" in result.stderr and "file-size limit (ulimit -f)" in result.stderr
    assert not list(out.glob(".*.tmp"))


def test_a_file_where_the_output_folder_should_be_is_one_line(model_path, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub" / "s.jsonl"
    result = subprocess.run([sys.executable, "-m", "picollm", "sample", "--name", "m", "--model-path",
                             str(model_path), "--config", "{}", "--out", str(out)], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == (f"error: cannot write {out}: {tmp_path / 'afile'} is a file, not a folder; move it away "
                             f"(or give another path), then rerun: finished work is kept\n")
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_a_training_log_deleted_under_it_keeps_its_lines(tokens_dir, tmp_path):
    """Snakemake deletes a job's log before it starts the job, a second job for the same training folder among
    them (which the folder's lock refuses, writing its line in the new log): the training that runs on puts its
    lines back at the path, before the new file's, and its later lines follow them."""
    log, out = tmp_path / "train.log", tmp_path / "m"
    proc = start("--log", log, *train_command(tokens_dir, out, steps=400, log_interval=1, eval_interval=100,
                                              checkpoint_interval=1000))
    wait_for(lambda: log.exists() and "step" in log.read_text(), proc)  # training has begun
    first = log.read_text()
    log.unlink()  # as Snakemake does before the second job
    log.write_text("error: refused by the lock\n")  # the second job's line
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    text = log.read_text()
    assert text.startswith(first) and "error: refused by the lock\n" in text
    assert text.rstrip().splitlines()[-1].startswith('{"model": "m"')  # its summary, after both


def test_a_full_disk_under_the_log_still_reaches_the_terminal(model_path, tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * (1 << 20))
        result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(disk / "sample.log"), "sample",
                                 "--name", "m", "--model-path", str(model_path), "--config", "{}", "--out",
                                 str(disk / "s.jsonl")], env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        assert result.stderr == f"error: no space left on {disk} (writing s.jsonl); free some space there, then " \
                                f"rerun: finished work is kept\n"


def test_a_full_disk_under_the_report_is_one_line(tmp_path):
    (tmp_path / "Snakefile").write_text("rule all:\n    output: 'a.txt'\n    shell: 'touch {output}'\n")
    (tmp_path / "study.yaml").write_text("{}\n")
    with small_disk(tmp_path / "disk", "16k") as disk:
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * (1 << 20))
        result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / "report.log"), "report",
                                 "--snakefile", str(tmp_path / "Snakefile"), "--configfile",
                                 str(tmp_path / "study.yaml"), "--out", str(disk / "report.html")],
                                env={**ENV, "PATH": f"{Path(sys.executable).parent}:{ROOT / 'tests/no-slurm-bin'}:"
                                                    f"{os.environ['PATH']}"},
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 1, (tmp_path / "report.log").read_text()[-3000:]
        assert result.stderr.startswith(f"error: no space left on {disk} (writing report.html)"), result.stderr


def test_a_run_on_a_full_disk_is_one_line_before_snakemake_writes(tmp_path):
    """Snakemake writes its lock in .snakemake/ before any job: on a full disk, that ends in its own traceback."""
    with small_disk(tmp_path / "disk", "256k") as disk:
        write_config(disk / "study.yaml", tiny_offline_config())
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * (1 << 20))
        result = snakemake(disk, "--cores", "1", "all", "--configfile", disk / "study.yaml")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: no space left on {disk} (Snakemake writes its lock and records in .snakemake/ there before any "
            "job); free some space there, then rerun: finished work is kept"), result.stderr[-3000:]


def test_a_read_only_folder_is_one_line_for_an_output_a_log_and_a_run(model_path, tmp_path):
    with small_disk(tmp_path / "ro", "64k", ",ro") as ro:
        for log, out in [(tmp_path / "s.log", ro / "s.jsonl"), (ro / "s.log", tmp_path / "s.jsonl")]:
            result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(log), "sample", "--name", "m",
                                     "--model-path", str(model_path), "--config", "{}", "--out", str(out)], env=ENV,
                                    capture_output=True, text=True, timeout=300)
            written = out if log.parent == tmp_path else log
            assert result.returncode == 1 and result.stderr == (
                f"error: cannot write in {ro} (read-only file system; writing {written.name}); make it writable, "
                f"then rerun: finished work is kept\n"), result.stderr
        write_config(tmp_path / "study.yaml", {**tiny_offline_config(), "experiment": "ro"})
        (tmp_path / "results").mkdir()
        (tmp_path / "results" / "ro").symlink_to(ro)
        for _ in range(2):  # the lock of the first is gone: the second says the same
            result = snakemake(tmp_path, "--cores", "1", "all", "--configfile", tmp_path / "study.yaml")
            assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
                f"error: cannot write in {ro} (read-only file system); make it writable, then rerun: finished work "
                f"is kept"), result.stderr[-3000:]
        # reading someone's read-only results writes nothing there: a dry run goes on
        assert snakemake(tmp_path, "-n", "all", "--configfile", tmp_path / "study.yaml").returncode == 0


def test_a_read_only_folder_inside_the_results_is_one_line_before_any_job(tmp_path):
    """A read-only mount inside results/<experiment>/ (its eval/ folder): one line naming it before any job, where
    Snakemake would end in its own traceback at the first job writing there; a dry run still goes on."""
    write_config(tmp_path / "study.yaml", {**tiny_offline_config(), "experiment": "part"})
    with small_disk(tmp_path / "results" / "part" / "eval", "64k", ",ro") as ro:
        result = snakemake(tmp_path, "--cores", "1", "all", "--configfile", tmp_path / "study.yaml")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: cannot write in {ro} (read-only file system); make it writable, then rerun: finished work "
            f"is kept"), result.stderr[-3000:]
        assert not (tmp_path / "results" / "part" / "data").exists()  # no job ran
        assert snakemake(tmp_path, "-n", "all", "--configfile", tmp_path / "study.yaml").returncode == 0


def test_a_cuda_study_with_a_cpu_build_of_torch_is_one_line_before_any_job(tmp_path):
    """device: cuda where the installed torch is a CPU build (CI's): the run stops as it starts, before the data
    are made, with the line each train job would give; a dry run, which only plans, goes on."""
    import torch

    write_config(tmp_path / "study.yaml", {**tiny_offline_config(), "experiment": "cu", "device": "cuda"})
    assert snakemake(tmp_path, "-n", "all", "--configfile", tmp_path / "study.yaml").returncode == 0
    if torch.version.cuda is not None:  # a CUDA build: whether there is a GPU is each job's to say
        return
    result = snakemake(tmp_path, "--cores", "1", "all", "--configfile", tmp_path / "study.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: device: cuda was asked for but this torch ({torch.__version__}) is a CPU build; install its CUDA "
        f"build (conda: CONDA_OVERRIDE_CUDA, docs/cluster.md), or use device: cpu"), result.stderr[-3000:]
    assert not (tmp_path / "results" / "cu").exists()  # no job ran, no folder made


def test_a_file_that_cannot_be_read_is_not_called_unwritable(tmp_path, monkeypatch):
    """Permission denied on a read (another user's study or tokens) names the read; root reads everything, so
    os.access stands in for the file's mode."""
    from picollm import io
    secret = tmp_path / "secret.yaml"
    secret.write_text("experiment: x\n")
    denied = PermissionError(errno.EACCES, "Permission denied", str(secret))
    monkeypatch.setattr(io.os, "access", lambda path, mode: not (Path(path) == secret and mode == os.R_OK))
    assert str(io.write_problem(secret, denied)) == (f"cannot read {secret} (permission denied); make it readable, "
                                                     f"then rerun")
    monkeypatch.setattr(io.os, "access", lambda path, mode: True)  # readable, and its folder writable: no guess
    assert io.write_problem(secret, denied) is None


# --- damaged token files ------------------------------------------------------------------------------

def damage(folder: Path, how: str, split: str = "train") -> Path:
    """Damage one file of a token folder as a crash, a full disk or a stray write would; returns it."""
    tokens, meta = folder / f"{split}.bin", folder / "meta.json"
    data = tokens.read_bytes()
    if how == "truncated":
        tokens.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        tokens.write_bytes(b"")
    elif how == "odd length":
        tokens.write_bytes(data + b"\0")
    elif how == "overwritten":  # same size, bytes changed in the middle
        middle = len(data) // 2
        tokens.write_bytes(data[:middle] + bytes(range(256)) * 4 + data[middle + 1024:])
    elif how == "garbage meta.json":
        meta.write_bytes(b"\x89PNG\r\n\x1a\n not json")
        return meta
    elif how == "incomplete meta.json":  # still JSON, without what the stages read
        whole = json.loads(meta.read_text())
        meta.write_text(json.dumps({k: v for k, v in whole.items() if k not in ("vocab_size", "splits")}))
        return meta
    return tokens


DAMAGES = ["truncated", "empty", "odd length", "overwritten", "garbage meta.json", "incomplete meta.json"]
SAYS = {"truncated": r"is damaged: [\d,]+ bytes where meta.json says [\d,]+ uint16 tokens \([\d,]+ bytes\)",
        "empty": r"is damaged: 0 bytes where meta.json says [\d,]+ uint16 tokens \([\d,]+ bytes\)",
        "odd length": r"is damaged: [\d,]+ bytes where meta.json says [\d,]+ uint16 tokens \([\d,]+ bytes\)",
        "overwritten": "is damaged: its sha256 is not the one meta.json records",
        "garbage meta.json": r"is not valid JSON \(.*\)",
        "incomplete meta.json": r"is not a whole meta.json \(no valid vocab_size, splits\)"}
REBUILD = r"; delete it and rerun: tokenize rebuilds it \(models trained on it are kept\)$"


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_token_file_stops_training_and_evaluation_in_one_line(how, tokens_dir, model_path, tmp_path):
    from picollm.errors import PicoError
    from picollm.evaluate import evaluate_model
    for split in ("train", "val"):
        folder = Path(shutil.copytree(tokens_dir, tmp_path / split))
        path = damage(folder, how, split)
        with pytest.raises(PicoError, match=f"^{re.escape(str(path))} {SAYS[how]}{REBUILD}"):
            train("m", TRANSFORMER, TRAIN, tokens_dir=folder, out_dir=tmp_path / "out", seed=3, block_size=32)
        assert not (tmp_path / "out" / "last.pt").exists()
    with pytest.raises(PicoError, match=f"^{re.escape(str(path))} {SAYS[how]}{REBUILD}"):  # val.bin, or meta.json
        evaluate_model("m", model_path, folder)


def test_a_damaged_token_file_is_one_line_on_the_terminal(tokens_dir, tmp_path):
    folder = Path(shutil.copytree(tokens_dir, tmp_path / "tok"))
    path = damage(folder, "truncated")
    result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / "t.log"),
                             *map(str, train_command(folder, tmp_path / "out"))], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path} is damaged: ")


def test_the_workflow_refuses_damaged_tokens_before_any_job(tmp_path):
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config())
    tokens = tmp_path / "results/tiny/data/tokens"
    made = snakemake(tmp_path, "--cores", "1", "results/tiny/data/tokens/meta.json", "--configfile", cfg)
    assert made.returncode == 0, made.stderr[-3000:]
    good = shutil.copytree(tokens, tmp_path / "good")
    for how in ("truncated", "overwritten", "garbage meta.json", "incomplete meta.json"):
        path = damage(tokens, how)
        result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", cfg)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
        assert len(lines) == 1, result.stderr
        assert re.match(f"^error: results/tiny/data/tokens/{path.name} {SAYS[how]}{REBUILD}", lines[0])
        assert "Building DAG" not in result.stdout + result.stderr  # stopped at parse time
        shutil.copy2(good / path.name, path)


# --- a checkpoint damaged in place ----------------------------------------------------------------------

def overwrite_middle(path: Path, n: int = 2000, seed: int = 0) -> None:
    """`n` random bytes written over the middle of the file, its size unchanged."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = random.Random(seed).randbytes(n)
    path.write_bytes(bytes(data))


DAMAGED_CHECKPOINT = r"checkpoint .* is (damaged: its weights do not match the checksum saved with them|truncated " \
                     r"or corrupt \(\w+\)); delete it and rerun training"


def test_a_checkpoint_damaged_in_place_is_refused_in_one_line(model_path, tokens_dir, tmp_path):
    from picollm.errors import PicoError
    from picollm.models import load_model
    bad = tmp_path / "model.pt"
    shutil.copy(model_path, bad)
    overwrite_middle(bad)
    with pytest.raises(PicoError, match="^" + DAMAGED_CHECKPOINT.replace(".*", re.escape(str(bad)))):
        load_model(bad)
    for stage in ("sample", "evaluate"):
        result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / f"{stage}.log"), stage,
                                 "--name", "m", "--model-path", str(bad), "--config", "{}", "--out",
                                 str(tmp_path / "out"), *(["--tokens-dir", str(tokens_dir)] if stage == "evaluate" else [])],
                                env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and re.fullmatch(f"error: {DAMAGED_CHECKPOINT}\n", result.stderr), result.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, reason", [
    (lambda ckpt: ckpt["model_cfg"].update(ZZZZZZZ=1), "unknown config key 'ZZZZZZZ'"),
    (lambda ckpt: ckpt.pop("vocab_size"), "no 'vocab_size'"),
], ids=["config-key", "missing-size"])
def test_a_checkpoint_whose_config_was_changed_names_the_file(change, reason, model_path, tmp_path):
    """A checkpoint's config changed in place is named as damaged: by the checksum of what it records besides
    its weights, and in one saved without that checksum, by the model that does not build from it."""
    import torch

    from picollm.errors import PicoError
    from picollm.models import load_model
    ckpt = torch.load(model_path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PicoError, match=f"^checkpoint {re.escape(str(tmp_path / 'model.pt'))} is damaged: what it "
                                        f"records besides its weights \\(config, tokenizer, provenance\\) does not "
                                        f"match the checksum saved with it; delete it and rerun training$"):
        load_model(tmp_path / "model.pt")
    del ckpt["meta_sha256"]
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PicoError, match=f"^checkpoint {re.escape(str(tmp_path / 'model.pt'))} is damaged: its model "
                                        f"does not build from it \\({reason}.*\\); delete it and rerun training$"):
        load_model(tmp_path / "model.pt")


def test_a_checkpoint_whose_provenance_was_changed_is_damaged_not_a_traceback(model_path, tmp_path):
    """A byte changed in the provenance a model.pt records: the checksum names the file as damaged; in one saved
    without that checksum, a record that is no longer JSON is one line, not a JSONDecodeError."""
    import torch

    from picollm.errors import PicoError
    from picollm.models import load_model, read_checkpoint
    from picollm.provenance import of_checkpoint
    ckpt = torch.load(model_path, weights_only=True)
    ckpt["provenance"] = ckpt["provenance"][:-1]  # its last byte lost: no longer JSON
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PicoError, match="is damaged: what it records besides its weights"):
        load_model(tmp_path / "model.pt")
    del ckpt["meta_sha256"]
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PicoError, match="^a checkpoint's provenance record is not JSON: the file is damaged; delete "
                                        "it and rerun training$"):
        of_checkpoint(read_checkpoint(tmp_path / "model.pt"))


def test_the_weights_checksum_is_checked_not_only_the_file(model_path, tmp_path):
    """Bytes changed in the weights alone (the zip still reads) are caught by the checksum."""
    import torch

    from picollm.errors import PicoError
    from picollm.models import load_model
    ckpt = torch.load(model_path, weights_only=True)
    name = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][name].view(-1)[0] += 1.0
    torch.save(ckpt, tmp_path / "changed.pt")
    with pytest.raises(PicoError, match="is damaged: its weights do not match the checksum saved with them"):
        load_model(tmp_path / "changed.pt")


def test_a_damaged_rolling_checkpoint_is_not_resumed(tokens_dir, tmp_path):
    """A last.pt whose bytes changed in place is set aside with a line in the log; training starts over."""
    import torch

    from picollm.models import tensors_sha256
    out = tmp_path / "out"
    # steps enough that it never ends before the signal: last.pt goes when training does
    proc = start(*train_command(tokens_dir, out, steps=100000, checkpoint_interval=5))
    wait_for((out / "last.pt").exists, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["sha256"] == tensors_sha256({k: v for k, v in ckpt.items() if k != "sha256"})
    next(iter(ckpt["model"].values())).view(-1)[0] += 1.0
    torch.save(ckpt, out / "last.pt")
    result = subprocess.run([sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out, steps=10))],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert (f"ignoring damaged checkpoint {out / 'last.pt'} (its tensors do not match their checksum); starting from "
            f"step 0") in result.stderr


def test_evaluate_writes_no_nan_result(model_path, tokens_dir, tmp_path):
    """A model whose weights are not finite (its checksum intact: written so by training) gives no eval json."""
    import torch

    from picollm.models import tensors_sha256
    ckpt = torch.load(model_path, weights_only=True)
    for tensor in ckpt["state_dict"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    ckpt["sha256"] = tensors_sha256(ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "nan.pt")
    result = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / "e.log"), "evaluate", "--name",
                             "m", "--model-path",
                             str(tmp_path / "nan.pt"), "--tokens-dir", str(tokens_dir), "--config", "{}",
                             "--out", str(tmp_path / "e.json")], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and not (tmp_path / "e.json").exists()
    assert result.stderr == (f"error: evaluating m gave val_loss nan, perplexity nan, bpb nan: the model's outputs are "
                             f"not finite numbers; {tmp_path / 'nan.pt'} is damaged or its training diverged: delete "
                             f"it and rerun training\n")


# --- divergence -----------------------------------------------------------------------------------------

def test_an_exploding_loss_stops_training_with_the_step_and_the_key(tokens_dir, tmp_path):
    from picollm.errors import PicoError
    with pytest.raises(PicoError, match=r"^training m diverged: a loss at step \d+ of [\d.e+]+, over 10 x ln\(vocab\) = "
                                        r"55\.5; (no checkpoint was written yet|the checkpoint of step \d+ is kept in "
                                        r".*last\.pt); lower train\.lr \(now 100\)$"):
        train("m", TRANSFORMER, {**TRAIN, "lr": 100, "max_steps": 16}, tokens_dir=tokens_dir, out_dir=tmp_path,
              seed=7, block_size=32)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("grad_clip, at, kept", [
    (1.0, 7, "the checkpoint of step 5 is kept in {out}/last.pt; lower train.lr (now 0.003)"),
    (0.0, 3, "no checkpoint was written yet; lower train.lr (now 0.003) or set train.grad_clip (now 0: off)")])
def test_a_nan_loss_says_what_is_kept_and_what_to_change(grad_clip, at, kept, tokens_dir, tmp_path, monkeypatch):
    from picollm import distributed
    from picollm.errors import PicoError
    calls = []

    def average(value):  # the step's loss: NaN from step `at` on
        calls.append(1)
        return value * float("nan") if len(calls) >= at else value
    monkeypatch.setattr(distributed, "average", average)
    with pytest.raises(PicoError) as error:
        train("m", TRANSFORMER, {**TRAIN, "grad_clip": grad_clip}, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3,
              block_size=32)
    assert str(error.value) == f"training m hit a nan loss at step {at}; " + kept.format(out=tmp_path)


def test_a_flat_model_with_no_gradient_stops_training(tokens_dir, tmp_path, monkeypatch):
    """All weights zero: a uniform guess whose gradient is exactly zero, which no step can leave."""
    import torch

    from picollm import train as train_module
    from picollm.errors import PicoError
    build = train_module.build_model

    def flat(*args, **kwargs):
        model = build(*args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model
    monkeypatch.setattr(train_module, "build_model", flat)
    with pytest.raises(PicoError, match=r"^training m collapsed to a flat model: a zero gradient and a loss at step 1 "
                                        r"of 5\.5491 = ln\(vocab\); no checkpoint was written yet; lower train\.lr"):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3, block_size=32)


# --- a model too large for the machine ------------------------------------------------------------------

def test_a_model_too_large_is_one_line_before_it_is_built(tokens_dir, tmp_path):
    from picollm.errors import PicoError
    huge = {**TRANSFORMER, "d_model": 100000}
    with pytest.raises(PicoError, match=r"^model big needs 960 GB for its weights and gradients alone "
                                        r"\(120,029,200,000 parameters x 8 bytes; the optimizer needs more\), more "
                                        r"than the .* free on cpu; lower models\.big\.d_model \(100000\)$"):
        train("big", huge, TRAIN, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3, block_size=32)


def test_an_allocation_that_fails_anyway_is_one_line(tokens_dir, tmp_path, monkeypatch):
    from picollm import fits
    from picollm import train as train_module
    from picollm.errors import PicoError

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 120000000000 bytes.")
    monkeypatch.setattr(fits, "free_memory", lambda device: None)  # the estimate cannot tell
    monkeypatch.setattr(train_module, "build_model", no_memory)
    with pytest.raises(PicoError, match=r"^model m ran out of memory on cpu while being built \([\d,]+ parameters, "
                                        r"[\d.]+ KB for weights and gradients\); lower models\.m\.d_model \(32\)$"):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3, block_size=32)


# --- one trainer per folder, none without its Snakemake --------------------------------------------------

def test_a_second_trainer_for_the_same_folder_is_refused_in_one_line(tokens_dir, tmp_path):
    import socket
    out = tmp_path / "out"
    first = start(*train_command(tokens_dir, out, steps=100000))
    try:
        wait_for((out / "last.pt").exists, first)
        second = subprocess.run([sys.executable, "-m", "picollm", "--log", str(tmp_path / "second.log"),
                                 *map(str, train_command(tokens_dir, out, steps=100000))], env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
        assert second.stderr.startswith(f"error: {out} is being trained by pid {first.pid} on host "
                                        f"{socket.gethostname()} since ")
        assert f"(lock {out / 'train.lock'}); wait for that job or stop it, then rerun; if that process is gone, " \
               f"delete {out / 'train.lock'}" in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143 and not (out / "train.lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_one_of_another_host_is_not(tokens_dir, tmp_path):
    import socket

    from picollm.errors import PicoError
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    lock = out / "train.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    assert (out / "model.pt").exists() and not lock.exists()
    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "started": "2026-01-01T00:00:00"}))
    with pytest.raises(PicoError, match=rf"^{re.escape(str(out))} is being trained by pid 4242 on host node-17 since "
                                        r"2026-01-01T00:00:00 \(lock .*\); .* if that process is gone, delete "):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    assert lock.exists()  # not ours to remove


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open descriptors through /proc")
@pytest.mark.parametrize("fails", ["_flock", "_holder", "_refusal"])
def test_a_lock_not_taken_leaves_no_descriptor_open(fails, tmp_path, monkeypatch):
    import socket

    from picollm import owner
    from picollm.errors import PicoError

    def fail(fd):
        raise OSError(errno.EIO, "I/O error")

    if fails == "_refusal":  # a holder on another host: refused
        (tmp_path / owner.LOCK).write_text(json.dumps({"host": socket.gethostname() + "-other", "pid": 4242}))
    else:
        monkeypatch.setattr(owner, fails, fail)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(PicoError if fails == "_refusal" else OSError):
        with owner.folder_lock(tmp_path):
            pass
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_training_stops_after_a_checkpoint_when_its_parent_is_gone(tokens_dir, tmp_path):
    parent = subprocess.Popen(["sleep", "600"])  # stands in for the Snakemake that started the job
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out, steps=100000))],
                            env={**ENV, "PICOLLM_PARENT_PID": str(parent.pid)}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_for((out / "last.pt").exists, proc)
        parent.kill()
        _, err = proc.communicate(timeout=120)
    finally:
        parent.kill()
        parent.wait()
        if proc.poll() is None:
            proc.kill()
    stopped = torch_step(out / "last.pt")
    assert proc.returncode == 143 and err.endswith(INTERRUPTED), err[-2000:]
    assert f"the process that started this job (pid {parent.pid}) is gone; stopping" in err
    assert f"stopped at step {stopped}" in err and not (out / "train.lock").exists()


def test_training_stops_after_a_checkpoint_when_its_snakemake_is_killed(tmp_path):
    """kill -9 of Snakemake: its training job checkpoints and stops by itself (it would otherwise run on beside
    the one the rerun starts); `--unlock`, then the same command with --rerun-incomplete resumes it."""
    steps = 3000
    cfg = tiny_offline_config(steps=steps)
    cfg["models"] = {"lstm": cfg["models"]["lstm"]}
    cfg["train"]["checkpoint_interval"] = 10
    path = write_config(tmp_path / "study.yaml", cfg)
    model = tmp_path / "results/tiny/models/lstm/seed7"
    target = ["--cores", "1", "results/tiny/models/lstm/seed7/model.pt", "--configfile", path]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(snakemake_command(tmp_path, *target), stdout=log, stderr=subprocess.STDOUT,
                                 env=local_run_env(), start_new_session=True)
    try:
        wait_for((model / "last.pt").exists, first, timeout=300)
        trainer = json.loads((model / "train.lock").read_text())["pid"]
        first.send_signal(signal.SIGKILL)  # Snakemake alone: its job lives on
        first.wait(timeout=60)
        wait_for(lambda: not (model / "train.lock").exists(), timeout=120)  # it stops by itself
        wait_for(lambda: not alive(trainer), timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    log = (tmp_path / "results/tiny/logs/train/lstm/seed7.log").read_text()
    stopped = torch_step(model / "last.pt")
    assert "is gone; stopping" in log and f"stopped at step {stopped}" in log and 0 < stopped < steps
    assert snakemake(tmp_path, "--unlock", *target).returncode == 0
    rerun = snakemake(tmp_path, *target)
    if rerun.returncode != 0:  # Snakemake asks for it when the job had begun to write its outputs
        assert "IncompleteFilesException" in rerun.stderr and "--rerun-incomplete" in rerun.stderr
        rerun = snakemake(tmp_path, *target, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "results/tiny/logs/train/lstm/seed7.log").read_text()
    assert f"resuming from results/tiny/models/lstm/seed7/last.pt at step {stopped}" in log
    # and on the terminal, so the user sees the finished steps kept, not only in the log
    assert f"resuming from results/tiny/models/lstm/seed7/last.pt at step {stopped}" in rerun.stdout + rerun.stderr
    assert json.loads((model / "summary.json").read_text())["steps"] == steps


def torch_step(path: Path) -> int:
    import torch
    return torch.load(path, weights_only=False)["step"]


# --- a finished training is never trained again --------------------------------------------------------

def test_a_finished_training_whose_outputs_were_deleted_is_restored_not_retrained(tokens_dir, tmp_path):
    """What --rerun-incomplete does after a Ctrl-C that landed as the job ended: delete the outputs, rerun."""
    import torch
    out = tmp_path / "out"
    changes = {"snapshot_steps": [5, 10]}
    first = train("m", TRANSFORMER, {**TRAIN, **changes}, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    weights = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    for name in ("model.pt", "metrics.csv", "summary.json", "layer_health.csv"):
        (out / name).unlink()
    shutil.rmtree(out / "snapshots")
    # with a tracker whose server is down, which a restore never calls (it logs nothing)
    unreachable = {**ENV, "WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out, **changes)),
                           "--loggers", "wandb"], env=unreachable, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{out} finished training before (its outputs are kept in {out / 'finished'}); restored them" in proc.stderr
    assert "train m" not in proc.stderr  # no progress bar: not one step trained
    again = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step10.pt", "step5.pt"]
    assert json.loads(proc.stdout.splitlines()[-1])["final_val_loss"] == first["final_val_loss"]
    assert not (out / "last.pt").exists() and not (out / "snapshots.partial").exists()


def test_a_restored_training_keeps_the_record_and_cost_of_the_job_that_trained(tokens_dir, tmp_path):
    """The restore's record is the training's (its commit, code, seed and cost) with when it was restored, so
    tables/provenance.csv names the code that trained the model and tables/resources.csv what training cost."""
    from picollm.resources import job_usage
    out, record = tmp_path / "out", tmp_path / "record.json"
    command = [sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out)), "--provenance", str(record)]
    assert subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300).returncode == 0
    trained = json.loads(record.read_text())
    assert trained["usage"]["wall_s"] > 0 and "restored" not in trained
    for name in ("model.pt", "metrics.csv", "summary.json", "layer_health.csv"):
        (out / name).unlink()
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "restored them" in proc.stderr, proc.stderr
    restored = json.loads(record.read_text())
    assert {k: v for k, v in restored.items() if k != "restored"} == trained
    assert restored["restored"]["created_utc"] >= trained["created_utc"]
    assert job_usage(record) == {**{k: trained["usage"][k] for k in ("cpu_s", "max_rss_mib", "wall_s")},
                                 "measured_by": "job, restored", "host": trained["host"], "slurm_job": None,
                                 "slurm_mem_mb": None}


def test_a_model_damaged_in_place_is_trained_anew_not_restored_damaged(tokens_dir, tmp_path):
    """finished/ holds a second name of each output, not a copy: bytes written over model.pt damage the kept one
    too. Its recorded sha256 tells, so following the error's advice (delete it, rerun) trains anew."""
    out = tmp_path / "out"
    import torch
    # at the threads the command below runs with: the fused head's plan is timed and kept per thread count, and two
    # plans' sums differ in their last bits
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN["threads"])
    try:
        first = train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    finally:
        torch.set_num_threads(before)
    overwrite_middle(out / "model.pt")
    assert (out / "finished/model.pt").read_bytes() == (out / "model.pt").read_bytes()  # one file, two names
    (out / "model.pt").unlink()
    proc = subprocess.run([sys.executable, "-m", "picollm", *map(str, train_command(tokens_dir, out,
                                                                                     steps=TRAIN["max_steps"]))],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (f"{out} finished training before, but its kept outputs have changed since (model.pt in "
            f"{out / 'finished'}); training it anew") in proc.stderr
    from picollm.models import load_model
    load_model(out / "model.pt")  # whole again
    assert json.loads(proc.stdout.splitlines()[-1])["final_val_loss"] == first["final_val_loss"]


def test_another_config_trains_anew_in_a_folder_that_finished(tokens_dir, tmp_path):
    out = tmp_path / "out"
    train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    summary = train("m", TRANSFORMER, {**TRAIN, "max_steps": 12}, tokens_dir=tokens_dir, out_dir=out, seed=3,
                    block_size=32)
    assert summary["steps"] == 12 and json.loads((out / "finished/summary.json").read_text())["steps"] == 12


def test_a_new_training_that_fails_keeps_the_finished_one(tokens_dir, tmp_path, monkeypatch):
    """finished/ is replaced when a new training ends, not when it starts: one that fails first (a bug, a
    damaged input) leaves the last finished training, restored when its config comes back."""
    from picollm import train as train_module
    out = tmp_path / "out"
    first = train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)

    def fails(*args, **kwargs):
        raise RuntimeError("a bug in the new training")
    monkeypatch.setattr(train_module, "setup", fails)
    with pytest.raises(RuntimeError):
        train("m", TRANSFORMER, {**TRAIN, "max_steps": 12}, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    assert json.loads((out / "finished/summary.json").read_text())["steps"] == first["steps"]
    monkeypatch.undo()
    again = train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    assert again["final_val_loss"] == first["final_val_loss"] and again["steps"] == first["steps"]


def test_an_interruption_while_the_outputs_are_written_resumes_at_the_last_step(tokens_dir, tmp_path, monkeypatch):
    from picollm import train as train_module
    out = tmp_path / "out"
    real = train_module.finish

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("m", TRANSFORMER, TRAIN, tokens_dir=tokens_dir, out_dir=out, seed=3, block_size=32)
    monkeypatch.setattr(train_module, "finish", real)
    assert torch_step(out / "last.pt") == TRAIN["max_steps"] and not (out / "train.lock").exists()


def test_reruns_after_a_late_ctrl_c_and_a_rebuilt_token_file_keep_the_finished_model(tmp_path):
    """Ctrl-C (SIGINT to Snakemake and its job) as training ends, then the README's recovery; then a token file
    damaged, refused at parse time, deleted and rebuilt: the model is restored each time, never trained again."""
    import torch
    steps = 300
    cfg = tiny_offline_config(steps=steps)
    cfg["models"] = {"lstm": cfg["models"]["lstm"]}
    path = write_config(tmp_path / "study.yaml", cfg)
    model = tmp_path / "results/tiny/models/lstm/seed7"
    log = tmp_path / "results/tiny/logs/train/lstm/seed7.log"
    target = ["results/tiny/models/lstm/seed7/model.pt"]
    options = ["--cores", "1", "--configfile", path]
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(snakemake_command(tmp_path, *target, *options), stdout=out, stderr=subprocess.STDOUT,
                                 env=local_run_env(), start_new_session=True, preexec_fn=with_ctrl_c)
    try:
        # finished/ is linked last, after summary.json: a Ctrl-C before it leaves last.pt to resume from instead
        wait_for((model / "finished/identity.json").exists, first, timeout=300)
        os.killpg(first.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches Snakemake and its job alike
        first.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    weights = torch.load(model / "finished/model.pt", weights_only=True)["state_dict"]

    def rerun(*more):
        assert snakemake(tmp_path, "--unlock", *options).returncode == 0
        result = snakemake(tmp_path, *target, *more, *options)
        if result.returncode != 0:  # Snakemake asks for it when it did not see the job end
            assert "IncompleteFilesException" in result.stderr and "--rerun-incomplete" in result.stderr
            result = snakemake(tmp_path, *target, *more, "--rerun-incomplete", *options)
        assert result.returncode == 0, result.stderr[-3000:]
        if "train" in result.stdout + result.stderr and log.exists():  # the job ran: it trained no step again
            said = log.read_text()
            assert "restored them, nothing to train" in said or f"at step {steps}" in said, said[-3000:]
        got = torch.load(model / "model.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(weights[k], got[k]) for k in weights)
        assert json.loads((model / "summary.json").read_text())["steps"] == steps

    rerun()
    tokens = tmp_path / "results/tiny/data/tokens"
    damage(tokens, "truncated")
    refused = snakemake(tmp_path, *target, *options)
    assert refused.returncode == 1 and "error: results/tiny/data/tokens/train.bin is damaged" in refused.stderr
    assert (model / "model.pt").exists()  # nothing downstream touched
    (tokens / "train.bin").unlink()
    log.unlink()
    rerun("results/tiny/data/tokens/train.bin")  # rebuilt: the train job below it runs again
    assert "restored them, nothing to train" in log.read_text()


# --- a run that stopped ends with each stopped job's own line, not under Snakemake's error blocks ---------

def test_ctrl_c_of_a_run_ends_with_each_stopped_jobs_line(tmp_path):
    """Ctrl-C stops Snakemake and both training jobs; the last lines name each job, its checkpoint's step and
    the rerun, below Snakemake's error block of each job; the rerun resumes both."""
    cfg = tiny_offline_config(steps=2000)  # enough that neither ends before both have a checkpoint
    cfg["models"] = {name: cfg["models"][name] for name in ("kgram_mlp", "lstm")}
    path = write_config(tmp_path / "study.yaml", cfg)
    models = [tmp_path / f"results/tiny/models/{run}/seed7" for run in ("kgram_mlp", "lstm")]
    targets = [f"results/tiny/models/{run}/seed7/model.pt" for run in ("kgram_mlp", "lstm")]
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "2", *targets, "--configfile", path),
                                 stdout=subprocess.DEVNULL, stderr=out, env=local_run_env(), start_new_session=True,
                                 preexec_fn=with_ctrl_c)
    try:
        wait_for(lambda: all((m / "last.pt").exists() for m in models), first, timeout=300)
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    said = (tmp_path / "first.log").read_text()
    tail = said[said.rindex("Error in rule"):].splitlines()
    start = tail.index("pico-llm: stopped by Ctrl-C: 2 job(s) did not finish; every finished output is kept.")
    for run, model in zip(("kgram_mlp", "lstm"), models):
        step = torch_step(model / "last.pt")
        assert f"  train/{run}/seed7: interrupted, stopped at step {step}; results/tiny/models/{run}/seed7/last.pt " \
               f"holds it  (results/tiny/logs/train/{run}/seed7.log)" in tail[start + 1:start + 3], said[-3000:]
    assert tail[start + 3] == "pico-llm: rerun the same command to continue (training resumes from its last " \
                              "checkpoint).", said[-3000:]
    rerun = snakemake(tmp_path, "--cores", "2", *targets, "--configfile", path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]


def test_a_second_ctrl_c_while_the_jobs_stop_is_one_line_and_the_run_still_ends_with_its_summary(tmp_path):
    """Ctrl-C twice (impatience): the second lands while Snakemake waits for the training it stopped to save its
    checkpoint. It says so in one line (stopped.STILL_STOPPING) instead of breaking the wait off in Snakemake's
    tracebacks; the run ends as after one Ctrl-C, with its summary, its checkpoint and no lock left."""
    from picollm.stopped import STILL_STOPPING
    cfg = tiny_offline_config(steps=3000)
    cfg["models"] = {"lstm": cfg["models"]["lstm"]}
    path = write_config(tmp_path / "study.yaml", cfg)
    model = tmp_path / "results/tiny/models/lstm/seed7"
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "1", "all", "--configfile", path),
                                 stdout=subprocess.DEVNULL, stderr=out, env=local_run_env(), start_new_session=True,
                                 preexec_fn=with_ctrl_c)
    try:
        wait_for((model / "last.pt").exists, first, timeout=300)
        os.killpg(first.pid, signal.SIGINT)
        time.sleep(0.1)  # Snakemake has begun to cancel its job, which is still saving
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=120) != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    said = (tmp_path / "first.log").read_text()
    assert "Traceback" not in said and STILL_STOPPING in said, said[-3000:]
    step = torch_step(model / "last.pt")
    assert "pico-llm: stopped by Ctrl-C: 1 job(s) did not finish; every finished output is kept." in said
    assert f"  train/lstm/seed7: interrupted, stopped at step {step}; " in said
    locks = tmp_path / ".snakemake" / "locks"
    assert not locks.exists() or not any(locks.iterdir())  # the same command reruns, no --unlock first


def test_a_failed_run_ends_with_each_failed_jobs_error_line(tmp_path):
    """From Snakemake's log of a run: every "Error in rule" block, its job's closing line (a bug's last
    traceback line when it wrote none), and a job without a log named by its rule."""
    from picollm.stopped import summary
    logs = tmp_path / "results/x/logs"
    (logs / "evaluate/lstm").mkdir(parents=True)
    (logs / "evaluate/lstm/seed1.log").write_text("loading\nerror: evaluating lstm gave val_loss nan; ...\n")
    (logs / "sample.log").write_text("Traceback (most recent call last):\n  ...\nValueError: bad\n")
    (logs / "train.log").write_text("train lstm: 100%|...\n{\"steps\": 20}\n")  # stopped from outside
    block = ("Error in rule {rule}:\n    message: None\n    jobid: 3\n    output: a, b\n{log}    shell:\n"
             "        python -m picollm ...\n        (command exited with non-zero exit code)\n")
    (tmp_path / "run.log").write_text("Select jobs to execute...\n" + "".join([
        block.format(rule="evaluate", log=f"    log: {logs}/evaluate/lstm/seed1.log (check log file(s) for error "
                                          f"details)\n"),
        block.format(rule="tables", log=f"    log: {logs}/sample.log\n"),
        block.format(rule="study_config", log=""),
        block.format(rule="train", log=f"    log: {logs}/train.log\n"),
    ]) + "Complete log(s): run.log\n")
    assert summary(tmp_path / "run.log") == [
        "pico-llm: 4 job(s) failed; every finished output is kept.",
        f"  evaluate/lstm/seed1: error: evaluating lstm gave val_loss nan; ...  ({logs}/evaluate/lstm/seed1.log)",
        f"  sample: ValueError: bad  ({logs}/sample.log)",
        "  study_config: see its error block above",
        f"  train: see its error block above  ({logs}/train.log)",
        "pico-llm: fix what each line names, then rerun the same command.",
    ]
    # jobs stopped by a signal that Snakemake itself did not see (it ignored SIGINT) are interrupted all the same
    for log in logs.rglob("*.log"):
        log.write_text("step 5\ninterrupted; rerun to continue\n")
    assert summary(tmp_path / "run.log")[0] == "pico-llm: stopped by a signal: 4 job(s) did not finish; every " \
                                               "finished output is kept."
    # no job stopped (a SIGTERM to Snakemake alone, which waits for its jobs): nothing to fix in any job
    (tmp_path / "run.log").write_text("Select jobs to execute...\nComplete log(s): run.log\n")
    assert summary(tmp_path / "run.log") == []


def test_a_job_killed_or_stopped_as_it_finished_says_so(tmp_path):
    """A training the out-of-memory killer ended writes no line: Snakemake's CalledProcessError above its block
    names the signal. One that wrote its summary finished: Snakemake, stopped then, asks for --rerun-incomplete."""
    from picollm.stopped import summary
    logs = tmp_path / "results/x/logs/train/lstm"
    logs.mkdir(parents=True)
    (logs / "seed1.log").write_text("train lstm:  40%|████      | 40/100\n")
    (logs / "seed2.log").write_text('train lstm: 100%|██████████| 100/100\n{"model": "lstm", "steps": 100}\n')
    block = ("Command 'set -euo pipefail;  python -m picollm train ...' {how}.\nError in rule train:\n"
             "    jobid: 3\n    log: {log} (check log file(s) for error details)\n    shell:\n        python ...\n")
    (tmp_path / "run.log").write_text(
        block.format(how="died with <Signals.SIGKILL: 9>", log=logs / "seed1.log")
        + "Terminating processes on user request, this might take some time.\n"
        + block.format(how="returned non-zero exit status 130", log=logs / "seed2.log"))
    assert summary(tmp_path / "run.log") == [
        "pico-llm: stopped by Ctrl-C: 2 job(s) did not finish; every finished output is kept.",
        "  train/lstm/seed1: killed by SIGKILL (most often the out-of-memory killer: `dmesg` says); a rerun resumes "
        f"a training from its last checkpoint  ({logs / 'seed1.log'})",
        f"  train/lstm/seed2: finished, but stopped before Snakemake saw it end: finished/ keeps it, and the rerun "
        f"restores it  "
        f"({logs / 'seed2.log'})",
        "pico-llm: rerun the same command to continue (training resumes from its last checkpoint); add "
        "--rerun-incomplete where Snakemake asks for it (a finished training is restored, not retrained).",
    ]


def test_a_missing_local_data_file_is_one_line_before_any_job(tmp_path):
    """A `text` source's file that is not there (a clone without ../shared beside it): Snakemake would stop at
    the download job's missing input in a block of its own."""
    cfg = tiny_offline_config()
    cfg["data"]["sources"].append({"kind": "text", "name": "stories", "train_files": ["stories/train.txt"]})
    path = write_config(tmp_path / "study.yaml", cfg)
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", path)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: data file stories/train.txt does not exist (a relative path starts at {tmp_path}); fix the path in "
        f"the study's data.sources (train_files of source 'stories')"), result.stderr[-2000:]
    assert "MissingInputException" not in result.stderr


def test_unlock_names_the_slurm_jobs_still_running_here(tmp_path, monkeypatch):
    """Where the run's node also runs its SLURM jobs (a small cluster, an salloc session), their job steps are
    snakemake processes (`--mode remote`) in this directory: the guard names them as SLURM jobs to wait for or
    scancel, not as a second run to kill; with the jobs of this directory squeue shows, queued ones too (on a real
    cluster the login node sees no job step)."""
    from types import SimpleNamespace

    from picollm import start
    from picollm.errors import PicoError
    from picollm.owner import snakemakes_in

    step = tmp_path / "bin" / "snakemake"  # stands in for the executor's job step
    step.parent.mkdir()
    step.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(120)\n")
    step.chmod(0o755)
    steps = [subprocess.Popen([sys.executable, str(step), "--mode", "remote", "all"], cwd=tmp_path,
                              env={**os.environ, "SLURM_JOB_ID": job}) for job in ("301", "300")]
    squeue = tmp_path / "bin" / "squeue"  # a job still queued (no process anywhere yet), and another user's folder
    squeue.write_text(f"#!/bin/sh\nprintf '302|{tmp_path}\\n9|/elsewhere\\n'\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{squeue.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    try:
        wait_for(lambda: len(snakemakes_in(tmp_path)) == 2, steps[0], timeout=60)
        with pytest.raises(PicoError) as refused:
            start.check_unlock(SimpleNamespace(is_main_process=True), ["snakemake", "--unlock"])
    finally:
        for proc in steps:
            proc.kill()
            proc.wait(timeout=60)
    assert str(refused.value) == ("--unlock while SLURM job(s) 300, 301, 302 of this directory are queued or running "
                                  "would let a new run write the files they write; wait for them to end (squeue --me), "
                                  "or cancel them: scancel 300 301 302; then --unlock, and rerun with "
                                  "--rerun-incomplete")


def test_unlock_is_refused_while_a_snakemake_runs_in_the_directory(tmp_path):
    """--unlock would let a second run write over the running one's files: refused in one line naming it."""
    cfg = tiny_offline_config(steps=3000)
    cfg["models"] = {"lstm": cfg["models"]["lstm"]}
    path = write_config(tmp_path / "study.yaml", cfg)
    locks = tmp_path / ".snakemake" / "locks"
    first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "1", "all", "--configfile", path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=local_run_env(),
                             start_new_session=True)
    try:
        wait_for(lambda: locks.is_dir() and any(locks.iterdir()), first, timeout=300)  # it runs, and holds the lock
        refused = snakemake(tmp_path, "--unlock", "--configfile", path)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
            f"error: --unlock while snakemake (pid {first.pid}) runs in this directory would let two runs write the "
            f"same files; wait for it to end (or stop it: kill {first.pid}); --unlock is for the lock of a snakemake "
            f"that is gone"), refused.stderr[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert snakemake(tmp_path, "--unlock", "--configfile", path).returncode == 0  # gone: its lock is taken


# --- commands run by hand ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, line", [
    (["generate", "{model}", "1 2", "--device", "gpu"], "error: device 'gpu' is none of auto, cpu, cuda (or cuda:N) "
                                                        "and mps"),
    (["figure", "loss_curve", "--config", '{{"experiment": "x"}}', "--inputs", "{model}", "--out", "{tmp}/f.png"],
     "error: no figure is named 'loss_curve'; the figures are attention_heads, grad_norms, layer_health, loss_curves, "
     "lr_schedule, p_sweep, resources, sample_comparison, sample_slide, scaling, snapshots, sweep"),
    (["figure", "loss_curve", "--inputs", "{model}", "--out", "{tmp}/f.png"],  # no --config: the name first
     "error: no figure is named 'loss_curve'; the figures are attention_heads, grad_norms, layer_health, loss_curves, "
     "lr_schedule, p_sweep, resources, sample_comparison, sample_slide, scaling, snapshots, sweep"),
    (["figure", "loss_curves", "--inputs", "m={model}", "--out", "{tmp}/f.png"],
     "error: a figure names its study: give --config '{{\"experiment\": NAME}}', or an --out under "
     "results/<experiment>/"),
    (["figure", "loss_curves", "--inputs", "m={model}", "--out", "{tmp}/results/x/figures/f.png"],
     "error: this takes one file per run and seed, {{run: {{seed: path}}}}, not {{'m': '{model}'}}; give --inputs "
     "that JSON, e.g. --inputs '{{\"lstm\": {{\"1337\": \"results/offline/models/lstm/seed1337/metrics.csv\"}}}}'"),
    (["sample", "--name", "m", "--model-path", "{model}", "--config", "{{}}", "--out", "{tmp}"],
     "error: {tmp} is a folder; give the path of the file to write (a name inside it)"),
    (["figure", "attention_heads", "--inputs", "m={model}", "--out", "{tmp}/results/x/figures/f.png"],
     "error: figure attention_heads draws the attention on a prompt: give --config '{{\"figures\": "
     "{{\"attention_prompt\": \"Once upon a time\"}}}}'"),
    (["figure", "loss_curves", "--inputs", '{{"m": {{"1": "{tmp}/results/x/metrics.csv"}}}}', "--out",
      "{tmp}/results/x/figures/f.png"],
     "error: {tmp}/results/x/metrics.csv does not exist; it is an input of this command, written by an earlier "
     "stage: build it first (snakemake --cores 1 {tmp}/results/x/metrics.csv --configfile <study file>)"),
    (["figure", "loss_curves", "--inputs", '{{"m": {{"1": "{tmp}/metrics.csv"}}}}', "--out",
      "{tmp}/results/x/figures/f.png"],
     "error: {tmp}/metrics.csv does not exist; it is an input of this command: fix the path"),
], ids=["unknown-device", "unknown-figure", "unknown-figure-no-config", "figure-no-study", "figure-inputs-shape",
        "output-a-folder", "attention-no-prompt", "input-not-built", "input-of-no-study"])
def test_a_hand_run_command_with_a_wrong_name_is_one_line(args, line, model_path, tmp_path):
    args = [arg.format(model=model_path, tmp=tmp_path) for arg in args]
    result = subprocess.run([sys.executable, "-m", "picollm", *args], env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == line.format(model=model_path, tmp=tmp_path), \
        result.stderr


def test_a_study_file_given_as_a_stage_config_says_how_to_see_the_json(tmp_path):
    study = ROOT / "config" / "offline.yaml"
    result = subprocess.run([sys.executable, "-m", "picollm", "train", "--config", str(study), "--tokens-dir",
                             str(tmp_path), "--out-dir", str(tmp_path)], env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"picollm train: error: argument --config: takes the job's config keys as JSON, not a file ({study}); "
        f"`snakemake -n -p TARGET --configfile {study}` prints each job's command with its --config")



def test_an_error_line_quotes_the_first_line_of_any_message():
    from picollm.errors import first_line
    assert first_line(RuntimeError("\n  first \nsecond")) == "first"
    assert first_line(RuntimeError("")) == "RuntimeError" and first_line(OSError(), "no message") == "no message"


def test_a_long_broken_json_config_is_one_line(tmp_path):
    broken = '{"models": {"m": {"type": "lstm"}}, "train": {' + '"lr": 0.001, ' * 40  # a lost brace, 500 characters
    result = subprocess.run([sys.executable, "-m", "picollm", "train", "--config", broken, "--tokens-dir",
                             str(tmp_path), "--out-dir", str(tmp_path)], env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("picollm train: error: argument --config: not valid JSON")


def test_only_a_file_the_command_line_names_is_called_an_input_not_built():
    from picollm import cli
    gone = FileNotFoundError(2, "No such file or directory", "results/x")
    assert cli._missing_input(gone, ["--out", "results/x/figures/f.png"]) is None  # a folder above an output
    named = FileNotFoundError(2, "No such file or directory", str(Path("results/x/m.csv").absolute()))
    assert cli._missing_input(named, ["--inputs", '{"lstm": {"1": "results/x/m.csv"}}']).startswith(
        f"{named.filename} does not exist; it is an input of this command")
