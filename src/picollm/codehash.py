"""Code identity of a job: a hash of the picollm modules its stage can run, found from the import graph.

The workflow puts this hash in each rule's `params`, so editing a module reruns exactly the jobs whose
stage imports it (directly or through other modules, function-level imports included). Modules are hashed
by their syntax tree without docstrings and without the text of `help=`, `description=`, `epilog=` and
`metavar=` arguments (argparse's help, pydantic's field descriptions: what a command or key is said to do, never
what it does): comments, blank lines, formatting and such text can change without rerunning anything; any
change to code does. Pure standard library: parsing the Snakefile must stay cheap (no torch).

What is read of a module's source (its hash, the names it imports, its top-level classes) is kept on disk under
the sha256 of that source and of this file (io.cache_dir()/codehash/): every Snakemake start and every job
hashes the same modules, and parsing them is most of a dry run's time. A source that changes has another key, so
an entry is never out of date; one that cannot be read or written is computed again.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from picollm.errors import PicoError
from picollm.io import cache_dir

SRC = Path(__file__).resolve().parent.parent  # the folder holding the picollm package
PACKAGE = "picollm"
# Modules every stage command runs through: the command line and the provenance record it writes.
ENTRY = ("picollm.__main__", "picollm.cli", "picollm.provenance")


def module_path(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parse(path: Path, source: bytes) -> ast.Module:
    try:
        return ast.parse(source.decode("utf-8"))
    except SyntaxError as exc:
        raise PicoError(f"{path} has a syntax error at line {exc.lineno} ({exc.msg}); fix it, then rerun") from None


def top_level_classes(module: str) -> set[str]:
    """The classes a module defines at its top level, read without importing it (no torch)."""
    return set(_facts(module)["classes"])


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


# keyword arguments whose text documents a call rather than steers it
TEXT_KEYWORDS = {"help", "description", "epilog", "metavar"}


def _without_help_text(tree: ast.Module) -> ast.Module:
    """Every TEXT_KEYWORDS argument given as text (a string, implicitly concatenated or an f-string)
    replaced by an empty string: its wording never changes an output."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in TEXT_KEYWORDS and (
                isinstance(node.value, ast.JoinedStr)
                or isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            node.value = ast.Constant("")
    return tree


def module_hash(module: str) -> str:
    return _facts(module)["hash"]


def _tree_hash(tree: ast.Module) -> str:
    """The hash of a syntax tree without its docstrings and help text (it strips them from `tree`)."""
    tree = _without_help_text(_without_docstrings(tree))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def _imported_names(tree: ast.Module) -> set[str]:
    """Every picollm name an import statement anywhere in the tree names (`from a import b`: a, and a.b, which is
    a submodule or a name defined in a)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
    return {name for name in names if name.split(".")[0] == PACKAGE}


# what the facts of a source depend on besides the source: this file (how it reads them) and Python's ast
_READER = hashlib.sha256(Path(__file__).read_bytes() + sys.version.encode()).hexdigest()


@functools.cache
def _facts(module: str) -> dict:
    """{"hash", "imports", "classes"} of a module's source, from the disk cache or parsed (and then kept)."""
    path = module_path(module)
    if path is None:
        raise PicoError(f"no module {module} under {SRC / PACKAGE}")
    source = path.read_bytes()
    key = hashlib.sha256(_READER.encode() + source).hexdigest()
    cached = _cache_read(key)
    if cached:
        return cached
    tree = _parse(path, source)
    facts = {"imports": sorted(_imported_names(tree)),
             "classes": sorted(node.name for node in tree.body if isinstance(node, ast.ClassDef)),
             "hash": _tree_hash(tree)}  # last: it strips the tree
    _cache_write(key, facts)
    return facts


def _cache_path(key: str) -> Path:
    return cache_dir() / "codehash" / f"{key}.json"


def _cache_read(key: str) -> dict | None:
    try:
        facts = json.loads(_cache_path(key).read_text())
    except (OSError, ValueError):
        return None
    valid = (isinstance(facts, dict) and isinstance(facts.get("hash"), str) and len(facts["hash"]) == 16
             and all(isinstance(facts.get(k), list) for k in ("imports", "classes")))
    return facts if valid else None


def _cache_write(key: str, facts: dict) -> None:
    """Kept whole or not at all (a file renamed into place), never stopping the caller: a cache it cannot
    write (a read-only home on a cluster node) is only slower."""
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(facts, fh)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def imports(module: str) -> frozenset[str]:
    """The picollm modules `module` imports anywhere in its file (and their parent packages)."""
    found = set()
    for name in _facts(module)["imports"]:
        if module_path(name):
            found.update(_with_parents(name))
    return frozenset(found)


def closure(*modules: str) -> list[str]:
    """Every picollm module reachable from `modules` through imports, sorted."""
    seen, todo = set(), [m for name in modules for m in _with_parents(name)]
    while todo:
        module = todo.pop()
        if module not in seen and module_path(module):
            seen.add(module)
            todo.extend(imports(module))
    return sorted(seen)


def code_identity(*modules: str) -> dict:
    """{module: hash} of the modules a job runs: its stage's modules, the command line, and their imports."""
    return {m: module_hash(m) for m in closure(*ENTRY, *modules)}


def identity_hash(identity: dict) -> str:
    """One short hash of a {module: hash} identity."""
    text = "\n".join(f"{m} {h}" for m, h in sorted(identity.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_hash(*modules: str) -> str:
    """One short hash of code_identity: what a rule's params carry."""
    return identity_hash(code_identity(*modules))


def stage_module(stage: str) -> str:
    """The module of a stage's command, whose imports make its jobs' code identity."""
    return f"{PACKAGE}.commands.{stage}"


def type_code(stage: str, model_type) -> str:
    """The code hash of a stage's job for one model type (a picollm.model_types.ModelType): the stage's command
    and the type's two modules, not the other types'. One function for the rule's params (picollm.jobs.model_code)
    and what a finished training records (picollm.finished.code), which must agree for a finished training to be
    restored."""
    return code_hash(stage_module(stage), *model_type.modules)


def changed_since(records: Path) -> list[str]:
    """The picollm modules whose code differs from what made a study's outputs: each module's hash in the newest
    provenance record under `records` that ran it (an older record may be of a run the study no longer has),
    against the module as it is now (a module gone counts)."""
    made_with = {}
    for path in sorted(Path(records).rglob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            code = json.loads(path.read_text()).get("code")
        except (OSError, ValueError, AttributeError):  # a record being written, or damaged: no code to compare
            continue
        made_with.update(code if isinstance(code, dict) else {})
    return sorted(module for module, digest in made_with.items()
                  if module_path(module) is None or _hash_or_none(module) != digest)


def _hash_or_none(module: str) -> str | None:
    try:
        return module_hash(module)
    except PicoError:  # a syntax error: check_syntax names it
        return None


def code_changes_line(records: Path, workdir: Path = Path("."), shown: int = 6) -> str | None:
    """One line naming the modules edited since a study's outputs were made, whose jobs rerun; None if none.
    `records` is relative to the workflow's `workdir`, which Snakemake has left again when it says this last.
    The config line (picollm.config.changes) names keys only: this is the other half of why jobs rerun."""
    changed = changed_since(workdir / records)
    if not changed:
        return None
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return (f"the code differs from what made the study's outputs ({records}/): {', '.join(changed[:shown])}{more}; "
            f"the jobs that run it rerun (docs/reruns.md)")


def check_syntax() -> None:
    """Parse every picollm module now (one whose source is in the cache parsed before), so a syntax error stops
    the workflow with one line."""
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        _facts(module)
