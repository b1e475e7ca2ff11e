"""The study files and `--config` overrides on Snakemake's command line, checked before Snakemake reads them.

Snakemake loads each `--configfile` itself, before any workflow code runs, and a file it cannot read ends in a
long traceback: a Latin-1 file, a figure or a target that followed `--configfile` (its nargs="+" takes every
word up to the next option), a missing file. So does a `--config` word it cannot parse: a nested key written
with dots (train.max_steps=50), or a target that followed `--config` (nargs="*"). The project's profiles
(workflow/profiles/default/ and profiles/slurm/) call `profile_check()` while Snakemake parses them, which is earlier, so each of
those is one line naming the file or the word, and the fix.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import get_args, get_origin

import yaml
from pydantic import BaseModel

from picollm import jobs, layout, registry
from picollm.config.study import Study, experiment_name
from picollm.config.load import (DEFAULT_STUDY, STUDY_SUFFIXES, TARGET_HINT, load_study, read_study_file,
                                 similar_study)
from picollm.errors import PicoError

ROOT = Path(__file__).resolve().parents[3]  # the checkout, whose config/config.yaml is the default study

OPTIONS = ("--configfile", "--configfiles")
CONFIG_OPTIONS = ("--config", "-C")
CONFIG_KEY = re.compile(r"[a-zA-Z_][\w-]*\w$")  # the keys Snakemake's parse_config accepts
NESTED_KEY = re.compile(r"[a-zA-Z_][\w-]*$")  # a key inside the mapping of one: a run may be named `x`


def option_words(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """The words argparse would give one of `options` (nargs "+" or "*"): every word after it up to the next option,
    or the value of `--option=value`."""
    words, taking = [], False
    for word in argv:
        if word == "--":
            taking = False
        elif word.startswith("-"):
            option, _, value = word.partition("=")
            taking = option in options and not value
            if option in options and value:
                words.append(value)
        elif taking:
            words.append(word)
    return words


def configfiles(argv: list[str]) -> list[str]:
    """The files argparse would give --configfile."""
    return option_words(argv, OPTIONS)


def unquoted_mapping(words: list[str]) -> str | None:
    """`train={max_steps: 50}` typed without quotes, which the shell splits into words at its spaces: one line
    naming the fix; None when every mapping is one word."""
    for i, word in enumerate(words):
        joined = word
        for more in words[i + 1:]:
            if joined.count("{") <= joined.count("}"):
                break
            joined += " " + more
        if joined != word:
            return f"--config {joined}: the shell split one value at its spaces; quote it: --config '{joined}'"
    return None


def override_problem(word: str, before: str | None = None) -> str | None:
    """What keeps Snakemake from parsing the `--config` word `word` (`before`: the --config word ahead of it), in
    one line naming the fix; None when it parses."""
    key, eq, value = word.partition("=")
    if not eq:
        split = (f"if it is part of the value before it, quote the two: --config '{before} {word}'; "
                 if before and "=" in before and word != "all" and not Path(word).suffix else "")
        return (f"--config takes KEY=VALUE words and {word!r} is none; {split}if it is a target, put targets "
                f"before --config (snakemake --cores N TARGET --config KEY=VALUE)")
    if CONFIG_KEY.match(key):
        return None
    first, _, rest = key.partition(".")
    if rest and CONFIG_KEY.match(first) and all(NESTED_KEY.match(part) for part in rest.split(".")):
        parts, unknown = known_key(key.split("."))
        if parts is None:
            return f"--config {word}: Snakemake sets top-level keys only, and {unknown}"
        *outer, last = parts
        nested = f"{last}: {value}"
        for part in reversed(outer[1:]):
            nested = f"{part}: {{{nested}}}"
        fixed = f"{unknown}, and Snakemake sets top-level keys only: write" if unknown else \
            "Snakemake sets top-level keys only; write the nested key as"
        return (f"--config {word}: {fixed} --config '{outer[0]}={{{nested}}}' (the other keys under {outer[0]} "
                f"keep their values)")
    return f"--config {word}: {key!r} is no config key (letters, digits, _ and -, starting with a letter or _)"


def known_key(parts: list[str]) -> tuple[list[str] | None, str]:
    """A dotted key's parts with a misspelt one replaced by the schema's closest key, and what was replaced
    ("" when nothing); (None, why) when no key is close. Below a mapping of the user's names (models, sweep)
    every part is taken as given."""
    cls, fixed = Study, ""
    for depth, part in enumerate(parts):
        if part not in cls.model_fields:
            where = ".".join(parts[:depth]) or "the study"
            close = difflib.get_close_matches(part, cls.model_fields, n=1)
            if not close:
                return None, f"{where} has no key {part!r}; its keys: {', '.join(sorted(cls.model_fields))}"
            fixed = f"{where} has no key {part!r} (did you mean {close[0]!r}?)"
            parts, part = [*parts[:depth], close[0], *parts[depth + 1:]], close[0]
        annotation = cls.model_fields[part].annotation
        kinds = (annotation, *get_args(annotation))
        cls = next((t for t in kinds if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if cls is None:
            if depth + 1 < len(parts) and not any(t is dict or get_origin(t) is dict for t in kinds):
                return None, f"{'.'.join(parts[:depth + 1])} takes a value, not keys"
            break
    return parts, fixed


def repeated_option(argv: list[str]) -> str | None:
    """--config (or --configfile) given twice: argparse keeps the last one's words alone, and the first one's
    overrides (or study files) are dropped without a word. One line naming the fix; None when each is given once."""
    words = argv[:argv.index("--")] if "--" in argv else argv
    for options in (CONFIG_OPTIONS, OPTIONS):
        given = [word.partition("=")[0] for word in words if word.partition("=")[0] in options]
        if len(given) > 1:
            joined = " ".join(map(shlex.quote, option_words(argv, options)))
            return (f"{given[0]} is given {len(given)} times, and Snakemake would keep only the last one's words; "
                    f"give them all after one: {given[0]} {joined}")
    return None


def problem(path: str) -> str | None:
    """What keeps Snakemake from reading study file `path`, in one line naming the fix; None when it reads."""
    if not Path(path).is_file():
        return f"config file {path} does not exist; {missing_study_fix(Path(path))}"
    try:
        read_study_file(path)  # its base: chain too, with the same one-line errors the workflow gives
    except PicoError as exc:
        return str(exc)
    try:  # Snakemake's own reader knows no tags: it calls `!replace` "not valid JSON or YAML"
        yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as exc:
        return (f"config file {path} uses the tag {exc.problem.split()[-1] if exc.problem else '!replace'}, which "
                f"Snakemake cannot read in a --configfile; list the keys under 'replace: [...]' instead")
    return None


def missing_study_fix(path: Path) -> str:
    """A study file's name misspelt (the closest study file beside it), or a target typed after --configfile."""
    if path.suffix not in STUDY_SUFFIXES:
        return f"if it is a target, {TARGET_HINT}"
    close = similar_study(path)
    return f"did you mean {close}?" if close else "fix the path"


def targets(argv: list[str], parser) -> list[str]:
    """The targets Snakemake's own argument parser (`parser`, snakemake.cli.get_argument_parser: its first pass,
    without profiles) finds on this command line."""
    args = _snakemake_args(argv, parser)
    return list(args.targets or []) if args else []


def _snakemake_args(words: list[str], parser):
    """Snakemake's options and targets in `words` (its command line after the program), None for --help,
    --version or a usage error, which Snakemake answers itself (before any profile is read: never twice)."""
    if {"-h", "--help", "--version", "-v"} & set(words):
        return None
    try:
        return parser().parse_known_args(words)[0]
    except SystemExit:
        return None


# Snakemake's options that run no job: a command line with one of them writes nothing under results/
NO_JOB_OPTIONS = ("dryrun", "summary", "detailed_summary", "report", "lint", "list_changes", "list_input_changes",
                  "list_params_changes", "list_rules", "list_target_rules", "list_untracked", "list_conda_envs",
                  "dag", "rulegraph", "filegraph", "d3dag", "unlock", "cleanup_metadata", "cleanup_shadow",
                  "containerize", "export_cwl", "archive", "print_compilation", "generate_unit_tests",
                  "conda_cleanup_envs", "conda_create_envs_only", "delete_all_output", "delete_temp_output")


def runs_jobs(argv: list[str], parser, dry_run: bool = False) -> bool:
    """Whether Snakemake's command line `argv` (sys.argv) runs jobs, which write under results/: False for a dry
    run (unless `dry_run`: whether it plans jobs), a report, a summary, a graph or a lint, and for a process that is
    no snakemake command."""
    args = _snakemake_args(argv[1:], parser) if argv and "snakemake" in Path(argv[0]).as_posix() else None
    options = [option for option in NO_JOB_OPTIONS if not (dry_run and option == "dryrun")]
    return args is not None and not any(getattr(args, option, None) for option in options)


def _experiment_in(path: Path) -> str | None:
    """The experiment a study file names; None where it names none or does not read (the --configfile checks, or
    for the default study the workflow's own config error, say why in one line)."""
    try:
        return read_study_file(path).get("experiment")
    except PicoError:
        return None


def several_studies(files: list[str]) -> str | None:
    """Two --configfile files that each name an experiment: Snakemake would merge them key by key into a study
    that is neither, writing into the last one's results/ folder."""
    studies = [f for f in files if _experiment_in(Path(f))]
    if len(studies) < 2:
        return None
    last = _experiment_in(Path(studies[-1]))
    return (f"--configfile got {len(studies)} study files ({', '.join(studies)}), which Snakemake would merge key by "
            f"key into a mixed study writing into results/{last}/; give one study file "
            f"(one study builds on another with base:, docs/configuration.md)")


def experiment_of(argv: list[str]) -> str | None:
    """The experiment of this command line's study: its last study file that names one, or a --config override."""
    experiment = None
    for path in configfiles(argv) or [ROOT / DEFAULT_STUDY]:
        experiment = _experiment_in(path) or experiment
    for word in option_words(argv, CONFIG_OPTIONS):
        key, _, value = word.partition("=")
        experiment = value if key == "experiment" else experiment
    return experiment


def figure_problem(target: str) -> str | None:
    """results/<experiment>/figures/<name>.png (or .svg) with a name no figure has: Snakemake would say only
    "No rule to produce" it. One line naming the closest figure (one module of picollm.plots per figure)."""
    parts = Path(target).parts
    if len(parts) != 4 or parts[0] != "results" or parts[2] != "figures":
        return None
    name, ext = Path(parts[3]).stem, Path(parts[3]).suffix
    names = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "plots").glob("*.py") if p.stem != "__init__")
    if name in names and ext in (".png", ".svg"):
        return None
    close = difflib.get_close_matches(name, names, n=1)
    guess = f"did you mean {Path(*parts[:3], close[0] + '.png')}? " if close else ""
    return f"target {target} is no figure; {guess}the figures are {', '.join(names)} (.png or .svg)"


def path_problem(target: str, experiment: str | None) -> str | None:
    """A path of this study's misspelt in its folders: one with no results/<experiment>/ in front, a folder no study
    has, or a table no study makes. Snakemake would say only "No rule to produce" it. One line naming the closest
    path (layout.FOLDERS, and the tables of picollm.registry)."""
    parts = Path(target).parts
    if experiment is None or len(parts) < 2 or Path(target).exists():
        return None
    if parts[0] != layout.RESULTS:
        return outside_problem(target, experiment)
    if parts[1] != experiment or len(parts) < 4:
        return None
    if parts[2] not in layout.FOLDERS:
        close = difflib.get_close_matches(parts[2], layout.FOLDERS, n=1)
        guess = f"did you mean {Path(*parts[:2], close[0], *parts[3:])}? " if close else ""
        return (f"target {target} is in no folder a study writes; {guess}the folders of {Path(*parts[:2])}/ are "
                f"{', '.join(layout.FOLDERS)}")
    if parts[2] == "tables" and len(parts) == 4:
        names = table_names(layout.results_dir(experiment))
        if Path(parts[3]).stem in {Path(name).stem for name in names}:  # (an .html page of a .csv table too)
            return None
        close = difflib.get_close_matches(parts[3], names, n=1)
        guess = f"did you mean {Path(*parts[:3], close[0])}? " if close else ""
        return f"target {target} is no table; {guess}the tables are {', '.join(names)}"
    return None


def outside_problem(target: str, experiment: str) -> str | None:
    """figures/loss_curves.png, <experiment>/figures/... or result/<experiment>/...: a path of this study without
    its results/<experiment>/ in front. None for any other path (a file of one's own)."""
    parts = Path(target).parts
    if parts[0] in layout.FOLDERS:
        rest = parts
    elif parts[0] == experiment:
        rest = parts[1:]
    elif parts[1] == experiment and difflib.get_close_matches(parts[0], [layout.RESULTS]):
        rest = parts[2:]
    else:
        return None
    ours = layout.results_dir(experiment)
    return (f"target {target} lies outside {ours}/, where this command's study writes; did you mean "
            f"{Path(ours, *rest)}?")


def table_names(results: str) -> list[str]:
    """The files under `results`/tables/ of a study that makes every optional output (picollm.registry, which the
    rules are made from): one the study leaves out is named as its Snakefile is parsed."""
    files = registry.StudyFiles(SimpleNamespace(runs={}, seeds=[]), results)  # no run: tables are the study's
    every = registry.Makes(tokenizer=True, transformers=["transformer"], sweep=True, scaling=True, snapshots=True)
    made = registry.tables(files, every)
    pages = [files.table(f"{page}.html") for page in registry.report_pages(files, every, made)]
    paths = [*made.values(), *registry.results(files, every, {}, made), *pages, files.provenance_page]
    return sorted({Path(path).name for path in paths if Path(path).parent == Path(files.table(""))})


SEED_PART = re.compile(r"seed(\d+)(\.\w+)?$")  # seed1337/ or seed1337.json: the part before it names a run...
NOT_RUNS = {"reference", "sampling_reference"}  # ...but for the real stories' sampling measures (rules/evaluate.smk)


def study_target_problem(target: str, study: str, results: str, runs: list[str], seeds: list[int],
                         not_made: dict[str, str], figure_runs: dict[str, list[str]],
                         unexportable: dict[str, str] | None = None) -> str | None:
    """A target under this study's `results` folder that none of its rules makes, in one line naming why and the
    fix (Snakemake would say only "No rule to produce" it): a figure or table the study (`study`: its files)
    leaves out (`not_made`: {figure: what the study must set to make it}), a run it has not got (`runs`), a
    per-run figure of a run that figure does not draw (`figure_runs`), the export of a run that has no Hugging Face
    form (`unexportable`: {run: why}). Also a seed outside its `seeds`, which
    Snakemake would train, apart from the seeds every table compares. None for any other target, and for one
    already on disk."""
    parts, top = Path(target).parts, Path(results).parts
    if parts[:len(top)] != top or len(parts) < len(top) + 2 or Path(target).exists():
        return None
    folder, *rest = parts[len(top):]
    if folder in ("figures", "tables"):
        name = rest[0] if len(rest) > 1 else Path(rest[0]).stem
        for off, needs in not_made.items():
            if name == off or name.startswith(off + "_"):
                return f"target {target} is not made by this study ({study}): the {off} {folder[:-1]} needs {needs}"
        if folder == "figures" and len(rest) == 2 and name in figure_runs:
            run, drawn = Path(rest[1]).stem, figure_runs[name]
            if run not in drawn:
                return (f"target {target}: this study's ({study}) {name} figure draws the runs {', '.join(drawn)}, "
                        f"and not {run!r}")
    if folder == "hf" and rest[0] in (unexportable or {}):
        return f"target {target}: the run {rest[0]!r} of this study ({study}) does not export: {unexportable[rest[0]]}"
    for run, after in zip(rest, rest[1:]):
        if not (match := SEED_PART.match(after)):
            continue
        if int(match.group(1)) not in seeds:
            seed, listed = match.group(1), ", ".join(map(str, seeds))
            return (f"target {target} names seed {seed}, which this study ({study}) does not train; add it to the "
                    f"study's seeds (seeds: [{listed}, {seed}]) to train it and compare it with the others")
        if run not in runs and run not in NOT_RUNS:
            close = difflib.get_close_matches(run, runs, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            shown = ", ".join(runs[:8]) + (f" and {len(runs) - 8} more" if len(runs) > 8 else "")
            return (f"target {target} names the run {run!r}, which this study ({study}) has not got; {guess}its "
                    f"runs are {shown}")
    return None


def study_targets_problem(argv: list[str], parser, study_files: list, **study) -> str | None:
    """study_target_problem() for each target of Snakemake's command line `argv` (sys.argv: the Snakefile is
    parsed before Snakemake hands the workflow its targets), the study named by its files as given; None for a
    process that is no snakemake command (the Python API)."""
    if not argv or "snakemake" not in Path(argv[0]).as_posix():
        return None
    here = Path.cwd().resolve()
    named = " ".join(os.path.relpath(f) if Path(f).resolve().is_relative_to(here) else str(f)
                     for f in study_files or [DEFAULT_STUDY])
    problems = (study_target_problem(target, named, **study) for target in targets(argv[1:], parser))
    return next(filter(None, problems), None)


def target_problem(target: str, experiment: str | None, argv: list[str]) -> str | None:
    """A target under results/<other>/ when the study writes results/<experiment>/: Snakemake would say only
    "No rule to produce" it. One line naming the study file that writes it (a config/*.yaml of that experiment)."""
    parts = Path(target).parts
    if experiment is None or len(parts) < 3 or parts[0] != "results" or parts[1] in (experiment, "benchmarks"):
        return None
    if not experiment_name(experiment):  # the config check names that
        return None
    other = parts[1]
    renamed = [word for word in option_words(argv, CONFIG_OPTIONS) if word.partition("=")[0] == "experiment"]
    if renamed:  # the study file may well be the target's: the override moved its outputs
        ours = Path("results", experiment, *parts[2:])
        return (f"target {target} is an output of experiment '{other}', but --config {renamed[-1]} puts this "
                f"command's outputs under results/{experiment}/; target {ours}, or drop --config {renamed[-1]}")
    given = configfiles(argv)
    named = " ".join(given) or f"{DEFAULT_STUDY}, the default study"
    study, why = study_of(other)
    fix = f"name its study{' instead' if given else ''}: TARGET --configfile {study}{why}"
    return (f"target {target} is an output of experiment '{other}', but this command's study ({named}) is "
            f"experiment '{experiment}'; {fix}")


def built_as(path: Path) -> dict | None:
    """Study file `path` validated, as the study_config rule records a study (provenance/study.json); None where it
    does not validate."""
    try:
        return json.loads(json.dumps(jobs.study_file(load_study([path]))))
    except PicoError:
        return None


def study_of(experiment: str) -> tuple[str, str]:
    """The study file that writes results/<experiment>/ for a target's fix, and why it. A copied study file keeps
    its experiment, so several config/*.yaml may name it: the one whose config is the study as last built, else
    every one that validates (a scratch copy may not), else the config it was last built with."""
    files = [f for f in sorted((ROOT / "config").glob("*.yaml")) if _experiment_in(f) == experiment]
    records = {f: built_as(f) for f in files}
    valid = [f for f in files if records[f] is not None]
    # a study made of --config words has no file of its own, but the config it was last built with is one
    built = Path(layout.results_dir(experiment), "provenance", "study.json")
    try:
        last = json.loads(built.read_text())
    except (OSError, ValueError):
        last = None
    same = [f for f in valid if records[f] == last]
    if same:
        why = f" (the study file {built.parents[1]}/ was last built from)" if len(files) > 1 else ""
        return str(same[0].relative_to(ROOT)), why
    if last is not None and not valid:
        return str(built), " (the config it was last built with)"
    shown = [str(f.relative_to(ROOT)) for f in valid or files]
    if len(shown) == 1:
        return shown[0], ""
    if not shown:
        return "FILE", f", FILE being the study file with experiment: {experiment}"
    listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
    also = f"; or {built} (the config it was last built with)" if last is not None else ""
    return "FILE", f", FILE being one of the study files with experiment: {experiment} ({listed}){also}"


def main(argv: list[str] | None = None, parser=None) -> None:
    """Exit with one line on stderr when a --configfile or a --config word of this command line cannot be read, or
    (given Snakemake's `parser`) a target lies under another experiment's results/ folder or is misspelt in its
    folders, figure or table."""
    argv = sys.argv[1:] if argv is None else argv
    overrides = option_words(argv, CONFIG_OPTIONS)
    lines = [repeated_option(argv), *map(problem, configfiles(argv)), unquoted_mapping(overrides),
             *map(override_problem, overrides, [None, *overrides]), several_studies(configfiles(argv))]
    if parser and not any(lines):  # the study reads: its experiment against the targets' results/<experiment>/
        experiment = experiment_of(argv)
        lines = [target_problem(target, experiment, argv) or figure_problem(target) or path_problem(target, experiment)
                 for target in targets(argv, parser)]
    for line in filter(None, lines):
        print(f"error: {line}", file=sys.stderr)
        sys.exit(1)


def profile_check(parser=None, cluster: bool = False) -> None:
    """main(), as the profiles run it inside Snakemake's own process (which gives them its argument `parser`, so
    that picollm itself needs no snakemake), with this checkout's src/ on the path: then src/ and every picollm
    module are dropped again, so that the Snakefile imports the code of the checkout it belongs to
    (workflow/rules/common.smk), which need not be this one. `cluster` (profiles/slurm): a note when the command
    line drops resources the profile sets."""
    main(parser=parser)
    if cluster:
        from picollm.config.profile import dropped_resources  # (that module builds on this one)
        for note in dropped_resources(sys.argv[1:]):
            print(f"note: {note}", file=sys.stderr)
    src = str(Path(__file__).resolve().parents[2])
    if src in sys.path:
        sys.path.remove(src)
    for name in [m for m in sys.modules if m == "picollm" or m.startswith("picollm.")]:
        del sys.modules[name]
