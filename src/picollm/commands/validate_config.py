"""`picollm validate-config`: check study files as the workflow does, optionally print the result."""
import json

from picollm.config import load_study


def run(args):
    study = load_study(args.config)
    names = " + ".join(args.config)
    print(json.dumps(study.model_dump(mode="json"), indent=2) if args.show else
          f"{names}: valid ({len(study.models)} models)")
