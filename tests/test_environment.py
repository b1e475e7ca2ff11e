"""The conda environments pin the same packages at the same versions as pyproject.toml.

environment.yml (the environment snakemake runs from) must name every [project].dependencies entry,
and workflow/envs/picollm.yaml (the rules' environment under `snakemake --sdm conda`) a subset of them
that covers everything `python -m picollm` imports. Conda can't be reached from CI, so this checks the
files, not a solved environment.
"""
import ast
import os
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = ROOT / "environment.yml"
RULE_ENV = ROOT / "workflow" / "envs" / "picollm.yaml"
# PyPI name -> conda-forge name, where they differ (matplotlib-base/seaborn-base: without a GUI toolkit)
CONDA_NAME = {"torch": "pytorch", "matplotlib": "matplotlib-base", "seaborn": "seaborn-base"}
PYTHON = "3.11"
# imported by none of picollm's modules but needed at run time: pandas' DataFrame.to_markdown (tables)
RUNTIME_EXTRAS = {"tabulate"}
# installed with a pinned package that requires them (datasets streams through huggingface_hub and its HTTP client)
PROVIDED_BY_PINS = {"huggingface-hub", "httpx2"}
# pyproject's optional `tracking` extra: picollm.tracking imports it only for a logger that is asked for
OPTIONAL_EXTRAS = {canonicalize_name(Requirement(dep).name) for dep in
                   tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tracking"]}


def pip_pins() -> dict[str, str]:
    """pyproject [project].dependencies as {conda name: exact version}."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        req = Requirement(dep)
        (spec,) = req.specifier  # exactly one specifier...
        assert spec.operator == "==", f"pyproject.toml: {dep!r} is not an exact pin"  # ...and an exact one
        pins[CONDA_NAME.get(canonicalize_name(req.name), canonicalize_name(req.name))] = spec.version
    return pins


def conda_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert not any(isinstance(d, dict) for d in env["dependencies"]), f"{path.name}: no pip section, conda only"
    return env


def conda_pins(path: Path) -> tuple[str, dict[str, str]]:
    """(python version, {package: exact version}) of a conda environment file."""
    python, pins = None, {}
    for dep in conda_env(path)["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|=)\s*([0-9][A-Za-z0-9.*]*)", dep)
        assert m, f"{path.name}: {dep!r} is not `name==version`"
        name, op, version = m.groups()
        if name == "python":
            python = version
            continue
        assert op == "==" and "*" not in version, f"{path.name}: {dep!r} is not an exact pin (name==version)"
        assert name not in pins, f"{path.name}: {name} is listed twice"
        pins[name] = version
    return python, pins


def imported_distributions() -> set[str]:
    """Third-party distributions (conda names) that src/picollm imports."""
    modules = set()
    for path in (ROOT / "src" / "picollm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"picollm", "__future__"}
    owners = importlib.metadata.packages_distributions()
    dists = set()
    for module in modules:
        assert module in owners, f"src/picollm imports {module!r}, which no installed distribution provides"
        for dist in owners[module]:
            name = canonicalize_name(dist)
            dists.add(CONDA_NAME.get(name, name))
    return dists


def test_pyproject_pins_are_exact():
    assert pip_pins()


def test_environment_yml_matches_pyproject():
    python, pins = conda_pins(ENVIRONMENT)
    assert python == PYTHON
    assert pins == pip_pins(), "environment.yml and pyproject.toml [project].dependencies differ"


def test_rule_env_pins_match_pyproject():
    python, pins = conda_pins(RULE_ENV)
    assert python == PYTHON
    expected = pip_pins()
    extra = set(pins) - set(expected)
    assert not extra, f"workflow/envs/picollm.yaml has packages that pyproject.toml does not pin: {extra}"
    assert {n: v for n, v in pins.items()} == {n: expected[n] for n in pins}, "versions differ from pyproject.toml"


def test_rule_env_has_everything_picollm_imports():
    _, pins = conda_pins(RULE_ENV)
    missing = (imported_distributions() | RUNTIME_EXTRAS) - set(pins) - PROVIDED_BY_PINS - OPTIONAL_EXTRAS
    assert not missing, f"workflow/envs/picollm.yaml lacks what `python -m picollm` needs: {sorted(missing)}"


def test_python_version_is_allowed_by_pyproject():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(f"{PYTHON}.0")


@pytest.mark.parametrize("path", [ENVIRONMENT, RULE_ENV], ids=lambda p: p.name)
def test_channels(path):
    channels = conda_env(path)["channels"]
    assert channels[0] == "conda-forge" and channels[-1] == "nodefaults", channels
    # bioconda only where snakemake and its SLURM plugin are (they are not on conda-forge)
    assert set(channels) <= {"conda-forge", "bioconda", "nodefaults"}
    if path == RULE_ENV:
        assert channels == ["conda-forge", "nodefaults"]


def test_rules_use_the_rule_env():
    """Every rule with a shell command has `conda: ENV`, and ENV is workflow/envs/picollm.yaml."""
    rules_dir = ROOT / "workflow" / "rules"
    assert re.search(r'^ENV\s*=\s*"\.\./envs/picollm\.yaml"', (rules_dir / "common.smk").read_text(), re.M)
    for smk in rules_dir.glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            if name == "report":  # runs `snakemake --report`: an environment of its own, the same pins
                assert '"../envs/report.yaml"' in block
                continue
            if re.search(r"^\s+(shell|script|wrapper|notebook):", block, re.M):
                assert re.search(r"^\s+conda:\s*\n\s+ENV\b", block, re.M), f"{smk.name}: rule {name} has no `conda: ENV`"


def test_rule_commands_put_src_on_pythonpath_themselves(tmp_path):
    """Under `--sdm conda` snakemake removes PYTHONPATH from a job's environment (unless
    --conda-not-block-search-path-envvars) and the conda env has no picollm installed, so each command
    must put the checkout's src/ on PYTHONPATH itself (in the command, or in a shell.prefix export)."""
    workflow_text = "\n".join(p.read_text() for p in (ROOT / "workflow").rglob("*") if p.suffix in (".smk", "") and p.is_file())
    if re.search(r"shell\.prefix\([^)]*export PYTHONPATH=", workflow_text):
        return
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--workflow-profile", "none",
                           "--directory", str(tmp_path), "--snakefile", str(ROOT / "workflow" / "Snakefile"),
                           "all", "--configfile", str(ROOT / "config" / "offline.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if "picollm" in line and "python" in line]
    assert commands, proc.stdout[-3000:]
    for command in commands:
        before = command.split("python -m picollm", 1)[0]
        assert "PYTHONPATH=" in before, f"no PYTHONPATH=<src> in the command itself: {command[:200]}"


def test_report_env_pins_match_pyproject():
    _, pins = conda_pins(ROOT / "workflow" / "envs" / "report.yaml")
    expected = pip_pins()
    assert pins == {n: expected[n] for n in pins} and "snakemake" in pins


# Parse the workflow as the report rule's inner `snakemake --report` does, then import what `picollm report`
# runs, and list the picollm modules that were loaded.
PARSE = """
import runpy, sys
sys.argv = ["snakemake", "-n", "--cores", "1", "--quiet", "all", "--configfile", "config/offline.yaml"]
try:
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
import picollm.cli, picollm.commands.report
print("loaded:", *sorted(m for m in sys.modules if m.split(".")[0] == "picollm"))
"""


def module_level_imports(path: Path) -> set[str]:
    """Top-level names a module imports when it is imported: in its body and class bodies, not in functions."""
    names, todo = set(), list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(ast.iter_child_nodes(node))
    return names - set(sys.stdlib_module_names) - {"picollm", "__future__"}


def with_requirements(names) -> set[str]:
    """Distributions and everything they require (their installed metadata, no extras), canonical names."""
    seen, todo = set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_report_env_has_what_parsing_the_workflow_imports():
    """The report rule runs `picollm report` in workflow/envs/report.yaml, and it parses the Snakefile: every
    module that parse loads may import at its top only what that environment's packages bring."""
    proc = subprocess.run([sys.executable, "-c", PARSE], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.splitlines()[-1].split()[1:]
    assert "picollm.config.sections" in loaded and "picollm.commands.report" in loaded
    _, pins = conda_pins(ROOT / "workflow" / "envs" / "report.yaml")
    brought = with_requirements(pins)
    owners = importlib.metadata.packages_distributions()
    for module in loaded:
        path = ROOT / "src" / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for name in module_level_imports(path):
            dists = {canonicalize_name(d) for d in owners.get(name, [name])}
            assert dists & brought, (f"{module} imports {name} when the workflow is parsed, but "
                                     f"workflow/envs/report.yaml brings no {sorted(dists)}")
