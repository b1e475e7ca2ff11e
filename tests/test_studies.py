"""The shipped studies, run whole (slow: `python -m pytest -m slow`)."""
import json

import pandas as pd
import pytest

from conftest import ROOT, TINYSTORIES_TRAIN, needs_gpt2, needs_tinystories, snakemake

pytestmark = pytest.mark.slow


def _check_study(work, experiment):
    res = work / "results" / experiment
    for m in ("kgram_mlp", "lstm", "transformer"):
        summary = json.loads((res / f"models/{m}/seed1337/summary.json").read_text())
        assert summary["final_val_loss"] < summary["first_val_loss"] - 0.5, (m, summary)
    for figure in ("loss_curves", "sample_comparison", "attention_heads"):
        assert (res / f"figures/{figure}.png").stat().st_size > 10_000
    return res


def test_offline_study(tmp_path):
    result = snakemake(tmp_path, "--cores", "2", "all", "--configfile", str(ROOT / "config/offline.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    _check_study(tmp_path, "offline")


@needs_gpt2
@needs_tinystories
def test_tinystories_local_study(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = (ROOT / "config/tinystories-local.yaml").read_text().replace("../shared/tinystories", str(TINYSTORIES_TRAIN.parent))
    (tmp_path / "study.yaml").write_text(cfg)
    (tmp_path / "config.yaml").write_text((ROOT / "config/config.yaml").read_text())  # its base:
    result = snakemake(tmp_path, "--cores", "2", "all", "--configfile", str(tmp_path / "study.yaml"), timeout=7200)
    assert result.returncode == 0, result.stderr[-3000:]
    res = _check_study(tmp_path, "tinystories-local")
    greedy = pd.read_csv(res / "tables/samples.csv", keep_default_na=False).query("decoding == 'greedy'")
    words = " ".join(greedy["text"]).split()
    assert sum(w.strip(".,!?\"'").lower() in {"the", "a", "and", "was", "to", "she", "he"} for w in words) > len(words) * 0.1
