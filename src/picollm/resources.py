"""Where a study's time went: every job's Snakemake benchmark file (`benchmark:` in workflow/rules/) in one table.

A job's benchmark file is benchmarks/<rule>[/<run or source>][/seed<k>].tsv under results/<experiment>/ (the
workflow spells each job's files in picollm.registry and names each file's job to the table), one row per
measurement: the wall-clock seconds (`s`), the peak resident memory of the job's processes in MiB
(`max_rss`) and their CPU seconds (`cpu_time`); NA where the job ended before Snakemake's first sample.
Snakemake samples CPU and memory now and then, so a job's own count replaces them where it wrote one: the
`usage` of its provenance record (picollm.provenance.usage), counted by the kernel. `measured_by` says which.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from picollm.errors import PicoError
from picollm.io import write_csv

COLUMNS = ["rule", "run", "seed", "wall_s", "max_rss_mib", "cpu_s", "measured_by", "host", "slurm_job",
           "slurm_mem_mb"]
MEASURES = {"s": "wall_s", "max_rss": "max_rss_mib", "cpu_time": "cpu_s"}  # Snakemake's column -> ours


def job_of(path, root) -> dict:
    """{rule, run, seed} of a benchmark file from where it lies under `root` (run and seed None where the job
    has none; `run` is the data source of a download job): for a file whose job is not given."""
    rule, *rest = Path(path).relative_to(root).with_suffix("").parts
    seed = None
    # <run>/seed<k>, or seed<k> alone for a job per seed (a download's one part is its source, whatever its name)
    if rest and re.fullmatch(r"seed\d+", rest[-1]) and (len(rest) == 2 or rule != "download"):
        seed, rest = int(rest[-1][4:]), rest[:-1]
    return {"rule": rule, "run": rest[0] if rest else None, "seed": seed}


def read_benchmark(path) -> dict:
    """The mean of a benchmark file's measurements (more than one under Snakemake's repeat())."""
    try:
        frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PicoError(f"cannot read the benchmark file {path} ({type(exc).__name__}); rerun its job") from None
    if not set(MEASURES) <= set(frame.columns) or frame.empty:
        raise PicoError(f"{path} is not a Snakemake benchmark file (no {', '.join(MEASURES)} columns); rerun its job")
    return {ours: pd.to_numeric(frame[theirs], errors="coerce").mean() for theirs, ours in MEASURES.items()}


def job_usage(record) -> dict:
    """{cpu_s, max_rss_mib, measured_by: "job"} from a job's provenance record (None: the job wrote none) where it
    holds its usage; {measured_by: "snakemake samples"} otherwise. With the machine that ran it (host) and, in a
    SLURM job, its job id and the memory sbatch granted it (slurm_job, slurm_mem_mb: beside max_rss_mib, what
    the profile's mem_mb could be). A training restored from finished/ costs what
    its training did: the kept record's usage, its wall seconds too ("job, restored")."""
    if record is not None:
        try:
            rec = json.loads(Path(record).read_text())
        except (OSError, ValueError):
            raise PicoError(f"cannot read the provenance record {record}; rerun its job") from None
        usage, slurm = rec.get("usage"), rec.get("slurm") or {}
        where = {"host": rec.get("host"), "slurm_job": slurm.get("job_id"), "slurm_mem_mb": slurm.get("mem_mb")}
        if usage:
            restored = bool(rec.get("restored")) and usage.get("wall_s") is not None
            return {"cpu_s": usage["cpu_s"], "max_rss_mib": usage["max_rss_mib"],
                    **({"wall_s": usage["wall_s"]} if restored else {}),
                    "measured_by": "job, restored" if restored else "job", **where}
        return {"measured_by": "snakemake samples", **where}
    return {"measured_by": "snakemake samples"}


def by_file(mapping: dict | None) -> dict:
    """A {benchmark file: value} mapping keyed by the files' normalised paths."""
    return {str(Path(k)): v for k, v in (mapping or {}).items()}


def job_row(path, root, records: dict, jobs: dict) -> dict:
    """A benchmark file's row: its job, the file's measures, and the job's own count where its record holds one."""
    key = str(Path(path))
    job = jobs[key] if key in jobs else job_of(path, root)
    return {**job, **read_benchmark(path), **job_usage(records.get(key))}


def resources_table(paths, root, out_csv, records: dict | None = None, jobs: dict | None = None) -> pd.DataFrame:
    """tables/resources.csv: one row per job (rule, run, seed, wall_s, max_rss_mib, cpu_s, measured_by, host,
    slurm_job, slurm_mem_mb), in the order given; CPU and memory from the job's own provenance record, `records`
    ({benchmark file: record}). Each file's job as `jobs` names it ({benchmark file: {rule, run, seed}}), else from
    where it lies under `root`."""
    records, jobs = by_file(records), by_file(jobs)
    frame = pd.DataFrame([job_row(p, root, records, jobs) for p in paths], columns=COLUMNS)
    frame["seed"] = frame["seed"].astype("Int64")
    frame["slurm_mem_mb"] = frame["slurm_mem_mb"].astype("Int64")
    write_csv(out_csv, frame.round({"wall_s": 3, "max_rss_mib": 1, "cpu_s": 3}))
    return frame
