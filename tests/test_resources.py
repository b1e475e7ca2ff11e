"""Per-job cost: tables/resources.csv from the jobs' Snakemake benchmark files, and figures/resources.png."""
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from picollm import cli
from picollm.errors import PicoError
from picollm.resources import job_of, resources_table

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(root, job: str, *rows: tuple) -> str:
    """A benchmark file as Snakemake writes it: one (s, max_rss, cpu_time) row per measurement."""
    path = root / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:01\t{rss}\t1.0\t1.0\t1.0\t0.00\t0.00\t50.0\t{cpu}\n"
                                     for s, rss, cpu in rows))
    return str(path)


@pytest.fixture
def benchmarks(tmp_path):
    root = tmp_path / "results" / "exp" / "benchmarks"
    paths = [bench(root, "download/my.text", (1.5, 40.0, 0.5)),
             bench(root, "tokenize", (4.0, 230.0, 3.0)),
             bench(root, "train/lstm.hidden_dim=24/seed7", (30.0, 400.0, 28.0), (34.0, 410.0, 30.0)),  # repeat()
             bench(root, "train/transformer/seed8", (60.0, 500.0, 55.0)),
             bench(root, "sample/lstm.hidden_dim=24/seed7", (9.0, 250.0, 2.0)),
             bench(root, "figure_loss_curves", (0.4, "NA", "NA"))]  # over before Snakemake's first sample
    return root, paths


def test_one_row_per_job_from_its_benchmark_file(benchmarks, tmp_path):
    root, paths = benchmarks
    table = resources_table(paths, root, tmp_path / "resources.csv")
    read = pd.read_csv(tmp_path / "resources.csv")
    assert list(read.columns) == ["rule", "run", "seed", "wall_s", "max_rss_mib", "cpu_s", "measured_by", "host",
                                  "slurm_job", "slurm_mem_mb"]
    assert set(read["measured_by"]) == {"snakemake samples"}  # no provenance records given
    assert list(read["rule"]) == ["download", "tokenize", "train", "train", "sample", "figure_loss_curves"]
    assert read["run"].fillna("").tolist() == ["my.text", "", "lstm.hidden_dim=24", "transformer", "lstm.hidden_dim=24",
                                                ""]
    assert read["seed"].tolist()[2:5] == [7, 8, 7] and read["seed"].iloc[[0, 1, 5]].isna().all()
    train = read.iloc[2]
    assert (train["wall_s"], train["max_rss_mib"], train["cpu_s"]) == (32.0, 405.0, 29.0)  # the mean of the repeats
    assert read.iloc[5][["max_rss_mib", "cpu_s"]].isna().all() and read.iloc[5]["wall_s"] == 0.4
    assert len(table) == len(paths)


def test_a_jobs_own_count_of_cpu_and_memory_replaces_snakemakes_samples(benchmarks, tmp_path):
    """Snakemake samples a job every 0.5 s for 15 s, then every 30 s, and misses what ran after its last sample.
    The job's provenance record holds the kernel's count (provenance.usage), which the table takes instead."""
    from picollm import provenance
    root, paths = benchmarks
    given, usage = {}, {}  # {benchmark file: its job's record}, as the resources rule passes them (common.smk)
    for job, prov in [("train/transformer/seed8", "train/transformer/seed8"),
                      ("figure_loss_curves", "figures/loss_curves")]:
        record = root.parent / "provenance" / f"{prov}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        provenance.write(record, provenance.record("x"))
        given[str(root / f"{job}.tsv")], usage[job] = str(record), json.loads(record.read_text())["usage"]
    own = usage["train/transformer/seed8"]
    assert own["cpu_s"] > 0 and own["max_rss_mib"] > 10  # this test's process: it has imported pandas and torch
    read = resources_table(paths, root, tmp_path / "resources.csv", records=given).set_index("rule")
    train = read.loc["train"].set_index("run").loc["transformer"]
    assert (train["cpu_s"], train["max_rss_mib"], train["measured_by"]) == (own["cpu_s"], own["max_rss_mib"], "job")
    assert train["wall_s"] == 60.0  # the wall time stays Snakemake's: the job's whole life, start-up included
    assert read.loc["figure_loss_curves", "measured_by"] == "job" and read.loc["figure_loss_curves", "cpu_s"] > 0
    assert read.loc["tokenize", "measured_by"] == "snakemake samples" and read.loc["tokenize", "cpu_s"] == 3.0
    first = dict(list(given.items())[:1])
    unlisted = resources_table(paths, root, tmp_path / "r2.csv", records=first).set_index("rule")
    assert unlisted.loc["figure_loss_curves", "measured_by"] == "snakemake samples"  # only the records given


def test_a_slurm_jobs_row_names_its_job_and_the_memory_it_was_granted(benchmarks, tmp_path, monkeypatch):
    """In a SLURM job the record names the job, its node, and the memory sbatch granted (SLURM's environment):
    the row sets that beside the peak the job used; outside SLURM those cells are empty and the host is named."""
    import platform

    from picollm import provenance
    root, paths = benchmarks
    records = {}
    for job, env in [("train/transformer/seed8", {"SLURM_JOB_ID": "301", "SLURMD_NODENAME": "gpu07",
                                                  "SLURM_MEM_PER_NODE": "8000", "SLURM_CPUS_PER_TASK": "4"}),
                     ("tokenize", {})]:
        for var in ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_MEM_PER_NODE", "SLURM_CPUS_PER_TASK"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        records[str(root / f"{job}.tsv")] = record = root.parent / "provenance" / f"{job}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        provenance.write(record, provenance.record("x"))
    assert json.loads(record.read_text())["slurm"] is None
    resources_table(paths, root, tmp_path / "resources.csv", records=records)
    read = pd.read_csv(tmp_path / "resources.csv").set_index("rule")
    train = read.loc["train"].set_index("run").loc["transformer"]
    assert (train["slurm_job"], train["slurm_mem_mb"], train["host"]) == (301, 8000, platform.node())
    assert read.loc["tokenize", "host"] == platform.node()
    assert read.loc["tokenize", ["slurm_job", "slurm_mem_mb"]].isna().all()
    assert json.loads((root.parent / "provenance/train/transformer/seed8.json").read_text())["slurm"] == {
        "job_id": "301", "node": "gpu07", "cpus": 4, "mem_mb": 8000}



def test_the_memory_slurm_granted_is_read_from_scontrol_where_the_job_step_dropped_its_variables(tmp_path,
                                                                                                 monkeypatch):
    """The SLURM executor's job step drops SLURM_MEM_PER_NODE: the record asks scontrol (--mem per node, or
    --mem-per-cpu times the job's CPUs, in its units)."""
    from picollm import provenance
    scontrol = tmp_path / "scontrol"
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "301")
    for var in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU"):
        monkeypatch.delenv(var, raising=False)
    for shown, mb in [("NumCPUs=4 MinMemoryNode=8000M", 8000), ("NumCPUs=4 MinMemoryNode=8G", 8192),
                      ("NumCPUs=4 MinMemoryCPU=2000M", 8000), ("NumCPUs=4", None)]:
        scontrol.write_text(f"#!/bin/sh\necho 'JobId=301 JobName=x {shown} Features=(null)'\n")
        scontrol.chmod(0o755)
        assert provenance.slurm_job()["mem_mb"] == mb, shown


def test_where_a_job_is_read_from_its_path(tmp_path):
    assert job_of(tmp_path / "download/seed5.tsv", tmp_path) == {"rule": "download", "run": "seed5", "seed": None}
    assert job_of(tmp_path / "evaluate/m/seed12.tsv", tmp_path) == {"rule": "evaluate", "run": "m", "seed": 12}
    assert job_of(tmp_path / "report.tsv", tmp_path) == {"rule": "report", "run": None, "seed": None}
    assert job_of(tmp_path / "sampling_reference/seed3.tsv", tmp_path) == {"rule": "sampling_reference", "run": None,
                                                                           "seed": 3}


def test_each_files_job_as_the_workflow_names_it(benchmarks, tmp_path):
    """The resources rule gives every benchmark file's job and record (picollm.registry); a file it does not name
    is read from its path."""
    root, paths = benchmarks
    record = root.parent / "provenance" / "tokenize.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    from picollm import provenance
    provenance.write(record, provenance.record("x"))
    given = {paths[1]: {"rule": "tokenize_all", "run": None, "seed": None, "record": str(record)},
             paths[5]: {"rule": "figure_loss_curves", "run": None, "seed": None}}  # no record: none
    csv, prov = tmp_path / "resources.csv", tmp_path / "prov.json"
    assert cli.main(["resources", "--config", json.dumps({"experiment": "exp"}), "--root", str(root), "--benchmarks",
                     *paths, "--jobs", json.dumps(given), "--out", str(csv), "--provenance", str(prov)]) == 0
    read = pd.read_csv(csv)
    assert list(read["rule"]) == ["download", "tokenize_all", "train", "train", "sample", "figure_loss_curves"]
    assert read.loc[1, "measured_by"] == "job" and read.loc[5, "measured_by"] == "snakemake samples"
    assert set(json.loads(prov.read_text())["inputs"]) == {*paths, str(record)}


def test_a_file_that_is_no_benchmark_is_one_line(tmp_path):
    (tmp_path / "tables.tsv").write_text("not\ta benchmark\n1\t2\n")
    with pytest.raises(PicoError) as err:
        resources_table([tmp_path / "tables.tsv"], tmp_path, tmp_path / "out.csv")
    assert "\n" not in str(err.value) and "not a Snakemake benchmark file" in str(err.value)
    assert not (tmp_path / "out.csv").exists()


def test_the_command_and_the_figure(benchmarks, tmp_path):
    root, paths = benchmarks
    csv, png = tmp_path / "tables" / "resources.csv", tmp_path / "figures" / "resources.png"
    config = json.dumps({"experiment": "exp"})
    assert cli.main(["resources", "--config", config, "--root", str(root), "--benchmarks", *paths, "--out", str(csv),
                     "--provenance", str(tmp_path / "prov.json")]) == 0
    assert set(json.loads((tmp_path / "prov.json").read_text())["inputs"]) == set(paths)
    assert cli.main(["figure", "resources", "--config", config, "--inputs", str(csv), "--out", str(png)]) == 0
    assert png.stat().st_size > 0 and png.with_suffix(".svg").stat().st_size > 0


def test_the_figure_sums_each_stage_by_run(benchmarks, tmp_path):
    from picollm.plots.resources import STUDY_WIDE, by_stage, figure
    root, paths = benchmarks
    paths = [*paths[:-1], bench(root, "sampling_reference/seed7", (2.0, 300.0, 1.5)), paths[-1]]  # per seed, no run
    frame = resources_table(paths, root, tmp_path / "resources.csv")
    fig = figure(tmp_path / "resources.csv", "exp")
    wall, cpu = fig.axes[:2]
    assert [t.get_text() for t in wall.get_yticklabels()] == ["download", "tokenize", "train", "sample",
                                                              "sampling_reference", "figures"]
    # the runs in every figure's order (models, then sweep points); the reference job is study-wide, not "nan"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["transformer", "lstm.hidden_dim=24", STUDY_WIDE]
    frame["stage"] = frame["rule"]
    frame["who"] = frame["run"].where(frame["seed"].notna() & frame["run"].notna(), STUDY_WIDE)
    table = by_stage(frame, "wall_s", ["train", "sampling_reference"], ["lstm.hidden_dim=24", "transformer", STUDY_WIDE])
    assert table.loc["train"].tolist() == [32.0, 60.0, 0.0]
    assert table.loc["sampling_reference"].tolist() == [0.0, 0.0, 2.0]
    stacked = {name: [bar.get_width() for bar in bars] for bars in wall.containers for name in [bars.get_label()]}
    assert stacked[STUDY_WIDE][4] == 2.0  # the sampling_reference bar is grey
    assert "peak 500 MiB" in " ".join(t.get_text() for t in cpu.texts)
    # the figure job ended before Snakemake's first sample: said, not drawn as 0 s and 0 MiB
    assert cpu.texts[-1].get_text().strip() == "ended before it was sampled"
    assert cpu.get_title() == "CPU seconds: 91.0 s in all" and wall.get_title() == "wall-clock seconds: 109 s in all"
    # no job's own count here: Snakemake's samples miss what ran after the last one
    assert "at least 84.0 s (sampled), peak 500 MiB" in " ".join(t.get_text() for t in cpu.texts)


def test_every_measured_rule_has_its_place_in_the_pipeline_order():
    """The figure lists the stages in the order they run (STAGES): every rule whose benchmark it reads has one."""
    from picollm.plots.resources import STAGES, stage_of
    rules = {match.group(1) for smk in (ROOT / "workflow" / "rules").glob("*.smk")
             for match in re.finditer(r"^\s*rule (\w+):", smk.read_text(), re.M)}
    unmeasured = {"study_config", "report_tables", "report", "resources", "lm_eval_task"}  # after it, or not in `all`
    assert "scaling" in rules and {stage_of(rule) for rule in rules - unmeasured} <= set(STAGES)
    assert STAGES.index("eval_tables") < STAGES.index("scaling") < STAGES.index("figures")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's /proc: VmHWM")
def test_a_jobs_peak_memory_is_its_own_not_its_parents(tmp_path):
    """A job started by a large process (Snakemake) counts its own peak: Linux carries ru_maxrss over fork + exec,
    so a small job would read the parent's."""
    import subprocess
    import sys
    child = "from picollm.provenance import usage; print(usage()['max_rss_mib'])"
    parent = ("import subprocess, sys; big = bytearray(400 << 20); big[::4096] = b'x' * len(big[::4096]); "
              f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True).stdout)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 200  # the child's own: an interpreter and picollm.provenance, not the 400 MiB
