"""`picollm figure NAME`: rebuild one figure (module picollm.plots.NAME) from files on disk."""
import importlib
import importlib.util
import json
import pkgutil

from picollm import plots, provenance
from picollm.commands import paths, seed_keys
from picollm.config import FigureJob, parse
from picollm.errors import PicoError
from picollm.layout import experiment_of


def _inputs(items: list[str]):
    """One JSON object ({run: path} or {run: {seed: path}}), NAME=PATH pairs, or one plain path."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            nested = json.loads(items[0])
        except json.JSONDecodeError as exc:
            raise PicoError(f"--inputs is not valid JSON ({exc.msg} at column {exc.colno})") from None
        return {run: seed_keys(v) if isinstance(v, dict) else v for run, v in nested.items()}
    if all("=" in item for item in items):
        return dict(item.split("=", 1) for item in items)
    if len(items) == 1:
        return items[0]
    raise PicoError(f"--inputs takes NAME=PATH pairs or one file, got {items}")


def _experiment(out: str) -> str:
    """The study a figure belongs to, which it prints: results/<experiment>/... in its --out path."""
    if (name := experiment_of(out)) is not None:
        return name
    raise PicoError("a figure names its study: give --config '{\"experiment\": NAME}', or an --out under "
                    "results/<experiment>/")


def run(args):
    name = args.figure.replace("-", "_")
    if importlib.util.find_spec(f"picollm.plots.{name}") is None:  # before the config, which may be missing
        known = sorted(m.name for m in pkgutil.iter_modules(plots.__path__))
        raise PicoError(f"no figure is named {args.figure!r}; the figures are {', '.join(known)}")
    config = args.config if "experiment" in args.config else {**args.config, "experiment": _experiment(args.out)}
    job = parse(FigureJob, config)
    module = importlib.import_module(f"picollm.plots.{name}")  # the job's code identity names this module
    inputs = _inputs(args.inputs)
    # a figure that also reads files beside its inputs (lr_schedule: each run's summary.json) hashes them too
    beside = module.read_beside(inputs) if hasattr(module, "read_beside") else []
    rec = provenance.record(f"figure {name}", config=config, inputs=[*paths(inputs), *beside], outputs=[args.out])
    options = {}
    if job.figures.attention_prompt is not None:
        options["prompt"] = job.figures.attention_prompt
    elif name == "attention_heads":  # the workflow fills in the first sampling prompt; by hand, nothing does
        raise PicoError("figure attention_heads draws the attention on a prompt: give --config "
                        "'{\"figures\": {\"attention_prompt\": \"Once upon a time\"}}'")
    if job.figures.loss_zoom:
        options["ylim"] = "auto"
    if job.figures.loss_logy:
        options["logy"] = True
    module.plot(inputs, args.out, job.experiment, provenance=rec, **options)
    provenance.write(args.provenance, rec)
