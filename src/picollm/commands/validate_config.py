"""`picollm validate-config`: check study files as the workflow does, optionally print the result."""
import json

from picollm.config import load_study
from picollm.config.command_line import several_studies
from picollm.errors import PicoError


def run(args):
    mixed = several_studies(args.config)  # the workflow refuses the same files (its profile's check)
    if mixed:
        raise PicoError(mixed)
    study = load_study(args.config)  # a bad key's line names the file that gives it
    if study.device == "cuda":  # a CPU build of torch cannot run it anywhere
        from picollm.device import check_cuda_build
        check_cuda_build()
    print(json.dumps(study.model_dump(mode="json"), indent=2) if args.show else
          f"{' + '.join(args.config)}: valid ({outline(study)})")


def outline(study) -> str:
    """'3 models + 2 sweep runs x 2 seeds: 10 trainings': what the study trains, in brief."""
    models, runs, seeds = len(study.models), len(study.runs), len(study.seeds)
    sweep = f" + {runs - models} sweep run{'s' * (runs - models != 1)}" if runs > models else ""
    return (f"{models} model{'s' * (models != 1)}{sweep} x {seeds} seed{'s' * (seeds != 1)}: "
            f"{runs * seeds} training{'s' * (runs * seeds != 1)}")
