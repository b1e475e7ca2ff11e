"""What every provenance record names besides its job: the versions of the libraries that shape an output, the
picollm that ran, and whether its code is the commit's (a changed or a new file under src/ or workflow/ is not)."""
import json
import subprocess

import picollm
from picollm import provenance
from picollm.cli import main


def test_versions_name_every_library_an_output_depends_on_and_the_picollm_that_ran():
    found = provenance.versions()
    for name in ["torch", "scipy", "tokenizers", "transformers", "safetensors", "pydantic", "pyspellchecker"]:
        assert found[name], name  # each is pinned in pyproject.toml, so installed wherever a job runs
    assert found["picollm"] == picollm.__version__


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_new_file_under_src_makes_the_code_dirty(tmp_path, monkeypatch):
    """A model type of one's own is two new, untracked modules: outputs made with them name no commit that
    reproduces them, so the record says dirty."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    state = provenance.git_state.__wrapped__
    assert state()["dirty"] is False and len(state()["commit"]) == 40
    (tmp_path / "src" / "new_type.py").write_text("B = 2\n")
    assert state()["dirty"] is True
    (tmp_path / "src" / "new_type.py").unlink()
    (tmp_path / "notes.txt").write_text("outside src/ and workflow/: no code\n")
    assert state()["dirty"] is False


def job_record(path, stage, commit, dirty=False, torch="2.13.0"):
    rec = {"stage": stage, "created_utc": "2026-01-01T00:00:00+00:00", "git": {"commit": commit, "dirty": dirty},
           "code": {}, "versions": {"picollm": "0.1.0", "python": "3.11.7", "torch": torch},
           "platform": "Linux-x86_64", "seed": 1, "config": {}, "inputs": {}, "outputs": []}
    path.write_text(json.dumps(rec))
    return path


def test_the_report_names_the_code_that_made_the_study(tmp_path):
    """One commit: the page says so in a line. A job rerun after an edit: two rows, and the line says the
    outputs were made by different code."""
    records = [job_record(tmp_path / f"{stage}.json", stage, "a" * 40) for stage in ["train", "sample", "evaluate"]]
    page = tmp_path / "provenance.html"
    main(["provenance-table", "--records", *map(str, records), "--out", str(tmp_path / "p.csv"),
          "--page", str(page)])
    text = page.read_text()
    assert "All 3 jobs ran commit <code>aaaaaaaaaaaa</code>." in text and "<table>" in text
    assert "train 1, sample 1, evaluate 1" in text and "2.13.0" in text

    job_record(records[2], "evaluate", "b" * 40, dirty=True)
    rows = provenance.table(records, tmp_path / "p.csv")
    summary = provenance.code_summary(rows)
    assert "The 3 jobs ran 2 builds of the code" in summary
    lines = [line for line in summary.splitlines() if line.startswith("| `")]
    assert lines[0].startswith("| `aaaaaaaaaaaa` | no |") and lines[0].endswith("| 2 | train 1, sample 1 |")
    assert lines[1].startswith("| `bbbbbbbbbbbb` | yes |") and lines[1].endswith("| 1 | evaluate 1 |")


def test_a_token_folder_made_twice_has_one_content_hash(tmp_path):
    """meta.json holds the record of the job that wrote it (when, with which command), so its sha256 differs
    between two builds of the same tokens; its content hash is that of the token files and tokenizer."""
    metas = []
    for i, made in enumerate(["2026-01-01T00:00:00+00:00", "2026-06-01T12:00:00+00:00"]):
        path = tmp_path / f"tokens{i}" / "meta.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"splits": {"train": {"sha256": "a" * 64}, "val": {"sha256": "b" * 64}},
                                    "tokenizer": "byte", "provenance": {"created_utc": made, "command": [str(path)]}}))
        metas.append(path)
    first, second = (provenance.record("train", inputs=[m]) for m in metas)
    assert first["inputs"][str(metas[0])] != second["inputs"][str(metas[1])]
    assert first["content"][str(metas[0])] == second["content"][str(metas[1])]
    other = json.loads(metas[1].read_text())
    other["splits"]["val"]["sha256"] = "c" * 64
    metas[1].write_text(json.dumps(other))
    assert provenance.record("train", inputs=[metas[1]])["content"][str(metas[1])] != first["content"][str(metas[0])]
    weights = provenance.record("sample", inputs=[metas[0]], content={"model.pt": "d" * 64, "gone.pt": None})
    assert weights["content"]["model.pt"] == "d" * 64 and "gone.pt" not in weights["content"]
