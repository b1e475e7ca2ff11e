"""`python -m benchmarks [--only NAME ...] [--quick] [--out results/benchmarks] [--threads N] [--minutes M] [--device D]`.

Runs the benchmarks in order, writes <out>/<name>.json after each, and rebuilds <out>/benchmarks.md from
every JSON in <out> (so `--only` refreshes one section and keeps the others). A benchmark that cannot run here
(the gpu benchmark without a CUDA GPU) says so in one line and writes no JSON, so a section measured elsewhere
stays.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import torch

BENCHMARKS = {  # name -> module with run(sizes, peak) -> dict
    "train": "benchmarks.train_speed",
    "kgram": "benchmarks.kgram_speed",
    "generation": "benchmarks.generation",
    "memory": "benchmarks.memory",
    "study": "benchmarks.study",
    "compact": "benchmarks.compact_vocab",
    "tokenize": "benchmarks.tokenize_speed",
    "budget": "benchmarks.budget",
    "recipe": "benchmarks.recipe",
    "vocab": "benchmarks.vocab",
    "scaling": "benchmarks.scaling",
    "gpu": "benchmarks.gpu",
    "lm_eval": "benchmarks.lm_eval_agreement",
}
MARKDOWN = "benchmarks.md"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                    help=f"run only these ({', '.join(BENCHMARKS)}); default: all")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and no study runs: checks the harness in seconds; the numbers mean nothing")
    ap.add_argument("--out", default="results/benchmarks", help="folder for <name>.json and benchmarks.md")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="training minutes per recipe of the budget benchmark (default 10; --quick: 0.05)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per recipe of the recipe benchmark (default 3; --quick: 1)")
    ap.add_argument("--first-seed", type=int, default=None,
                    help="recipe benchmark: the first of the --seeds consecutive seeds (default 1337)")
    ap.add_argument("--recipes", nargs="+", default=None, metavar="RECIPE",
                    help="only these rows of the recipe benchmark (default: all)")
    ap.add_argument("--full-vocab", action="store_true",
                    help="recipe benchmark: train and score over the full vocabulary, not the compact output layer")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                    help="gpu benchmark: auto (the CUDA GPU if there is one, else nothing measured), cuda, or cpu "
                         "(with --quick: every check at tiny sizes on the CPU, to test the harness)")
    return ap.parse_args(argv)


def study_sizes(args):
    """The sizes of --quick or the full run, with the options that override them."""
    from benchmarks.common import sizes

    sz = sizes(args.quick, args.threads)
    given = {"budget_minutes": args.minutes, "recipe_seeds": args.seeds, "first_seed": args.first_seed}
    sz = dataclasses.replace(sz, **{key: value for key, value in given.items() if value is not None})
    return dataclasses.replace(sz, recipes=tuple(args.recipes or ()), full_vocab=args.full_vocab, out=args.out,
                               device=args.device)


def available(names: list, sz) -> tuple[list, list]:
    """(the benchmarks this machine can run, those it cannot that count as failed): a benchmark that cannot run
    here (its module's unavailable(sz) gives (line, whether that is a failure)) says so once and writes nothing."""
    runnable, failed = [], []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        why = module.unavailable(sz) if hasattr(module, "unavailable") else None
        if why:
            print(why[0], flush=True)
            failed += [name] if why[1] else []
        else:
            runnable.append(name)
    return runnable, failed


def run_one(name: str, sz, peak: dict, args, command: str) -> dict:
    """One benchmark's record: its result with the command, commit, machine and sizes it was measured with; a
    benchmark that raises is recorded as FAILED with its traceback, and the others go on."""
    from benchmarks.common import CLEAN_RULE, machine_info, now_utc
    from picollm.provenance import git_state

    t, started, machine = time.perf_counter(), now_utc(), machine_info(args.threads)
    try:
        result = importlib.import_module(BENCHMARKS[name]).run(sz, peak)
    except Exception as exc:
        result = {"title": f"{name} (FAILED)", "error": f"{type(exc).__name__}: {exc}"[-4000:],
                  "traceback": traceback.format_exc()[-4000:], "results": {}, "targets": [], "notes": [],
                  "table": {"columns": [], "rows": []}}
    # the commit measured, which the docs' benchmarks page names and dates the record's study files by
    git = git_state()
    return {"benchmark": name, "command": command, "started_utc": started, "wall_s": round(time.perf_counter() - t, 1),
            "commit": git["commit"] and git["commit"][:7], "dirty": git["dirty"],
            "quick": args.quick, "machine": {**machine, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
            "peak_matmul": peak, "sizes": sz.as_dict(), "sample_rule": CLEAN_RULE, **result}


def status(result: dict) -> str:
    """'' when every target is met; else the error or the targets missed."""
    missed = [target["target"] for target in result.get("targets", []) if not target["met"]]
    error = result.get("error") or "; ".join(result.get("errors") or [])
    if error:
        return f"FAILED: {error.splitlines()[0]}"
    return "missed: " + "; ".join(missed) if missed else ""


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(args.threads)
    from benchmarks.common import machine_info, machine_line, peak_matmul
    from picollm.io import write_json, write_text

    sz = study_sizes(args)
    names, failed = available(args.only or list(BENCHMARKS), sz)
    if not names:
        return 1 if failed else 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"benchmarks: {', '.join(names)}{' (quick)' if args.quick else ''} -> {out}", flush=True)
    peak = peak_matmul(sz.peak_sizes)
    print(f"  machine: {machine_line(machine_info(args.threads), peak)}", flush=True)
    for name in names:
        result = run_one(name, sz, peak, args, command)
        write_json(out / f"{name}.json", result)
        if result.get("error") or result.get("errors"):
            failed.append(name)
        print(f"  {name}: {result['wall_s']:.0f} s {status(result)}", flush=True)
        if result.get("headline"):  # the ratios that benchmark exists for, on this machine
            print(f"    {result['headline']}", flush=True)
    write_text(out / MARKDOWN, markdown(out))
    print(f"wrote {out / MARKDOWN}")
    if failed:
        print(f"failed: {', '.join(failed)} (see the 'error' or 'errors' in their JSON)", file=sys.stderr)
    return 1 if failed else 0


def markdown(out: Path) -> str:
    """One Markdown document from every <name>.json in `out`, in benchmark order."""
    from benchmarks.common import CLEAN_RULE, fmt, machine_line
    results = []
    for name in BENCHMARKS:
        path = out / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    lines = ["# pico-llm benchmarks", "",
             "Written by `python -m benchmarks` (see docs/benchmarks.md). Each comparison ran side by side in one "
             "process, interleaved, after warm-up; times are medians of >= 5 measured repetitions. The machine may be "
             f"shared, so {CLEAN_RULE}.", ""]
    # The machine table describes the CPU benchmarks; the gpu section names its own GPU machine.
    cpu_results = [r for r in results if r["benchmark"] != "gpu"] or results
    machines = {json.dumps({k: r["machine"][k] for k in ("cpu_model", "torch_threads", "torch", "device")})
                for r in cpu_results}
    if results:
        m, p = cpu_results[-1]["machine"], cpu_results[-1]["peak_matmul"]
        lines += ["| machine | |", "| --- | --- |",
                  f"| CPU | {m['cpu_model']} ({m['logical_cpus']} logical CPUs, {m['cpu_capability']}) |",
                  f"| torch threads | {m['torch_threads']} |",
                  f"| torch / transformers | {m['torch']} / {m['transformers']} |",
                  f"| device | {m['device']} |",
                  f"| peak fp32 matmul | {p['peak_gflops']:,.0f} GFLOP/s ({p['method']}) |",
                  f"| in one line | {machine_line(m, p) if 'bf16_gflops' in p else m['cpu_model']} |", ""]
        if len(machines) > 1:
            lines += ["**Note:** these sections were measured on different machines or settings; see each JSON's "
                      "`machine`.", ""]
    for r in results:
        lines += [f"## {r['title']}", "",
                  f"`{r['benchmark']}.json`, measured {r['started_utc']}{' with --quick (numbers meaningless)' if r['quick'] else ''}, "
                  f"load average {r['machine']['load_average']} at start.", ""]
        if "error" in r:
            lines += ["```", r["error"], "```", ""]
        table = r["table"]
        if table["rows"]:
            lines.append("| " + " | ".join(table["columns"]) + " |")
            lines.append("| " + " | ".join("---" for _ in table["columns"]) + " |")
            for row in table["rows"]:
                lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
            lines.append("")
        for t in r.get("targets", []):
            lines.append(f"- Target: {t['target']}: **{t.get('display') or fmt(t['value'], 2)}**, {'met' if t['met'] else 'MISSED'}.")
        if r.get("targets"):
            lines.append("")
        for note in r.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
