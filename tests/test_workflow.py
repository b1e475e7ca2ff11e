"""End-to-end Snakemake runs on tiny configs: every output, one figure on its own, selective reruns,
determinism across runs, one-line config errors, and the lock against concurrent runs."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from conftest import (ROOT, TINYSTORIES_TRAIN, TINYSTORIES_VALID, local_run_env, needs_gpt2, needs_tinystories,
                      snakemake, snakemake_command, tiny_offline_config, write_config)
from picollm import tables
from test_report import report_results, result_text, shown_config, table_rows, workflow_description

BACKBONE_OUTPUTS = [
    "data/raw/3seqs/train.txt", "data/raw/3seqs/val.txt", "data/tokens/train.bin", "data/tokens/val.bin",
    "data/tokens/meta.json", "tables/samples.csv", "tables/samples.md", "tables/models.md",
    "figures/loss_curves.png", "figures/sample_comparison.png", "figures/attention_heads.png",
    "logs/tokenize.log", "logs/download/3seqs.log",
]
PER_MODEL = ["models/{m}/seed7/model.pt", "models/{m}/seed7/metrics.csv", "models/{m}/seed7/summary.json", "samples/{m}/seed7.jsonl",
             "logs/train/{m}/seed7.log", "logs/sample/{m}/seed7.log"]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("offline")
    cfg = write_config(work / "study.yaml", tiny_offline_config())
    result = snakemake(work, "--cores", "2", "all", "--configfile", str(cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    return work, cfg


def test_offline_study_produces_every_output(offline_run):
    work, _ = offline_run
    res = work / "results" / "tiny"
    for path in BACKBONE_OUTPUTS + [p.format(m=m) for p in PER_MODEL for m in ("kgram_mlp", "lstm", "transformer")]:
        assert (res / path).is_file() and (res / path).stat().st_size > 0, path
    meta = json.loads((res / "data/tokens/meta.json").read_text())
    assert meta["tokenizer"] == "byte" and meta["dtype"] == "uint16" and meta["raw_sha256"]
    samples = pd.read_csv(res / "tables/samples.csv", keep_default_na=False)
    # 3 models x 2 prompts x (greedy once + 2 p values x 2 samples)
    assert len(samples) == 3 * 2 * (1 + 2 * 2)
    assert set(samples["decoding"]) == {"greedy", "p=0.9", "p=1"}
    record = json.loads((res / "samples/lstm/seed7.jsonl").read_text().splitlines()[0])
    assert {"prompt", "decoding", "seed", "text", "new_tokens", "ended"} <= set(record)
    sampling = pd.read_csv(res / "eval/sampling.csv")
    reference = sampling[sampling["decoding"] == "reference"]
    # real validation stories after the runs: one draw, as many as a nucleus decoding's samples (2 prompts x 2)
    assert list(reference["run"]) == ["reference"] and sampling.index[-1] == reference.index[0]
    assert reference["samples"].item() == 4 and 0 < reference["mean_tokens"].item() <= 12
    assert reference[["distinct_2", "rep_4", "ended_share", "mean_words"]].notna().all(axis=None)
    assert sampling["ended_share"].between(0, 1).all()
    assert sampling["english_word_share"].isna().all()  # 3seqs numbers: not applicable
    # 3seqs repeats most sequences: eval.md says how many validation ones training also holds
    assert re.search(r"appear word for word in the training split: 3seqs \d+ of 30 ", (res / "tables/eval.md").read_text())
    models_md = (res / "tables/models.md").read_text()
    assert all(m in models_md for m in ("kgram_mlp", "lstm", "transformer"))
    for m in ("kgram_mlp", "lstm", "transformer"):
        metrics = pd.read_csv(res / f"models/{m}/seed7/metrics.csv")
        assert {"step", "tokens_seen", "train_loss", "val_loss", "lr", "elapsed_s"} <= set(metrics.columns)
        prov = json.loads((res / f"provenance/train/{m}/seed7.json").read_text())
        assert prov["seed"] == 7 and prov["versions"]["torch"] and prov["inputs"]
        assert f"results/tiny/models/{m}/seed7/model.pt" in prov["outputs"] and prov["threads"] >= 1
    # every job's record names the files it wrote: a table's row leads to its commit through provenance.csv
    for record in (res / "provenance").rglob("*.json"):
        assert record.name == "study.json" or json.loads(record.read_text())["outputs"], record
    written = pd.read_csv(res / "tables/provenance.csv")["outputs"]
    assert written.str.contains("tables/eval.csv").sum() == 1 and written.str.contains("tokens/train.bin").sum() == 1
    assert "train transformer" in (res / "logs/train/transformer/seed7.log").read_text()  # the progress bar


def test_readme_study_block_is_generated_from_the_run(offline_run, monkeypatch):
    """python -m benchmarks.readme_study record: the README's table is the run's eval.csv (best bits per byte
    first) and compare.csv (each pair said once), and its sentence names the run the docs' benchmarks page finds."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import readme_study
    from test_docs import load_hooks

    work, cfg = offline_run
    res = work / "results" / "tiny"
    (work / "run.json").write_text(json.dumps({
        "config": "config/offline.yaml", "cores": 2, "started_utc": "2026-01-02T03:04:05+00:00", "wall_s": 90.0,
        "other_processes_cores": 0.5, "command": "snakemake --cores 2 all --configfile config/offline.yaml",
        "machine": {"cpu_model": "CPU X", "logical_cpus": 2, "cpu_flags": ["avx512_bf16"]}}))
    record = readme_study.record(work)
    evals = pd.read_csv(res / "tables/eval.csv").sort_values("bpb_mean")
    rows = record["table"]["rows"]
    assert [r[0] for r in rows] == list(evals["run"]) and [r[1] for r in rows] == [f"{p:,}" for p in evals["params"]]
    assert [r[2] for r in rows] == [f"{f:.2g}" for f in evals["train_flops"]]  # equal steps, not equal compute
    cells = {r[0]: r[-1] for r in rows}
    order = list(evals["run"])
    for _, pair in pd.read_csv(res / "tables/compare.csv").iterrows():
        first, second = sorted((pair["a"], pair["b"]), key=order.index)  # said on the better row only
        words = "within noise of" if pair["verdict"] == "within noise" else "than"
        assert second in cells[first].split(words, 1)[-1] and first not in cells[second], (pair.to_dict(), cells)
    meta = json.loads((res / "data/tokens/meta.json").read_text())
    assert record["data"]["train_tokens"] == meta["splits"]["train"]["tokens"] and record["trainings"] == 3
    assert record["commit"] and record["precision"] in ("fp32", "bf16")
    block = readme_study.block(record)
    assert block.startswith(readme_study.BEGIN) and block.endswith(readme_study.END)
    assert "took 1.5 minutes of wall time, while other processes used 0.5 of the 2 cores" in block
    readme = work / "README.md"
    hooks = load_hooks()
    readme.write_text(f"# x\n\n## {hooks.README_STUDY_SECTION}\n\n{block}\n\n## Next\n")
    assert hooks.readme_study_run(readme) == {"config": "config/offline.yaml", "date": "2026-01-02",
                                                     "commit": record["commit"]}


def test_nothing_to_do_then_one_figure_alone(offline_run):
    work, cfg = offline_run
    again = snakemake(work, "-n", "--cores", "1", "all", "--configfile", str(cfg))
    assert "Nothing to be done" in again.stdout + again.stderr
    figure = work / "results/tiny/figures/loss_curves.png"
    figure.unlink()
    aside = work / "results/tiny/models/lstm/seed7/last.0123456789ab.pt"  # another config's, set aside
    aside.write_bytes(b"x" * 2000)
    rebuilt = snakemake(work, "--cores", "1", str(figure.relative_to(work)), "--configfile", str(cfg))
    aside.unlink()
    assert rebuilt.returncode == 0 and figure.is_file()
    assert "rule figure_loss_curves" in rebuilt.stderr + rebuilt.stdout
    assert "rule train" not in rebuilt.stderr + rebuilt.stdout
    assert ("pico-llm: 1 resume point is left in results/tiny/models (2 KB): 1 of another config, set aside (a run "
            "of its config resumes from it): lstm/seed7/last.0123456789ab.pt; delete those") in rebuilt.stderr


def test_same_config_same_numbers(offline_run, tmp_path):
    work, cfg = offline_run
    # a second build of what is compared below (tokens, trainings, samples and their tables), in another folder
    targets = ["results/tiny/tables/samples.csv", "results/tiny/tables/samples.md"]
    result = snakemake(tmp_path, "--cores", "2", *targets, "--configfile", str(cfg))
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = work / "results/tiny", tmp_path / "results/tiny"
    for m in ("kgram_mlp", "lstm", "transformer"):
        pd.testing.assert_frame_equal(pd.read_csv(a / f"models/{m}/seed7/metrics.csv").drop(columns="elapsed_s"),
                                      pd.read_csv(b / f"models/{m}/seed7/metrics.csv").drop(columns="elapsed_s"))
        assert (a / f"samples/{m}/seed7.jsonl").read_bytes() == (b / f"samples/{m}/seed7.jsonl").read_bytes()
    for table in ("samples.csv", "samples.md"):
        assert (a / "tables" / table).read_bytes() == (b / "tables" / table).read_bytes()
    assert (a / "data/tokens/train.bin").read_bytes() == (b / "data/tokens/train.bin").read_bytes()
    # their records say so: the same content hashes for the same tokens and weights, though meta.json and
    # model.pt, which embed when and where they were made, differ byte for byte
    for record in ("train/lstm/seed7.json", "sample/transformer/seed7.json"):
        held = [json.loads((r / "provenance" / record).read_text())["content"] for r in (a, b)]
        assert list(held[0].values()) == list(held[1].values()) and len(held[0]) == 1, record


def test_bad_config_key_stops_with_one_line(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", {**tiny_offline_config(), "lerning_rate": 0.1})
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(cfg))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    # a study file under the working directory is named from it, as typed; one elsewhere by its whole path
    assert lines == ["config error: bad.yaml: unknown config key 'lerning_rate'; allowed here: base, block_size, compact_vocab, "
                     "data, data_seed, device, evaluate, experiment, figures, models, replace, sampling, seed, seeds, "
                     "sweep, tokenizer, train"]
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, "-n", "--cores", "1", "all", "--configfile", str(cfg))
    assert f"config error: {cfg}: unknown config key 'lerning_rate'" in result.stderr


def test_config_override_on_the_command_line(tmp_path):
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config())
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(cfg), "--config", "experiment=other")
    assert result.returncode == 0 and "results/other/" in result.stdout


def test_default_config_used_without_configfile():
    result = snakemake(ROOT, "-n", "--cores", "1", "all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "results/tinystories/models/transformer/seed1337/model.pt" in result.stdout


def test_lint_and_format_are_clean():
    result = snakemake(ROOT, "--lint", "--configfile", str(ROOT / "config/offline.yaml"))
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout[-3000:]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(ROOT / "workflow")],
                         capture_output=True, text=True, timeout=120)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_every_rule_reruns_when_the_code_of_its_command_changes():
    """Each rule running `python -m picollm COMMAND` has the code identity of that command's stage as a param
    (jobs.code and its kin), so an edit of the command's module reruns the rule's jobs."""
    commands = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            rule = re.match(r"\s*rule (\w+):", block)
            command = re.search(r"python -m picollm --log \{log(?::q)?\} ([\w-]+)", block)
            if rule and command:
                stage = re.search(r"jobs\.(?:code|model_code|types_code)\(\"(\w+)\"", block)
                commands[rule.group(1)] = (command.group(1).replace("-", "_"), stage and stage.group(1))
    assert len(commands) >= 15 and {"train", "provenance_table", "report"} <= commands.keys()
    assert {rule: pair for rule, pair in commands.items() if pair[0] != pair[1]} == {}


def test_second_concurrent_run_is_refused(tmp_path):
    """While one run trains, a second run on the same directory is refused and the first finishes intact."""
    steps = 600
    slow = tiny_offline_config(steps=steps)
    slow["models"] = {"lstm": slow["models"]["lstm"]}
    cfg = write_config(tmp_path / "slow.yaml", slow)
    target = "results/tiny/models/lstm/seed7/model.pt"  # the training alone: the lock is the whole point
    # output to a file (an unread pipe would fill and block it); its own session, so it can be stopped whole
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "1", target, "--configfile", cfg), stdout=log,
                                 stderr=subprocess.STDOUT, env=local_run_env(), start_new_session=True)
    try:
        # wait until the first run holds the lock and is training, then freeze it there (SIGSTOP to its whole
        # process group) for as long as the refused runs take, however slow the machine
        train_log = tmp_path / "results/tiny/logs/train/lstm/seed7.log"
        deadline = time.time() + 120
        while not train_log.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert train_log.exists() and first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGSTOP)
        summary = tmp_path / "results/tiny/models/lstm/seed7/summary.json"
        try:
            assert not summary.exists(), "the first run trained to the end before it was stopped; give it more steps"
            # Snakemake checks for incomplete outputs before it takes the lock, so depending on when the running
            # job marked its outputs, a plain rerun names them as incomplete or says the directory is locked; the
            # flag the first message suggests, --rerun-incomplete, cannot touch the running job's files either:
            # the lock refuses it.
            with ThreadPoolExecutor(2) as pool:
                second, third = pool.map(
                    lambda extra: snakemake(tmp_path, "--cores", "1", target, "--configfile", str(cfg), *extra),
                    [(), ("--rerun-incomplete",)])
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        said = second.stderr + second.stdout
        assert second.returncode != 0, said[-3000:]
        assert "cannot be locked" in said or ("IncompleteFilesException" in said and "models/lstm/seed7/model.pt" in said)
        said = third.stderr + third.stdout
        assert third.returncode != 0 and "cannot be locked" in said, said[-3000:]
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
    # nothing corrupted: the first run's outputs are complete and up to date
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", target, "--configfile", str(cfg)).stdout
    assert json.loads(summary.read_text())["steps"] == steps


@needs_gpt2
@needs_tinystories
def test_tinystories_text_with_gpt2(tmp_path):
    cfg = tiny_offline_config("ts", steps=30, tokenizer="gpt2", block_size=32)
    cfg["data"] = {"sources": [{"kind": "text", "name": "tinystories", "train_files": [str(TINYSTORIES_TRAIN)],
                                "val_files": [str(TINYSTORIES_VALID)], "max_documents": 300}]}
    cfg["sampling"]["prompts"] = ["Once upon a time"]
    cfg["evaluate"] = {"max_tokens": 16384}  # a slice of the validation split
    cfg["compact_vocab"] = True  # as config/config.yaml: the head over the ids seen in training, losses over all 50257
    path = write_config(tmp_path / "ts.yaml", cfg)
    # what GPT-2 tokens on real stories change: training, evaluation, sampling (the study's other outputs read
    # these alike whatever the tokenizer, and test_offline_study_produces_every_output builds them all)
    targets = ["results/ts/figures/loss_curves.png", "results/ts/eval/sampling.csv"]
    result = snakemake(tmp_path, "--cores", "2", *targets, "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    res = tmp_path / "results/ts"
    meta = json.loads((res / "data/tokens/meta.json").read_text())
    assert meta["vocab_size"] == 50257 and meta["splits"]["train"]["sources"]["tinystories"]["documents"] == 300
    for m in ("kgram_mlp", "lstm", "transformer"):
        val = pd.read_csv(res / f"models/{m}/seed7/metrics.csv")["val_loss"].dropna()
        assert val.iloc[-1] < val.iloc[0]
        summary = json.loads((res / f"models/{m}/seed7/summary.json").read_text())
        assert summary["output_vocab"] == len(meta["train_vocab"]) + 1 < 50257  # + the row every unseen id shares
        assert json.loads((res / f"eval/{m}/seed7.json").read_text())["val_loss"] > 0
    assert (res / "figures/loss_curves.png").is_file()
    sampling = pd.read_csv(res / "eval/sampling.csv").set_index("run")
    # English text: real stories are nearly all dictionary words (names aside), and the samples' share is measured
    assert sampling.loc["reference", "english_word_share"] > 0.9
    assert sampling.drop("reference")["english_word_share"].between(0, 1).any()


def test_the_study_benchmark_extrapolates_from_every_run_and_seed(offline_run, tmp_path, monkeypatch):
    """`python -m benchmarks --only study` times a study cut short and extrapolates from the trainer's own outputs
    (models/<run>/seed<k>/): each run's step and validation seconds, and the seconds a longer study would add."""
    import yaml
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.study import extrapolate
    from picollm.config import Study, parse

    work, path = offline_run
    cfg = yaml.safe_load(path.read_text())
    steps = cfg["train"]["max_steps"]
    longer = parse(Study, {**cfg, "train": {**cfg["train"], "max_steps": 10 * steps}})
    models, extra = extrapolate(longer, work / "results" / "tiny", steps, tmp_path)
    assert set(models) == {"kgram_mlp", "lstm", "transformer"}
    for run in models.values():
        assert run["trainings"] == 1 and run["step_s"] > 0 and run["eval_s"] >= 0 and run["checkpoint_s"] > 0
        assert run["validations"] == 10 * steps // cfg["train"]["eval_interval"] + 1
        # the steps left, and more: the validations and checkpoints left (each value to 4 significant digits)
        assert run["train_full_s"] > run["extrapolated_extra_s"] > 9 * steps * run["step_s"] * 0.999
    assert extra == pytest.approx(sum(run["extrapolated_extra_s"] for run in models.values()), rel=1e-3)


def test_failed_job_keeps_earlier_outputs(offline_run, tmp_path):
    """A bad data file fails its job with the one-line error in the log; outputs made before stay."""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    work = tmp_path / "w"
    shutil.copytree(offline_run[0] / "results", work / "results")
    cfg = tiny_offline_config()
    cfg["data"]["sources"].append({"kind": "text", "name": "broken", "train_files": [str(bad)]})
    path = write_config(tmp_path / "bad.yaml", cfg)
    before = sorted(p.relative_to(work) for p in (work / "results").rglob("*") if p.is_file())
    result = snakemake(work, "--cores", "1", "all", "--configfile", str(path))
    assert result.returncode != 0
    log = (work / "results/tiny/logs/download/broken.log").read_text()
    assert "error: data file" in log and "not UTF-8: invalid byte at offset 10" in log
    # the job's own one-line error reaches the terminal, not only its log
    assert "error: data file" in result.stderr and "not UTF-8: invalid byte at offset 10" in result.stderr
    # and again below Snakemake's error block, named by its log (picollm.stopped)
    tail = result.stderr[result.stderr.rindex("Error in rule"):]
    assert "pico-llm: 1 job(s) failed; every finished output is kept.\n  download/broken: error: data file" in tail
    after = {p.relative_to(work) for p in (work / "results").rglob("*") if p.is_file()}
    assert set(before) <= after


def test_nested_overrides_and_a_study_with_a_base(tmp_path):
    base = write_config(tmp_path / "base.yaml", tiny_offline_config())
    child = write_config(tmp_path / "child.yaml", {"base": "base.yaml", "experiment": "child", "train": {"lr": 0.01}})
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(child),
                       "--config", "train={max_steps: 50}", "models={lstm: {hidden_dim: 512}}", "-p")
    assert result.returncode == 0, result.stderr[-2000:]
    train_lstm = next(line for line in result.stdout.splitlines() if " train --config" in line and '"lstm"' in line)
    assert '"max_steps": 50' in train_lstm and '"lr": 0.01' in train_lstm and '"hidden_dim": 512' in train_lstm
    assert '"embed_dim": 16' in train_lstm and "results/child/" in result.stdout  # untouched keys kept
    assert base.is_file()


@pytest.mark.parametrize("override, message", [
    ("train={max_steps: many}", "config key 'train.max_steps': 'many' is not of type 'integer'"),
    ("trian={max_steps: 5}", "unknown config key 'trian'"),
])
def test_bad_override_gives_one_line(tmp_path, override, message):
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config())
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(cfg), "--config", override)
    assert result.returncode != 0 and message in result.stderr


def test_missing_or_looping_base_gives_one_line(tmp_path):
    write_config(tmp_path / "a.yaml", {"base": "b.yaml"})
    write_config(tmp_path / "b.yaml", {"base": "a.yaml"})
    looping = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(tmp_path / "a.yaml"))
    assert "'base' loops back to itself" in looping.stderr
    write_config(tmp_path / "c.yaml", {"base": "nowhere.yaml"})
    missing = snakemake(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(tmp_path / "c.yaml"))
    assert "nowhere.yaml does not exist (named by 'base:'" in missing.stderr


def test_snakemake_report_holds_every_figure_table_caption_and_the_config(offline_run):
    """`all` ends with Snakemake's own report of the study."""
    work, _ = offline_run
    res = work / "results" / "tiny"
    page = (res / "report.html").read_text()
    figures = sorted(p.name for p in (res / "figures").glob("*.png"))
    assert {"loss_curves.png", "attention_heads.png", "p_sweep.png", "lr_schedule.png"} <= set(figures)
    for name in [*figures, "samples.csv", "models.csv", "eval.csv", "sampling.csv", "provenance.csv"]:
        assert name in page, name
    for caption in (ROOT / "workflow" / "report").glob("*.rst"):
        if caption.stem in ("snapshots", "snapshots_table", "sweep", "scaling", "scaling_table"):
            continue  # not in this study: see test_replicates and test_scaling
        first_words = caption.read_text().split("``")[0].split()[:4]
        assert " ".join(first_words) in page, caption.name
    assert "num_sequences" in page  # the validated config, in the workflow description
    assert "Here it does not apply" in page and "The English word panel is empty: not applicable" in page


def test_the_report_shows_the_tables_inline_and_the_study_file_it_was_built_from(offline_run):
    """Snakemake's report opens an .html result in the page (a .csv it only offers as a download): the tables are
    there as pages, each holding its table's rows, beside their CSVs. Its description lists provenance/study.json,
    not the defaults its own run fills in for the scheduling keys that file leaves out (the study set threads: 1)."""
    work, _ = offline_run
    res = work / "results" / "tiny"
    page = (res / "report.html").read_text()
    results = report_results(page)
    for name in ("eval", "compare", "models", "samples", "sampling"):
        entry = results[f"results/tiny/tables/{name}.html"]
        assert entry["mime_type"] == "text/html" and entry["caption"], name
    assert results["results/tiny/tables/eval.csv"]["mime_type"] == "text/csv"  # the CSVs stay
    pages = {name: result_text(results[f"results/tiny/tables/{name}.html"]) for name in ("eval", "compare", "models")}
    evaluation = pd.read_csv(res / "tables/eval.csv")
    shown_runs = [row[0] for row in table_rows(pages["eval"])]  # eval.md's order: by bits per byte
    assert shown_runs == list(evaluation.sort_values("bpb_mean", kind="stable")["run"])
    by_run = evaluation.set_index("run")
    assert [row[-1] for row in table_rows(pages["eval"])] == [  # bpb: the mean ± the 95% interval's half-width
        tables.plus_minus(*by_run.loc[run, ["bpb_mean", "bpb_ci_low", "bpb_ci_high"]]) for run in shown_runs]
    compare = pd.read_csv(res / "tables/compare.csv")
    # each pair's sentence comes right after it, then its verdict and the interval columns it reads
    assert [row[:4] for row in table_rows(pages["compare"])] == compare[["a", "b", "statement", "verdict"]
                                                                        ].values.tolist()
    assert {row[0] for row in table_rows(pages["models"])} == {"kgram_mlp", "lstm", "transformer"}
    study = json.loads((res / "provenance/study.json").read_text())
    assert shown_config(workflow_description(page)) == study and "threads" not in study["train"]
    # every job's CPU and memory are its own count, paired with its record by picollm.registry; only
    # provenance_table, which writes no record, is Snakemake's samples
    cost = pd.read_csv(res / "tables/resources.csv")
    assert set(cost.loc[cost["measured_by"] != "job", "rule"]) == {"provenance_table"}
    assert {"train", "figure_loss_curves", "sampling_reference"} <= set(cost.loc[cost["measured_by"] == "job", "rule"])
    # listed by name and format, not by path (which widened the menu); the eval table as a page and a CSV
    assert results["results/tiny/tables/eval.html"]["labels"] == {"name": "eval", "format": "page"}
    assert results["results/tiny/tables/eval.csv"]["labels"] == {"name": "eval", "format": "CSV download"}
    assert results["results/tiny/figures/loss_curves.png"]["labels"] == {"name": "loss_curves", "format": "figure"}
    # the Provenance page names the code that made the study: this checkout's commit, one build for every job
    code_page = results["results/tiny/tables/provenance.html"]
    assert code_page["labels"] == {"name": "provenance", "format": "page"}
    code_rows = table_rows(result_text(code_page))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert len(code_rows) == 1 and code_rows[0][0] == commit[:12] and int(code_rows[0][-2]) == len(cost) - 1
    # workflow/report/report.css: a description taller than the window scrolls from its top, not from its middle
    assert (ROOT / "workflow" / "report" / "report.css").read_text().split("*/", 1)[1].strip() in page


def test_dry_run_parses_without_torch(tmp_path):
    """Parsing the Snakefile imports neither torch nor tiktoken: both raise on import here."""
    fake = tmp_path / "fake"
    for name in ("torch", "tiktoken"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('{name} imported while parsing')\n")
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config())
    env = {**local_run_env(), "PYTHONPATH": str(fake)}
    result = subprocess.run(snakemake_command(tmp_path, "-n", "--cores", "1", "all", "--configfile", str(cfg)),
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported while parsing" not in result.stdout + result.stderr


def test_snakemake_from_workflow_folder_is_refused():
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=ROOT / "workflow",
                            capture_output=True, text=True, timeout=300, env=local_run_env())
    assert result.returncode != 0 and f"run snakemake from the project root ({ROOT})" in result.stderr


def test_snakemake_from_another_folder_is_refused_unless_named_with_directory(tmp_path):
    """`snakemake -s pico-llm/workflow/Snakefile` from the parent folder would put results/ there."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "-n", "--cores", "1"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=local_run_env())
    assert result.returncode != 0 and f"not from {tmp_path}" in result.stderr and "--directory" in result.stderr
    assert not (tmp_path / "results").exists()
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config())
    named = subprocess.run([*cmd, "--directory", str(tmp_path), "--configfile", str(cfg)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, env=local_run_env())
    assert named.returncode == 0, named.stderr[-2000:]


def test_export_rule_names_the_fix_for_a_learned_position_transformer(offline_run):
    work, cfg = offline_run
    target = "results/tiny/hf/transformer/seed7"
    result = snakemake(work, "--cores", "1", target, "--configfile", str(cfg))
    assert result.returncode != 0 and "pos_encoding: rope" in result.stderr
    assert not (work / target).exists()
