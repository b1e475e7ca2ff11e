"""`picollm <stage> ...`: the commands the Snakemake rules call (and a user can run by hand).

Every stage takes explicit input and output paths and its slice of the study config as `--config JSON`
(validated against the schema, defaults filled in), writes its outputs atomically, and a provenance
record. Bad input ends with one line, `error: ...`, on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from picollm import io
from picollm.errors import STOP_SIGNALS, Interrupted, PicoError, first_line
from picollm.layout import experiment_of


def _json(text: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text.lstrip().startswith("{") and (Path(text).suffix in (".yaml", ".yml", ".json") or _is_file(text)):
            raise argparse.ArgumentTypeError(
                f"takes the job's config keys as JSON, not a file ({text}); `snakemake -n -p TARGET --configfile "
                f"{text}` prints each job's command with its --config") from None
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of config keys, e.g. '{\"seed\": 1}'")
    return value


def _is_file(text: str) -> bool:
    """Whether `text` names a file (a study file given by habit); not for text no file name can be."""
    with contextlib.suppress(OSError, ValueError):
        return Path(text).is_file()
    return False


def _stage(sub, name: str, help: str, config_help: str):
    """A subcommand run by picollm.commands.<module>.run, with the options every stage shares."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--config", type=_json, default={}, help=f"its config keys as JSON, shaped like a study file: "
                                                           f"{config_help}; missing keys take the schema defaults")
    p.add_argument("--provenance", help="where to write the job's provenance record (JSON)")
    p.set_defaults(command=name.replace("-", "_"))
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picollm", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands for you: validate-config, generate, export; the others are the workflow's stages\n"
               "(`snakemake -n -p TARGET` prints the exact command a job runs)\n"
               "examples:\n"
               "  picollm validate-config config/offline.yaml --show\n"
               "  picollm generate results/offline/models/transformer/seed1337/model.pt \"0 1 1 2\" --p 0.9\n"
               "  picollm generate --help")
    parser.add_argument("--log", help="write all output (progress bars, errors) to this file; the one-line "
                                      "error of a failure also goes to the terminal")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="COMMAND")
    parser.stages = sub.choices  # {stage: its parser}, whose usage an error in its arguments shows
    _config_commands(sub)
    _data_stages(sub)
    _model_commands(sub)
    _table_stages(sub)
    _evaluation_stages(sub)
    _sharing_commands(sub)
    return parser


def _config_commands(sub) -> None:
    """validate-config: study files checked as the workflow checks them."""
    p = sub.add_parser("validate-config", help="check study files as the workflow does")
    p.add_argument("config", nargs="+", help="a study file (it may name a base:), then any files of overrides "
                   "that name no experiment, merged in order, as --configfile takes them")
    p.add_argument("--show", action="store_true", help="print the config with every default filled in")
    p.set_defaults(command="validate_config")


def _data_stages(sub) -> None:
    """The data stages: each source's raw text, a tokenizer learnt from it, the token arrays."""
    p = _stage(sub, "download", "fetch or generate one data source's raw train/val text",
               '{"data": {"sources": [SOURCE]}, "seed": N}')
    p.add_argument("--train", required=True, help="output train.txt")
    p.add_argument("--val", required=True, help="output val.txt")

    p = _stage(sub, "train-tokenizer", "learn a byte-level BPE (tokenizer: bpe:N) from every source's training text",
               '{"tokenizer": "bpe:N"}')
    p.add_argument("--train", nargs="+", required=True, help="every source's train.txt")
    p.add_argument("--out", required=True, help="tokenizer.json to write")
    p.add_argument("--threads", type=positive_int, default=1)

    p = _stage(sub, "tokenize", "raw text of every source -> {train,val}.bin + meta.json", '{"tokenizer": NAME}')
    p.add_argument("--raw-dir", required=True, help="folder holding <source>/{train,val}.txt")
    p.add_argument("--sources", nargs="+", required=True, help="source names, in config order")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--tokenizer-json", help="tokenizer.json of a bpe:N tokenizer (the train-tokenizer output)")


def _model_commands(sub) -> None:
    """Training, and a model's continuations: the sample stage's, and generate's of your prompts."""
    p = _stage(sub, "train", "train one model; resumes from <out-dir>/last.pt if present",
               '{"models": {NAME: MODEL}, "train": {...}, "seed": N, "block_size": N, ...}')
    p.add_argument("--tokens-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the job on each node (split over its devices)")
    p.add_argument("--devices", type=int, default=1, help="data-parallel processes per node (torchrun is started)")
    p.add_argument("--nodes", type=int, default=1, help="nodes of a SLURM job, one torchrun on each (srun)")
    p.add_argument("--loggers", help="live trackers, comma-separated (train.loggers: tensorboard, "
                                                 "mlflow, wandb); they watch the run and change nothing in it")
    p.add_argument("--checkpoint-interval", type=positive_int,
                   help="steps between rolling checkpoints (train.checkpoint_interval; default: the --config's)")
    p.add_argument("--tracking-dir", help="results/<experiment>: the trackers' files go under it and take its name "
                                          "(default: --out-dir)")

    p = _stage(sub, "sample", "greedy and nucleus samples of one model -> JSONL",
               '{"sampling": {"prompts": [...], "p_values": [...], ...}, "seed": N}')
    p.add_argument("--name", required=True)
    p.add_argument("--model-path", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--out", required=True)

    p = sub.add_parser("generate", help="a trained model's continuations of your prompts, drawn as the sample stage "
                                        "draws them")
    p.add_argument("model_path", help="model.pt, e.g. results/offline/models/transformer/seed1337/model.pt")
    p.add_argument("prompts", nargs="*", help="prompts to continue, before or after the options (default: one empty "
                                           "prompt, a new story)")
    p.add_argument("--p", type=float, help="nucleus sampling with this top-p (default: greedy decoding)")
    p.add_argument("--num-samples", type=int, default=1, help="samples per prompt (with --p; default: 1)")
    p.add_argument("--max-new-tokens", type=int, help="tokens per continuation at most (default: the "
                   "sampling.max_new_tokens of the model's study, from results/<experiment>/provenance/study.json; "
                   "else the schema's)")
    p.add_argument("--seed", type=int, help="the samples' base seed (default: the seed the model was trained with, "
                                            "as the sample stage uses)")
    p.add_argument("--no-stop", action="store_true", help="go on past the end-of-text token instead of ending there")
    p.add_argument("--jsonl", action="store_true", help="print the sample stage's records, one JSON line each")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), auto, cuda (or cuda:N) or mps")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads torch uses (default: 1)")
    p.set_defaults(command="generate")


def _table_stages(sub) -> None:
    """Tables, scaling fits, per-job costs and figures, from the stages' outputs."""
    p = _stage(sub, "tables", "the sample and model tables from the samples and training summaries",
               '{"experiment": NAME}')
    p.add_argument("--samples", nargs="+", required=True, help="samples/<run>/seed<k>.jsonl files")
    p.add_argument("--samples-csv", required=True)
    p.add_argument("--samples-md", required=True)
    p.add_argument("--summaries", nargs="+", required=True, help="models/<run>/seed<k>/summary.json files")
    p.add_argument("--models-csv", required=True)
    p.add_argument("--models-md", required=True)

    p = _stage(sub, "eval-tables", "the evaluation, comparison and sampling tables from every evaluation",
               '{"experiment": NAME}')
    p.add_argument("--evals", required=True, help='{"run": {"seed": "eval/<run>/seed<k>.json"}} as JSON')
    p.add_argument("--eval-csv", required=True)
    p.add_argument("--eval-md", required=True)
    p.add_argument("--compare-csv", required=True,
                   help="every pair of runs: bits-per-byte difference paired by seed, 95%% CI")
    p.add_argument("--sampling-inputs", required=True,
                   help='{"run": {"seed": "eval/sampling/<run>/seed<k>.csv"}} as JSON')
    p.add_argument("--sampling-csv", required=True)
    p.add_argument("--reference-inputs", default="{}",
                   help='{"seed": "eval/reference/seed<k>.csv"} as JSON: the reference rows of --sampling-csv')

    p = _stage(sub, "scaling", "each model type's compute frontier and power-law fit, from every run's curves",
               '{"experiment": NAME}')
    p.add_argument("--metrics", required=True, help='{"run": {"seed": "models/<run>/seed<k>/metrics.csv"}} as JSON')
    p.add_argument("--evals", required=True, help='{"run": {"seed": "eval/<run>/seed<k>.json"}} as JSON')
    p.add_argument("--csv", required=True, help="tables/scaling.csv: per model type, the fit with 95%% intervals")
    p.add_argument("--points", required=True, help="tables/scaling_points.csv: every point in bits per byte")

    p = _stage(sub, "resources", "every job's wall time, peak memory and CPU time from its benchmark file -> CSV",
               '{"experiment": NAME}')
    p.add_argument("--root", required=True, help="results/<experiment>/benchmarks: a path under it names the job "
                                                 "of a file --jobs leaves out")
    p.add_argument("--benchmarks", nargs="+", required=True, help="benchmarks/<rule>[/<run>][/seed<k>].tsv files")
    p.add_argument("--jobs", default="{}",
                   help='{"benchmarks/<rule>/...tsv": {"rule": R, "run": RUN, "seed": K, "record": '
                        '"provenance/<stage>/...json" or null}} as JSON: each file\'s job as the workflow names it '
                        "(picollm.registry), and its provenance record, whose CPU seconds and peak memory replace "
                        "Snakemake's samples")
    p.add_argument("--out", required=True, help="tables/resources.csv")

    p = _stage(sub, "figure", "rebuild one figure from files on disk",
               '{"experiment": NAME, "figures": {"attention_prompt": TEXT}}')
    p.add_argument("figure", help="a module of picollm.plots, e.g. loss_curves")
    p.add_argument("--inputs", nargs="+", required=True,
                   help='one JSON object ({"run": path} or {"run": {"seed": path}}), NAME=PATH pairs, or one file')
    p.add_argument("--out", required=True)


def _evaluation_stages(sub) -> None:
    """Evaluation, its reference measures of real text, and the snapshots along training."""
    p = _stage(sub, "evaluate", "whole-split validation loss, perplexity, bits per byte and sampling measures",
               '{"sampling": {...}, "evaluate": {"max_tokens": N}, "seed": N, "device": NAME}')
    p.add_argument("--name", required=True)
    p.add_argument("--model-path", required=True)
    p.add_argument("--tokens-dir", required=True, help="folder holding val.bin and meta.json")
    p.add_argument("--samples", help="samples/<run>/seed<k>.jsonl: diversity, repetition and self-likelihood per decoding")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--out", required=True, help="the evaluation's JSON (the workflow's: eval/<run>/seed<k>.json)")
    p.add_argument("--sampling-out", help="eval/sampling/<run>/seed<k>.csv")

    p = _stage(sub, "reference", "the sampling measures of real validation stories cut to the samples' length",
               '{"sampling": {"prompts": [...], "num_samples": N, "max_new_tokens": N}, "seed": N, "data": {...}}')
    p.add_argument("--tokens-dir", required=True, help="folder holding val.bin and meta.json")
    p.add_argument("--out", required=True, help="eval/reference/seed<k>.csv")

    p = _stage(sub, "snapshots", "each run's greedy continuation of the first prompt at every kept training step",
               '{"experiment": NAME, "sampling": {"prompts": [...], "max_new_tokens": N}}')
    p.add_argument("--inputs", required=True, help='{"run": "models/<run>/seed<k>/snapshots"} as JSON')
    p.add_argument("--csv", required=True, help="tables/snapshots.csv")
    p.add_argument("--md", required=True, help="tables/snapshots.md")
    p.add_argument("--threads", type=positive_int, default=1)


def _sharing_commands(sub) -> None:
    """What leaves the study: an export, a harness task, the report and its pages, the provenance table."""
    p = sub.add_parser("export", help="a Transformer model.pt -> a Hugging Face folder that transformers loads alone")
    p.add_argument("model_path", help="model.pt of a Transformer: rope with RMSNorm (Llama) or learned "
                                      "positions with LayerNorm (GPT-2)")
    p.add_argument("out_dir", help="folder to write (replaced atomically)")
    p.set_defaults(command="export")

    p = _stage(sub, "lm-eval-task", "the study's validation text as an lm-evaluation-harness task (YAML + JSONL)",
               '{"experiment": NAME, "models": {NAME: MODEL}}')
    p.add_argument("--raw-dir", required=True, help="folder holding <source>/val.txt")
    p.add_argument("--sources", nargs="+", required=True, help="source names, in config order")
    p.add_argument("--out-dir", required=True, help="folder to write <task>.yaml and <task>.jsonl into")

    p = sub.add_parser("report", help="Snakemake's report of the study (snakemake --report), a failure in one line")
    p.add_argument("--snakefile", required=True)
    p.add_argument("--configfile", required=True, help="the study file the report shows (provenance/study.json)")
    p.add_argument("--out", required=True, help="report.html")
    p.add_argument("--stylesheet", help="CSS added to the report's own (workflow/report/report.css)")
    p.set_defaults(command="report")

    p = _stage(sub, "report-tables", "tables as HTML pages, which Snakemake's report shows inline (a CSV it "
                                     "only offers as a download)", '{"experiment": NAME}')
    p.add_argument("--pages", required=True, help='{"tables/<name>.html": "tables/<name>.md or .csv"} as JSON')

    p = sub.add_parser("provenance-table", help="every job's provenance record as one CSV row")
    p.add_argument("--records", nargs="+", required=True, help="provenance/**/*.json files")
    p.add_argument("--out", required=True)
    p.add_argument("--page", help="the code that made the study, as an HTML page for the report")
    p.set_defaults(command="provenance_table")


def positive_int(text: str) -> int:
    """An argparse type: a count of at least 1 (threads), so that 0 or -1 is refused, not quietly read as 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def writable_log(path) -> None:
    """Exit with one line when the log cannot be written: it opens before any stage's own error handling."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        problem = io.write_problem(path, exc)
        print(f"error: {problem or f'cannot write the log {path} ({exc.strerror})'}", file=sys.stderr)
        raise SystemExit(1) from None


@contextlib.contextmanager
def _output_to(path, fresh: bool = True, follow: bool = False):
    """Send stdout and stderr (tqdm's progress bars included) to `path`, or leave them where they are.
    Writes append, so that a data-parallel job's launcher and its rank 0, which share the log, never write
    over each other; `fresh` empties it first. `follow`: a training's log, which follows its path
    (io.FollowedLog) and is never emptied (Snakemake starts each job with none)."""
    if not path:
        yield
        return
    if fresh and not follow:
        open(path, "w").close()
    log = io.FollowedLog(path) if follow else open(path, "a", encoding="utf-8")
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        with contextlib.suppress(OSError):  # a full disk may refuse the log's last lines; the terminal has the gist
            log.close()


# A rank of a data-parallel job whose collective lost another rank says so in this line (picollm.launch tells the
# terminal another one first), then waits LOST_GRACE seconds before it exits: its node's torchrun then fails,
# and srun ends the other nodes, only after the dead rank's torchrun (which notices within its 0.1 s monitor
# interval) has noted how it died.
LOST = "lost another rank of this job"
LOST_GRACE = 2.0


def _interrupted(signum, frame):
    raise Interrupted(signum)


def _tell(line: str, log, terminal, rank: int) -> None:
    """One line in the log (when there is one) and, from rank 0, on the terminal. A stream that fails (a full
    disk under the log) does not keep it from the other."""
    streams = ([sys.stderr] if log or not rank else []) + ([terminal] if log and not rank else [])
    for stream in streams:
        with contextlib.suppress(OSError, ValueError):
            io.say(line, stream)


def _import_stage(command: str):
    """The stage's module. Only the command that runs is imported: each stage's code identity is its own
    module's imports. A signal while it imports waits until the import is done: one that lands inside a C
    extension's initialisation (numpy, torch) can leave it half-loaded, and the stage then fails with an
    ImportError instead of stopping."""
    pending = []
    deferred = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in STOP_SIGNALS if signal.getsignal(s) not in (signal.SIG_IGN, None)}
    try:
        module = importlib.import_module(f"picollm.commands.{command}")
    finally:
        for s, handler in deferred.items():
            signal.signal(s, handler)
    if pending:
        raise Interrupted(pending[0])
    return module


def _run(args, terminal, rank: int) -> int:
    """Run the stage; every way it can end but a bug is one line (see _tell) and an exit status."""
    try:
        _import_stage(args.command).run(args)
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        for s in STOP_SIGNALS:  # a second Ctrl-C while stopping adds no traceback
            signal.signal(s, signal.SIG_IGN)
        _tell("interrupted; rerun to continue", args.log, terminal, rank)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except PicoError as exc:
        _tell(f"error: {exc}", args.log, terminal, rank)
        return 1
    except BrokenPipeError:  # output piped into a reader that stopped (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit fails silently
        return 1
    except OSError as exc:
        problem = _missing_input(exc, args.argv) or io.write_problem(
            exc.filename or args.log or os.path.join(os.getcwd(), ""), exc)
        if problem is None:
            return _bug(exc, args.log, terminal)
        _tell(f"error: {problem}", args.log, terminal, rank)
        return 1
    except Exception as exc:
        if _lost_peer(exc):  # another rank died first: its own line (or its agent's) says why
            _tell(f"error: {LOST} ({type(exc).__name__}: {first_line(exc, 'no message')})", args.log, terminal,
                  rank)
            with contextlib.suppress(Interrupted, KeyboardInterrupt):
                time.sleep(LOST_GRACE)
            return 1
        return _bug(exc, args.log, terminal)


def _named_paths(argv: list[str]) -> set[Path]:
    """Every path the command line names: each word, and each string in a word that is JSON (--inputs)."""
    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, (dict, list)):
            for item in value.values() if isinstance(value, dict) else value:
                yield from strings(item)

    words = list(argv)
    for word in argv:
        with contextlib.suppress(ValueError):
            words += list(strings(json.loads(word)))
    return {Path(w).absolute() for w in words if w and "\0" not in w}


def _missing_input(exc: OSError, argv: list[str]) -> str | None:
    """A file named on the command line that is not there: the stage that writes it has not run."""
    name = exc.filename
    if not isinstance(exc, FileNotFoundError) or not name or Path(name).absolute() not in _named_paths(argv):
        return None
    if experiment_of(name) is None:  # no output of a study: nothing builds it
        return f"{name} does not exist; it is an input of this command: fix the path"
    return (f"{name} does not exist; it is an input of this command, written by an earlier stage: build it "
            f"first (snakemake --cores 1 {name} --configfile <study file>)")


def _lost_peer(exc: Exception) -> bool:
    """A rank of a data-parallel job whose collective failed because another rank is gone."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1 or "picollm.distributed" not in sys.modules:
        return False
    return sys.modules["picollm.distributed"].peer_lost(exc)


def _bug(exc: Exception, log, terminal) -> int:
    """A bug, not bad input: the traceback in the log, its gist on the terminal."""
    if not log:
        raise exc
    traceback.print_exc()
    print(f"error: {type(exc).__name__}: {exc} (traceback in {log})", file=terminal)
    return 1


def parse(argv=None) -> argparse.Namespace:
    """The command line; `picollm generate`'s prompts may also follow its options (argparse takes a positional
    list only before them)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.stage == "generate":
        args.prompts = [*args.prompts, *extra] or [""]
        extra = [word for word in extra if word.startswith("-")]
    if extra:
        parser.stages[args.stage].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `picollm train --devices N` runs N times
    terminal = sys.stderr
    # Under torchrun (train.devices x train.nodes > 1) every rank runs this: rank k > 0 logs to <log>.rank<k>,
    # and bad input, which every rank finds alike, reaches the terminal from rank 0 only.
    rank = int(os.environ.get("RANK", 0))
    if args.log and rank:
        args.log = f"{args.log}.rank{rank}"
    # SIGTERM (Snakemake stopping a job, SLURM's time limit) and SIGHUP (the terminal closed) end a stage as
    # Ctrl-C does: one line, no traceback, a training checkpointed first
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in (signal.SIGTERM, signal.SIGHUP):
        if previous[s] == signal.SIG_DFL:  # left alone where the caller ignores it (nohup)
            signal.signal(s, _interrupted)
    io.terminal = terminal if args.log and not rank else None  # where io.note() also writes
    if args.log:
        writable_log(args.log)
    try:
        # rank 0 of a data-parallel job adds to the log of the `picollm train` that launched it (picollm.launch)
        # a training of one process follows its log's path: a second job for its folder, refused by the folder's
        # lock, would otherwise leave the log Snakemake replaced before starting it
        alone = args.stage == "train" and args.devices * args.nodes == 1 and "LOCAL_RANK" not in os.environ
        with _output_to(args.log, fresh=rank > 0 or "LOCAL_RANK" not in os.environ, follow=alone):
            return _run(args, terminal, rank)
    finally:
        io.terminal = None
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
