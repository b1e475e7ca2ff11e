"""A study with two seeds, a two-point sweep and snapshots, run end to end: every output of seed replicates and
sweeps, with the statistics over seeds."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import snakemake, tiny_offline_config, write_config

SEEDS = (7, 8)
RUNS = ("lstm", "transformer", "transformer.d_model=16", "transformer.d_model=48")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    work = tmp_path_factory.mktemp("replicates")
    cfg = tiny_offline_config("reps", steps=20)
    del cfg["models"]["kgram_mlp"]  # two model types are enough to compare: the study stays short
    cfg["seeds"] = list(SEEDS)
    cfg["sweep"] = {"transformer": {"d_model": [16, 48]}}
    cfg["train"]["snapshot_steps"] = [0, 10, 20]
    write_config(work / "study.yaml", cfg)
    result = snakemake(work, "--cores", "2", "all", "--configfile", str(work / "study.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "results" / "reps"


def test_every_run_and_seed_is_trained_sampled_and_evaluated(replicated):
    for run in RUNS:
        for seed in SEEDS:
            folder = replicated / "models" / run / f"seed{seed}"
            assert (folder / "model.pt").is_file() and (folder / "layer_health.csv").is_file()
            assert sorted(p.name for p in (folder / "snapshots").glob("*.pt")) == ["step0.pt", "step10.pt", "step20.pt"]
            assert (replicated / "samples" / run / f"seed{seed}.jsonl").is_file()
            ev = json.loads((replicated / "eval" / run / f"seed{seed}.json").read_text())
            assert ev["run"] == run and ev["seed"] == seed
    point = json.loads((replicated / "eval" / "transformer.d_model=16" / "seed7.json").read_text())["sweep"]
    assert point == {"model": "transformer", "key": "d_model", "value": 16}


def test_replicates_share_the_data_but_not_the_weights(replicated):
    meta = json.loads((replicated / "data/tokens/meta.json").read_text())
    assert list(meta["splits"]["train"]["sources"]) == ["3seqs"]  # one tokenization for both seeds
    a = pd.read_csv(replicated / "models/lstm/seed7/metrics.csv")["train_loss"].dropna()
    b = pd.read_csv(replicated / "models/lstm/seed8/metrics.csv")["train_loss"].dropna()
    assert not np.allclose(a.to_numpy(), b.to_numpy())


def test_eval_table_gives_mean_std_and_interval_over_seeds(replicated):
    table = pd.read_csv(replicated / "tables/eval.csv").set_index("run")
    assert sorted(table.index) == sorted(RUNS) and set(table["n_seeds"]) == {2}
    for run in RUNS:
        bpb = [json.loads((replicated / "eval" / run / f"seed{s}.json").read_text())["bpb"] for s in SEEDS]
        row = table.loc[run]
        assert row["bpb_mean"] == pytest.approx(np.mean(bpb))
        assert row["bpb_std"] == pytest.approx(np.std(bpb, ddof=1))
        half = 12.7062047 * np.std(bpb, ddof=1) / np.sqrt(2)  # t(0.975, 1 degree of freedom)
        assert row["bpb_ci_low"] == pytest.approx(np.mean(bpb) - half, rel=1e-5)
        assert row["bpb_ci_high"] == pytest.approx(np.mean(bpb) + half, rel=1e-5)
        assert {"val_loss_mean", "perplexity_ci_high"} <= set(table.columns)


def test_compare_table_pairs_every_two_runs(replicated):
    compare = pd.read_csv(replicated / "tables/compare.csv")
    assert len(compare) == len(RUNS) * (len(RUNS) - 1) // 2 and set(compare["n"]) == {2}
    assert set(compare["verdict"]) <= {"a better", "b better", "within noise"}
    row = compare[(compare["a"] == "lstm") & (compare["b"] == "transformer")].iloc[0]
    diffs = [json.loads((replicated / "eval" / "lstm" / f"seed{s}.json").read_text())["bpb"]
             - json.loads((replicated / "eval" / "transformer" / f"seed{s}.json").read_text())["bpb"] for s in SEEDS]
    assert row["bpb_diff_mean"] == pytest.approx(np.mean(diffs))


def test_figures_and_tables_of_a_replicated_sweep(replicated):
    for name in ("loss_curves", "p_sweep", "sweep", "snapshots", "layer_health", "grad_norms", "lr_schedule"):
        for ext in ("png", "svg"):
            assert (replicated / "figures" / f"{name}.{ext}").stat().st_size > 5_000, (name, ext)
    snapshots = pd.read_csv(replicated / "tables/snapshots.csv", keep_default_na=False)
    assert set(snapshots["step"]) == {0, 10, 20} and set(snapshots["run"]) == set(RUNS)
    assert "snapshots.md" in {p.name for p in (replicated / "tables").iterdir()}
    sampling = pd.read_csv(replicated / "eval/sampling.csv")
    assert set(sampling["seed"]) == set(SEEDS)
    page = (replicated / "report.html").read_text()
    assert all(name in page for name in ("compare.csv", "sweep.png", "snapshots.png", "layer_health.png"))
    assert "greedy continuation of the first prompt" in page and "swept value" in page  # their captions


def test_removing_a_seed_or_a_sweep_value_reruns_only_the_aggregates(replicated):
    work = replicated.parent.parent
    for override in ("seeds=[7]", "sweep={transformer: {d_model: [16]}}"):
        plan = snakemake(work, "-n", "--cores", "1", "all", "--configfile", str(work / "study.yaml"),
                         "--config", override)
        assert plan.returncode == 0, plan.stderr[-2000:]
        assert not [line for line in plan.stdout.splitlines()
                    if line.startswith(("rule train:", "rule sample:", "rule evaluate:"))], override
        assert "rule eval_tables:" in plan.stdout  # the tables over the remaining runs and seeds
