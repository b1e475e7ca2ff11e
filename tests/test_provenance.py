"""What every provenance record names besides its job: the versions of the libraries that shape an output, the
picollm that ran, and whether its code is the commit's (a changed or a new file under src/ or workflow/ is not)."""
import subprocess

import picollm
from picollm import provenance


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
