"""Smoke tests of the benchmark harness (python -m benchmarks) at tiny sizes: files written, fields present.

No timing assertions: the numbers of a --quick run mean nothing, and timings belong in results/benchmarks.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MACHINE_KEYS = {"cpu_model", "logical_cpus", "torch_threads", "torch", "transformers", "device", "load_average"}
COMMON_KEYS = {"benchmark", "title", "started_utc", "machine", "peak_matmul", "sizes", "results", "targets", "notes",
               "table", "quick"}

pytest.importorskip("transformers")


def run_benchmarks(out: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(REPO / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def check_common(record: dict, name: str) -> None:
    assert COMMON_KEYS <= set(record), COMMON_KEYS - set(record)
    assert record["benchmark"] == name and record["quick"] is True
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True)
    assert record["commit"] == (head.stdout.strip() if head.returncode == 0 else None)  # what the docs date it by
    assert MACHINE_KEYS <= set(record["machine"]), MACHINE_KEYS - set(record["machine"])
    assert record["machine"]["device"] == "cpu"
    assert record["peak_matmul"]["peak_gflops"] > 0
    assert record["sizes"]["reps"] >= 5
    for target in record["targets"]:
        assert {"target", "value", "met"} <= set(target)
    table = record["table"]
    assert all(len(row) == len(table["columns"]) for row in table["rows"])


def test_speed_benchmarks_write_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    run_benchmarks(out, "--only", "train", "kgram", "generation")
    assert sorted(p.name for p in out.iterdir()) == ["benchmarks.md", "generation.json", "kgram.json", "train.json"]

    train = json.loads((out / "train.json").read_text())
    check_common(train, "train")
    for name in ("ours", "hf"):
        row = train["results"][name]
        assert {"tokens_per_s", "mfu", "flops_per_token", "median_s", "samples_s", "retaken"} <= set(row)
        assert len(row["samples_s"]) >= 5 and row["tokens_per_s"] > 0
    assert {"lm_head_matmul", "cross_entropy"} & set(train["profiles"]["ours"]["share"])
    assert "6 * (N_matmul)" in train["flops_formula"]

    kgram = json.loads((out / "kgram.json").read_text())
    check_common(kgram, "kgram")
    assert set(kgram["results"]["small"]) == {"embedding", "onehot", "starter"}
    assert set(kgram["results"]["full"]) == {"embedding", "onehot", "starter_extrapolated"}
    assert kgram["results"]["full"]["starter_extrapolated"]["extrapolated"] is True

    gen = json.loads((out / "generation.json").read_text())
    check_common(gen, "generation")
    assert set(gen["results"]) == {"transformer_cached", "transformer_recompute", "hf_generate_cached",
                                   "lstm_carried", "lstm_recompute"}
    assert all(r["new_tokens"] == gen["sizes"]["gen_new"] for r in gen["results"].values())

    md = (out / "benchmarks.md").read_text()
    for heading in (train["title"], kgram["title"], gen["title"]):
        assert f"## {heading}" in md
    assert "peak fp32 matmul" in md and "| ours (picollm Transformer) |" in md

    # --only refreshes one section (the quickest) and keeps the others in the Markdown
    run_benchmarks(out, "--only", "kgram")
    assert f"## {train['title']}" in (out / "benchmarks.md").read_text()
    assert f"## {gen['title']}" in (out / "benchmarks.md").read_text()


def test_memory_step_reports_peak_rss():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_step", "kgram_embedding", "--quick", "--steps", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["model"] == "kgram_embedding" and record["peak_rss_mib"] >= record["rss_before_steps_mib"] > 0


@pytest.mark.parametrize("native", [True, False])
def test_peak_matmul_times_emulated_bf16_at_a_small_size(monkeypatch, native):
    """Where bf16 is emulated (tens of times slower than fp32), its rate is taken at a small size, and the
    method says so; with native bf16, at the largest, beside oneDNN's fp32."""
    monkeypatch.syspath_prepend(str(REPO))
    import picollm.device
    from benchmarks import common

    monkeypatch.setattr(picollm.device, "native_bf16_cpu", lambda: native)
    monkeypatch.setattr(common, "EMULATED_BF16_N", 32)
    peak = common.peak_matmul((32, 64), reps=1)
    assert set(peak["gflops_by_size"]) == {"32", "64"} and peak["bf16_gflops"] > 0
    assert peak["bf16_n"] == (64 if native else 32)
    assert ("bf16 at n = 32: this CPU has no native bf16" in peak["method"]) != native


def test_the_study_benchmark_cuts_the_default_study_to_a_valid_one(monkeypatch, tmp_path):
    """`--only study` times config/config.yaml cut to a few steps: the cut study passes the config check (its
    snapshots past the cut are dropped), with the local text as its one source."""
    import yaml
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.study import short_study
    from picollm.config import Study, parse

    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert max(full["train"]["snapshot_steps"]) > 30
    cut = parse(Study, short_study(full, 30, tmp_path / "valid.txt"))
    assert cut.train.max_steps == 30 and cut.train.snapshot_steps == [s for s in full["train"]["snapshot_steps"]
                                                                      if s <= 30]
    assert [source.kind for source in cut.data.sources] == ["text"]


@pytest.mark.slow
def test_all_benchmarks_quick(tmp_path):
    out = tmp_path / "bench"
    run_benchmarks(out)
    # every benchmark but gpu, which measures nothing and writes no record on a machine without a CUDA GPU
    names = {"train", "kgram", "generation", "memory", "study", "compact", "tokenize", "budget", "recipe", "vocab",
             "scaling"}
    from benchmarks.common import sizes
    from benchmarks.lm_eval_agreement import unavailable
    names |= set() if unavailable(sizes(True, 2)) else {"lm_eval"}  # where the harness environment is made
    assert {p.stem for p in out.glob("*.json")} == names
    memory = json.loads((out / "memory.json").read_text())
    check_common(memory, "memory")
    assert {r["peak_source"] for r in memory["results"].values()} <= {"VmHWM", "ru_maxrss"}
    study = json.loads((out / "study.json").read_text())
    assert "skipped" in study  # --quick skips the study runs
    compact = json.loads((out / "compact.json").read_text())
    check_common(compact, "compact")
    assert compact["results"]["compact"]["output_vocab"] < compact["results"]["full"]["output_vocab"]


def test_tokenize_benchmark_compares_ours_with_the_library(tmp_path):
    out = tmp_path / "bench"
    run_benchmarks(out, "--only", "tokenize")
    record = json.loads((out / "tokenize.json").read_text())
    check_common(record, "tokenize")
    assert {"gpt2", "bpe:4096", "train_bpe"} <= set(record["results"])
    for name in ("gpt2", "bpe:4096"):
        row = record["results"][name]
        assert row["ours_mb_s"] > 0 and row["library_mb_s"] > 0 and row["peak_rss_mib"] > 0 and row["tokens"] > 0
    assert record["targets"][0]["target"].startswith("our GPT-2 tokenize >= 80%")


def quick_record(tmp_path, name: str, *args: str) -> tuple[dict, dict]:
    """One benchmark's --quick JSON record, checked for the common fields, and its table rows by first cell."""
    out = tmp_path / "bench"
    run_benchmarks(out, "--only", name, *args)
    record = json.loads((out / f"{name}.json").read_text())
    check_common(record, name)
    return record, {row[0]: row for row in record["table"]["rows"]}


def test_budget_levers_change_the_model_or_the_trainer_on_top_of_the_previous_default():
    from benchmarks.budget import BASE, levers, merge
    gelu = merge(BASE, levers(4096, quick=False)["gelu"])
    assert gelu["model"] == {"mlp": "gelu"} and gelu["train"] == BASE["train"] and BASE["model"] == {"mlp": "silu"}
    both = merge(gelu, levers(4096, quick=False)["muon"])
    assert both["model"] == {"mlp": "gelu"} and both["train"] == {**BASE["train"], "optimizer": "muon"}


@pytest.mark.slow  # eight recipes, each in its own process
def test_budget_benchmark_ranks_recipes_against_hugging_face(tmp_path):
    record, rows = quick_record(tmp_path, "budget")
    assert {"hf GPT2LMHeadModel + AdamW", "previous default", "+ muon", "+ bf16 autocast", "+ gelu",
            "all winners"} <= set(rows)
    assert any(name.startswith("+ bpe:") for name in rows)
    for name, result in record["results"].items():
        assert 0 < result["bpb"] < 20 and result["steps"] >= 1, name
        if name != "hf GPT2LMHeadModel + AdamW":  # train.max_minutes: the budget (3 s with --quick) is spent
            assert 3.0 <= result["train_wall_s"] < 3.0 + 30, name
    hf_bpb = record["results"]["hf GPT2LMHeadModel + AdamW"]["bpb"]
    assert rows["previous default"][-1] == f"{record['results']['previous default']['bpb'] / hf_bpb:.3f}"
    assert record["targets"][0]["target"] == "best recipe's bpb <= 0.8 x the HF row's"
    assert set(record["winners"]) <= {"bpe:512 vocabulary", "muon", "bf16 autocast", "gelu"}


@pytest.mark.slow  # nine recipes, 20 steps each, in their own processes
def test_recipe_benchmark_pairs_each_change_with_the_defaults(tmp_path):
    record, rows = quick_record(tmp_path, "recipe", "--first-seed", "1400")
    assert {"pico defaults", "nanoGPT-style", "+ beta2 0.95", "+ layernorm", "+ bias", "+ silu"} <= set(rows)
    for name, result in record["results"].items():
        assert result["val_loss"]["n"] == 1 and 0 < result["val_loss"]["mean"] < 20, name
        assert list(result["seeds"]) == ["1400"], name  # JSON keys
        assert (result["vs_baseline"] is None) == (name == "pico defaults"), name
    assert record["targets"][0]["target"].startswith("pico defaults do not lose to nanoGPT-style")


def test_vocab_report_pairs_the_vocabularies_by_seed():
    from benchmarks.vocab import report
    runs = {"lstm": {"gpt2 compact": {s: {"bpb": 1.40 + d, "output_vocab": 9000} for s, d in ((1, 0.0), (2, 0.01))},
                     "bpe:4096 full": {s: {"bpb": 1.38 + d, "output_vocab": 4096} for s, d in ((1, 0.0), (2, 0.012))}}}
    out = report(runs, ["gpt2 compact", "bpe:4096 full"], [1, 2], 600)
    diff = out["results"]["lstm"]["vs_gpt2_compact"]
    assert diff["mean_diff"] == pytest.approx(-0.019) and out["table"]["rows"][0][-2:] == [9000, 4096]


def test_scaling_record_says_each_crossing_with_its_interval(tmp_path):
    """The record's table reads tables/scaling.csv back from disk, where a single crossing is a number."""
    import pandas as pd
    from benchmarks.scaling import fit_table
    base = {"runs": 2, "fit_points": 6, "fitted": False, "seeds": 2}
    lstm_transformer = {"at_flops": "2.7e+11 3.4e+11", "ci_low": 1.2e11, "ci_high": 6e11, "same_order": 0.87}
    kgram_transformer = {"at_flops": "1e+10", "ci_low": float("nan"), "ci_high": float("nan"), "same_order": 0.4}
    pd.DataFrame([
        {**base, "type": "lstm", **{f"crosses_transformer_{k}": v for k, v in lstm_transformer.items()},
         "crosses_kgram_mlp_at_flops": ""},
        {**base, "type": "transformer", **{f"crosses_lstm_{k}": v for k, v in lstm_transformer.items()},
         **{f"crosses_kgram_mlp_{k}": v for k, v in kgram_transformer.items()}},
        {**base, "type": "kgram_mlp", **{f"crosses_transformer_{k}": v for k, v in kgram_transformer.items()},
         "crosses_lstm_at_flops": ""},
    ]).to_csv(tmp_path / "scaling.csv", index=False)
    said = {row[0]: row[-1] for row in fit_table(pd.read_csv(tmp_path / "scaling.csv"))["rows"]}
    assert said["lstm"] == ("transformer at 2.7e+11 and 3.4e+11 FLOPs (the last's 95% CI 1.2e+11 to 6e+11; "
                            "the same type ends ahead in 87% of seed redraws)")
    parts = [said["lstm"].replace("transformer at", "lstm at"),
             "kgram_mlp at 1e+10 FLOPs (the same type ends ahead in 40% of seed redraws)"]
    assert said["transformer"] in ("; ".join(parts), "; ".join(parts[::-1]))  # in the CSV's column order
    assert said["kgram_mlp"] == "transformer at 1e+10 FLOPs (the same type ends ahead in 40% of seed redraws)"


def test_lm_eval_without_the_harness_environment_says_what_makes_it_and_writes_nothing(tmp_path, monkeypatch):
    """Not a failure, like the gpu benchmark without a GPU: one line naming what is missing and the command that
    makes it (the harness environment, where the local text and the GPT-2 files are there)."""
    from benchmarks.lm_eval_agreement import gpt2_ready, make_venv_command
    from conftest import TINYSTORIES_TRAIN, TINYSTORIES_VALID
    venv = tmp_path / "no-harness-venv"
    monkeypatch.setenv("PICOLLM_LMEVAL_VENV", str(venv))
    out = tmp_path / "bench"
    proc = run_benchmarks(out, "--only", "lm_eval")
    line, = proc.stdout.strip().splitlines()
    assert line.startswith("lm_eval: skipped, ") and not out.exists()
    if TINYSTORIES_TRAIN.is_file() and TINYSTORIES_VALID.is_file() and gpt2_ready():
        assert line == (f"lm_eval: skipped, no lm-evaluation-harness environment at {venv} (PICOLLM_LMEVAL_VENV, "
                        f"else .lmeval-venv); make it with: {make_venv_command(venv)}")
        assert make_venv_command(venv).endswith(f"{venv}/bin/pip install -r tests/lm-eval-requirements.txt")


@pytest.mark.slow  # trains, exports and scores a model, then lm_eval three times
def test_lm_eval_benchmark_scores_one_model_both_ways_and_with_the_harness(tmp_path):
    from benchmarks.common import sizes
    from benchmarks.lm_eval_agreement import AGREED, harness_python, unavailable
    harness_python(create=True)  # as tests/test_lm_eval.py makes it
    if unavailable(sizes(True, 2)):
        pytest.skip(unavailable(sizes(True, 2))[0])
    record, rows = quick_record(tmp_path, "lm_eval")
    assert set(rows) == {"`evaluate`, `scoring: windows`", "`evaluate`, `scoring: per_document`",
                         f"`lm_eval`, `{AGREED}`", "`lm_eval`, `add_bos_token=False` (default logits cache)",
                         "`lm_eval`, `logits_cache=False` (two end-of-text tokens before each document)"}
    results = record["results"]
    per_document, windows = results["evaluate"]["per_document"], results["evaluate"]["windows"]
    assert per_document["val_bytes"] == results["bytes"] > windows["val_bytes"]  # windows: not the first token's
    assert per_document["val_tokens_scored"] < windows["val_tokens_scored"]  # end-of-text tokens
    assert {r["documents"] for r in results["lm_eval"].values()} == {results["documents"]}
    assert record["targets"][0]["met"] and results["agreement"] <= 1e-4
    assert rows["`evaluate`, `scoring: per_document`"][1] == f"{per_document['bpb']:.6f}"


GPU_CHECKS = {"train_fp32_eager", "train_bf16_eager", "train_bf16_compile", "loss_curves_fp32_vs_bf16",
              "greedy_cpu_vs_cpu", "eval_cpu_vs_cpu", "resume_exact", "torchrun_1_device"}


def test_gpu_check_runs_every_check_on_the_cpu(tmp_path):
    """The GPU check's harness at tiny sizes (--quick --device cpu): every check runs through the code it runs on a
    GPU (child processes, SIGTERM and resume, torchrun with gloo) and passes, since the CPU is deterministic."""
    from picollm.device import native_bf16_cpu
    out = tmp_path / "bench"
    proc = run_benchmarks(out, "--only", "gpu", "--device", "cpu")
    record = json.loads((out / "gpu.json").read_text())
    check_common(record, "gpu")
    assert record["measured"] is True and record["device"] == "cpu" and record["gpu"] is None
    results = record["results"]
    if not native_bf16_cpu():  # fp32 only: no bf16 rows, and the curve check says why it was skipped
        assert results.pop("loss_curves_fp32_vs_bf16")["skipped"]
        assert set(results) == {n.replace("bf16", "fp32") for n in GPU_CHECKS if n != "loss_curves_fp32_vs_bf16"}
    else:
        assert set(results) == GPU_CHECKS
    for name, r in results.items():
        assert r["pass"] is True, (name, r)
        assert f"  {name} " in proc.stdout  # one line per check
        assert {"criterion", "display", "check_wall_s"} <= set(r)
    for name in (n for n in results if n.startswith("train_")):
        assert results[name]["tokens_per_s"] > 0 and results[name]["peak_mib"] > 0
        assert results[name]["mfu"] is None  # no GPU peak on a CPU
    assert results["train_bf16_compile" if native_bf16_cpu() else "train_fp32_compile"]["compile_s"] is not None
    if native_bf16_cpu():
        assert 0 <= results["loss_curves_fp32_vs_bf16"]["mean_abs_diff"] < 0.05
    assert results["greedy_cpu_vs_cpu"]["identical"] and results["greedy_cpu_vs_cpu"]["new_tokens"] > 0
    assert results["eval_cpu_vs_cpu"]["relative_diff"] == 0 and results["eval_cpu_vs_cpu"]["bpb"]["cpu"] > 0
    assert results["resume_exact"]["resumed_at"] == record["plan"]["stop_at"] and results["resume_exact"]["bitwise"]
    torchrun = results["torchrun_1_device"]
    assert torchrun["backend"] == "gloo" and torchrun["loss_module"] == "DistributedDataParallel" and torchrun["bitwise"]
    assert record["extrapolation"]["total_s"] > 0 and not record["errors"]
    assert record["skipped"] == ([] if native_bf16_cpu() else ["loss_curves_fp32_vs_bf16"])
    assert "gpu.yaml wall time (estimate)" in proc.stdout
    assert f"## {record['title']}" in (out / "benchmarks.md").read_text()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without a CUDA GPU")
def test_gpu_check_without_a_gpu_says_so_and_writes_nothing(tmp_path):
    from benchmarks.gpu import NO_GPU
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args, rc in (([], 0), (["--device", "cuda"], 1), (["--device", "cpu"], 1)):  # cpu: only with --quick
        proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "gpu", "--out", str(out), *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == rc, proc.stderr[-2000:]
        assert len(proc.stdout.strip().splitlines()) == 1 and not proc.stderr.strip(), (proc.stdout, proc.stderr)
        assert proc.stdout.strip() == NO_GPU if not args else proc.stdout.startswith("gpu: ")
    assert not out.exists()  # no JSON, no Markdown: a gpu.json measured elsewhere would stay as it is
    # the prepared one-shot script takes the same path once its installation is skipped
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, capture_output=True, text=True,
                          env={**env, "PICOLLM_SKIP_INSTALL": "1", "PYTHON": sys.executable, "OUT": str(out)},
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == NO_GPU, proc.stderr[-2000:]
    assert not list(out.glob("*.json"))


def wheel_of_installed(package: str, dest: Path) -> Path:
    """A pure-Python wheel of an installed package, built from its files here (no index needed)."""
    import importlib.metadata
    import zipfile
    dist = importlib.metadata.distribution(package)
    name, version = dist.metadata["Name"].replace("-", "_"), dist.version
    info = f"{name}-{version}.dist-info"
    source = Path(__import__(package).__file__).parent
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for file in source.rglob("*.py"):
            whl.write(file, f"{package}/{file.relative_to(source)}")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without a CUDA GPU")
def test_gpu_check_names_a_missing_package_and_installs_wheels_offline(tmp_path):
    """A node's own Python without one of pico-llm's packages: gpu_check.sh says so in one line before any check;
    with WHEELS=<folder> it installs that folder's wheels (no index) onto PYTHONPATH and runs."""
    from benchmarks.gpu import NO_GPU
    blocked = tmp_path / "blocked"  # first on PYTHONPATH: annotated_types (which pydantic imports) is "not installed"
    (blocked / "annotated_types").mkdir(parents=True)
    (blocked / "annotated_types" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'annotated_types'\", name='annotated_types')\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel_of_installed("annotated_types", wheels)
    env = {**os.environ, "PYTHONPATH": str(blocked), "PICOLLM_SKIP_INSTALL": "1", "PYTHON": sys.executable,
           "OUT": str(tmp_path / "bench"), "TMPDIR": str(tmp_path)}
    script = ["bash", str(REPO / "benchmarks" / "gpu_check.sh")]
    proc = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not proc.stdout.strip(), (proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines() == [
        f"gpu_check: {sys.executable} cannot run the check: ModuleNotFoundError: No module named 'annotated_types'; "
        "install pico-llm's packages (pip install -e .), or offline pass WHEELS=<folder> (docs/gpu.md)"]
    proc = subprocess.run(script, cwd=REPO, env={**env, "WHEELS": str(wheels)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == NO_GPU, proc.stderr[-2000:]
    assert (tmp_path / "picollm-gpu-site" / "annotated_types" / "__init__.py").exists()


def test_gpu_peak_table_matches_device_names():
    from benchmarks.gpu import peak_for
    assert peak_for("NVIDIA H100 80GB HBM3")["tflops"] == 989.4  # the SXM part
    assert peak_for("NVIDIA H100 PCIe")["tflops"] == 756.0
    assert peak_for("NVIDIA H200")["matched"] == "H200 / GH200"
    assert peak_for("NVIDIA A100-SXM4-80GB")["tflops"] == peak_for("NVIDIA A100 80GB PCIe")["tflops"] == 312.0
    assert [peak_for(f"NVIDIA {n}")["matched"] for n in ("L40S", "L40", "L4", "A10")] == ["L40S", "L40", "L4", "A10"]
    assert peak_for("NVIDIA GeForce RTX 4090")["tflops"] == 165.2
    assert peak_for("Tesla V100-SXM2-16GB")["dtype"] == "fp16"
    assert peak_for("NVIDIA A10G") is None and peak_for("Some Future GPU") is None  # MFU null, with a note
