"""The study files on Snakemake's command line, checked before Snakemake reads them.

Snakemake loads each `--configfile` itself, before any workflow code runs, and a file it cannot read ends in a
long traceback: a Latin-1 file, a figure or a target that followed `--configfile` (its nargs="+" takes every
word up to the next option), a missing file. The project's profiles (profiles/*/config.yaml) call
`profile_check()` while Snakemake parses them, which is earlier, so each of those is one line naming the file
and the fix.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from picollm.config.load import read_study_file
from picollm.errors import PicoError

OPTIONS = ("--configfile", "--configfiles")
TARGET_HINT = "put targets before --configfile (snakemake --cores 4 TARGET --configfile FILE)"


def configfiles(argv: list[str]) -> list[str]:
    """The files argparse would give --configfile: every word after it up to the next option."""
    files, taking = [], False
    for word in argv:
        if word == "--":
            taking = False
        elif word.startswith("-"):
            option, _, value = word.partition("=")
            taking = option in OPTIONS and not value
            if option in OPTIONS and value:
                files.append(value)
        elif taking:
            files.append(word)
    return files


def problem(path: str) -> str | None:
    """What keeps Snakemake from reading study file `path`, in one line naming the fix; None when it reads."""
    if not Path(path).is_file():
        return f"config file {path} does not exist; if it is a target, {TARGET_HINT}"
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


def main(argv: list[str] | None = None) -> None:
    """Exit with one line on stderr when a --configfile of this command line cannot be read."""
    for path in configfiles(sys.argv[1:] if argv is None else argv):
        line = problem(path)
        if line:
            print(f"error: {line}", file=sys.stderr)
            sys.exit(1)


def profile_check() -> None:
    """main(), as the profiles run it inside Snakemake's own process, which they gave this checkout's src/: then
    src/ and every picollm module are dropped again, so that the Snakefile imports the code of the checkout it
    belongs to (workflow/rules/common.smk), which need not be this one."""
    main()
    src = str(Path(__file__).resolve().parents[2])
    if src in sys.path:
        sys.path.remove(src)
    for name in [m for m in sys.modules if m == "picollm" or m.startswith("picollm.")]:
        del sys.modules[name]
