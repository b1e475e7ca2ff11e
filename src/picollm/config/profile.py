"""A Snakemake profile's resource maps as a run takes them, for the SLURM profile's checks (picollm.slurm, and the
note of command_line.profile_check).

A profile's `default-resources` and `set-resources` are the defaults of the command-line options of those names:
an option given on the command line replaces the profile's whole map. Either may be written as a mapping or as a
list of the command line's words (`name=value`, `rule:name=value`).
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from picollm.config.command_line import ROOT, option_words

RESOURCE_MAPS = {"--set-resources": "set-resources", "--default-resources": "default-resources"}
# the profile files Snakemake 9 reads in a profile folder, most specific first
PROFILE_FILES = ("config.v9+.yaml", "config.v8+.yaml", "config.yaml", "profile.v9+.yaml", "profile.v8+.yaml",
                 "profile.yaml")
# resources Snakemake holds as one (a job takes either form, never both)
SAME_AS = {"mem": "mem_mb", "mem_mib": "mem_mb", "disk": "disk_mb", "disk_mib": "disk_mb"}


def option_value(argv: list[str], option: str) -> str | None:
    """The value of a one-value option (`--profile DIR` or `--profile=DIR`), the last one given."""
    value = None
    for i, word in enumerate(argv):
        if word == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith(option + "="):
            value = word.partition("=")[2]
    return value


def profile_file(argv: list[str]) -> Path | None:
    """The file of the profile this command line names (--profile, else $SNAKEMAKE_PROFILE), found where Snakemake
    looks: a path (from the working directory, else, Snakemake having gone to --directory, from the checkout), or a
    name in ~/.config/snakemake or /etc/xdg/snakemake. None where there is none."""
    named = option_value(argv, "--profile") or os.environ.get("SNAKEMAKE_PROFILE")
    if not named:
        return None
    if Path(named).is_file():
        return Path(named)
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for folder in (Path(named), ROOT / named, config_home / "snakemake" / named, Path("/etc/xdg/snakemake", named)):
        found = next((folder / name for name in PROFILE_FILES if (folder / name).is_file()), None)
        if found:
            return found
    return None


def read_profile(path: Path | None) -> dict:
    """A profile file's settings ({} for none, or one that does not read as a mapping)."""
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, yaml.YAMLError):
        return {}
    return settings if isinstance(settings, dict) else {}


def as_map(value, per_rule: bool) -> dict:
    """A resource map as a mapping ({rule: {name: value}} `per_rule`, else {name: value}), from the profile's
    mapping or its list of words."""
    if isinstance(value, dict):
        return {k: (v if isinstance(v, dict) else {}) for k, v in value.items()} if per_rule else value
    if not isinstance(value, list):
        return {}
    found: dict = {}
    for word in map(str, value):
        name, _, setting = word.partition("=")
        if per_rule:
            rule, _, name = name.partition(":")
            found.setdefault(rule, {})[name] = setting
        else:
            found[name] = setting
    return found


def resource_maps(argv: list[str], profile: dict) -> tuple[dict, dict]:
    """(set-resources {rule: {name: value}}, default-resources {name: value}) as the run takes them: the command
    line's option replacing the profile's whole map."""
    maps = []
    for option, key in RESOURCE_MAPS.items():
        given = any(word.partition("=")[0] == option for word in argv)
        maps.append(as_map(option_words(argv, (option,)) if given else profile.get(key), key == "set-resources"))
    return maps[0], maps[1]


def dropped_resources(argv: list[str]) -> list[str]:
    """--set-resources or --default-resources on the command line replaces the profile's whole map of that name:
    one note per option that drops resources the profile sets (training's memory, every job's time limit), naming
    them and the words that keep them. None without a profile."""
    path = profile_file(argv)
    profile, notes = read_profile(path), []
    for option, key in RESOURCE_MAPS.items():
        if not any(word.partition("=")[0] == option for word in argv):
            continue
        words, ours = option_words(argv, (option,)), as_map(profile.get(key), key == "set-resources")
        if key == "set-resources":  # as the command line's rule:name=value
            ours = {f"{rule}:{name}": value for rule, values in ours.items() for name, value in values.items()}
        typed = {_same(word.partition("=")[0]) for word in words}
        dropped = [f"{name}={value}" for name, value in ours.items() if _same(name) not in typed]
        if dropped:
            notes.append(f"{option} on the command line replaces the whole {key} of {path}, so its "
                         f"{', '.join(dropped)} no longer apply; to keep them, give them too: "
                         f"{option} {' '.join(map(shlex.quote, words + dropped))} (or edit the profile instead)")
    return notes


def _same(name: str) -> str:
    """A resource's name (rule:name or name) in the one form of the resources Snakemake holds as one."""
    rule, colon, resource = name.rpartition(":")
    return f"{rule}{colon}{SAME_AS.get(resource, resource)}"
