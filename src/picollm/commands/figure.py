"""`picollm figure NAME`: rebuild one figure (module picollm.plots.NAME) from files on disk."""
import importlib

from picollm import provenance
from picollm.config import validate_part
from picollm.errors import PicoError


def _inputs(items: list[str]):
    """NAME=PATH pairs -> {name: path}; a single plain path -> that path."""
    if all("=" in item for item in items):
        return dict(item.split("=", 1) for item in items)
    if len(items) == 1:
        return items[0]
    raise PicoError(f"--inputs takes NAME=PATH pairs or one file, got {items}")


def run(args):
    cfg = validate_part(args.config, required=("experiment",))
    name = args.figure.replace("-", "_")
    module = importlib.import_module(f"picollm.plots.{name}")  # the job's code identity names this module
    inputs = _inputs(args.inputs)
    rec = provenance.record(f"figure {name}", config=args.config,
                            inputs=inputs.values() if isinstance(inputs, dict) else [inputs], outputs=[args.out])
    options = {}
    if "figures" in cfg and cfg["figures"].get("attention_prompt") is not None:
        options["prompt"] = cfg["figures"]["attention_prompt"]
    module.plot(inputs, args.out, cfg["experiment"], provenance=rec, **options)
    provenance.write(args.provenance, rec)
