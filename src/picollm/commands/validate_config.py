"""`picollm validate-config`: check study files as the workflow does, optionally print the result."""
import json

from picollm.config import load_study
from picollm.errors import PicoError


def run(args):
    names = " + ".join(args.config)
    try:
        study = load_study(args.config)
    except PicoError as exc:  # name the files checked: a key's error alone does not say which file holds it
        message = str(exc)
        raise PicoError(message if message.startswith("config file") else f"{names}: {message}") from None
    print(json.dumps(study.model_dump(mode="json"), indent=2) if args.show else
          f"{names}: valid ({len(study.models)} models)")
