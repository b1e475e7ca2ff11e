"""The HTML report: captions from workflow/report/*.rst, every figure and table embedded and named, config,
versions and provenance; and the workflow wiring that hands every figure to the report."""
import base64
import json
import re

import pytest

from picollm import report
from picollm.plots import plt, save

from conftest import ROOT, snakemake, tiny_offline_config, write_config

REPORT_DIR = ROOT / "workflow" / "report"
CONFIG = {"experiment": "fake_exp", "seed": 42, "tokenizer": "byte", "sampling": {"p_values": [0.5, 1.0]},
          "models": {"m1": {"type": "lstm"}, "m2": {"type": "kgram_mlp"}}}


def test_caption_jinja_is_filled_from_the_config():
    rst = ('Loss of ``{{ snakemake.config["experiment"] }}`` at p {{ snakemake.config["sampling"]["p_values"] }}'
           "{% if x %} kept {% endif %}{{ other }}.")
    assert report.caption_text(rst, CONFIG) == "Loss of ``fake_exp`` at p [0.5, 1.0] kept ."
    html = report.caption_html("A *b* ``c<d>``\n\nsecond", CONFIG)
    assert html == "<p>A <em>b</em> <code>c&lt;d&gt;</code></p>\n<p>second</p>"


def test_every_caption_file_renders():
    for path in REPORT_DIR.glob("*.rst"):
        text = report.caption_text(path.read_text(), CONFIG)
        assert "{{" not in text and "{%" not in text and text, path.name


def make_results(tmp_path):
    res = tmp_path / "results" / "fake_exp"
    figures = {}
    for stem in ["loss_curves", "p_sweep", "grad_norms"]:
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [1, 0])
        save(fig, res / "figures" / f"{stem}.png", "fake_exp")
        figures[str(res / "figures" / f"{stem}.png")] = str(REPORT_DIR / f"{stem}.rst")
    (res / "tables").mkdir()
    (res / "tables" / "eval.csv").write_text("model,source,val_loss,bpb\nm1,all,1.5,2.25\nm2,all,1.25,<b>\n")
    (res / "tables" / "models.md").write_text("# Models\n\n| model |\n|---|\n| m1 |\n")
    tables = {str(res / "tables" / "eval.csv"): str(REPORT_DIR / "eval_table.rst"),
              str(res / "tables" / "models.md"): str(REPORT_DIR / "models_table.rst")}
    summaries, evals = [], []
    for name, loss in [("m1", 1.5), ("m2", 1.25)]:
        s = res / "models" / name / "summary.json"
        s.parent.mkdir(parents=True)
        s.write_text(json.dumps({"model": name, "type": "lstm", "params": 1000, "params_non_embedding": 800,
                                 "tokens_seen": 5120, "wall_s": 1.5, "tokens_per_s": 3413.3, "device": "cpu",
                                 "final_train_loss": loss + 0.1, "final_val_loss": loss, "steps": 10}))
        e = res / "eval" / f"{name}.json"
        e.parent.mkdir(parents=True, exist_ok=True)
        e.write_text(json.dumps({"model": name, "val_loss": loss, "perplexity": 3.5, "bpb": 2.1}))
        summaries.append(s)
        evals.append(e)
    meta = res / "data" / "tokens" / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"tokenizer": "byte", "vocab_size": 257, "eot_token": 256,
                                "raw_sha256": {"3seqs/train": "a" * 64, "3seqs/val": "b" * 64},
                                "raw_bytes": {"3seqs/train": 100, "3seqs/val": 10},
                                "splits": {"train": {"tokens": 90}, "val": {"tokens": 9}}}))
    prov = res / "provenance" / "train" / "m1.json"
    prov.parent.mkdir(parents=True)
    prov.write_text(json.dumps({"stage": "train", "seed": 42, "versions": {"torch": "9.9"},
                                "git": {"commit": "c0ffee" * 6 + "abcd", "dirty": False},
                                "created_utc": "2026-01-01T00:00:00+00:00"}))
    return res, figures, tables, summaries, evals, meta, [prov]


def test_report_names_and_embeds_every_figure_and_table(tmp_path):
    res, figures, tables, summaries, evals, meta, provs = make_results(tmp_path)
    out = res / "report.html"
    page = report.build(out, config=CONFIG, config_files=["config/fake.yaml"], figures=figures, tables=tables,
                        summaries=summaries, evals=evals, meta=meta, provenance_files=provs, root=tmp_path)
    assert out.read_text() == page
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in imgs] == ["loss_curves.png", "p_sweep.png", "grad_norms.png"]
    for (name, data), path in zip(imgs, figures):
        assert base64.b64decode(data) == open(path, "rb").read()
        assert f"file: <code>results/fake_exp/figures/{name}</code>" in page
    for path in tables:
        assert path.split("/")[-1] in page
    # captions from the .rst files, Jinja filled in
    assert "Global gradient norm" in page and "against the nucleus" in page
    assert "snakemake.config" not in page
    # every figure and table states the experiment and the training tokens
    assert page.count("Experiment <b>fake_exp</b> · 5,120 training tokens per model") == len(figures) + len(tables)
    # tables are escaped HTML; the per-model section; config; provenance
    assert "<td>&lt;b&gt;</td>" in page and "<td><b></td>" not in page
    assert "3413" in page and "models/m1/summary.json" in page
    assert "experiment: fake_exp" in page and "config/fake.yaml" in page  # the YAML config and its file
    assert "c0ffee" * 6 + "abcd" in page and "a" * 64 in page and "seed" in page
    assert "tokenizer" in page and "Package versions" in page and "9.9" in page


@pytest.mark.parametrize("with_act_rms", [False, True])
def test_grad_norm_figure_with_and_without_activation_scale(tmp_path, with_act_rms):
    import pandas as pd

    from picollm.plots import grad_norms
    metrics = {}
    for name in ["a", "b"]:
        frame = pd.DataFrame({"step": [0, 10, 20, 30], "tokens_seen": [0, 100, 200, 300],
                              "grad_norm": [float("nan"), 2.0, 1.0, 0.5]})
        if with_act_rms:
            frame["act_rms"] = [1.0, 1.1, 1.3, 1.2]
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        metrics[name] = tmp_path / f"{name}.csv"
    grad_norms.plot(metrics, tmp_path / "g.png", "exp")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_p_sweep_figure_from_a_sampling_table(tmp_path):
    import pandas as pd

    from picollm.plots import p_sweep
    rows = [{"model": m, "decoding": d, "p": p, "samples": 2, "distinct_1": 0.5, "distinct_2": 0.6, "distinct_3": 0.7,
             "rep_4": 0.1, "mean_loglik": -1.0, "mean_tokens": 10, "train_tokens": 512}
            for m in ["a", "b"] for d, p in [("greedy", float("nan")), ("p=0.5", 0.5), ("p=1", 1.0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    p_sweep.plot(tmp_path / "s.csv", tmp_path / "p.png", "exp")
    assert (tmp_path / "p.png").stat().st_size > 1000


def figure_outputs_in_rules() -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    return set(re.findall(r"/figures/(\w+)\.png", text))


def test_every_figure_rule_has_a_caption_and_reaches_the_report():
    stems = figure_outputs_in_rules()
    assert {"loss_curves", "sample_comparison", "attention_heads", "p_sweep", "grad_norms"} <= stems
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    figures_fn = common.split("def figures():")[1].split("\ndef ")[0]
    for stem in stems:
        assert (REPORT_DIR / f"{stem}.rst").is_file(), stem
        assert f"figures/{stem}.png" in figures_fn, f"{stem} is not in figures(), so not in the report"


@pytest.mark.slow
def test_tiny_study_builds_a_report_naming_every_figure(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_offline_config("tiny_report"))
    run = snakemake(tmp_path, "--cores", "2", "all", "--configfile", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    res = tmp_path / "results" / "tiny_report"
    page = (res / "report.html").read_text()
    pngs = sorted(p.name for p in (res / "figures").glob("*.png"))
    assert len(pngs) == len(figure_outputs_in_rules())
    for name in pngs:
        assert f'<img alt="{name}"' in page
    for name in ["eval.csv", "sampling.csv", "models.md", "samples.csv"]:
        assert name in page
    for model in ["kgram_mlp", "lstm", "transformer"]:
        ev = json.loads((res / "eval" / f"{model}.json").read_text())
        assert ev["val_tokens_scored"] > 0 and ev["bpb"] > 0
