"""`picollm generate`: a trained model's continuations of your own prompts, on the terminal (or as JSONL).

Drawn as the sample stage draws them: the same end-of-text before the prompt, and each sample's seed derived
from the run's name and seed, so the study's prompt, p and max_new_tokens give the sample table's very samples.
"""
import contextlib
import json
import shlex
import sys
from pathlib import Path

from picollm import provenance
from picollm.config import SamplingConfig, Study
from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.device import resolve_device, use_threads
from picollm.errors import PicoError
from picollm.layout import study_root
from picollm.models import load_model
from picollm.sampling import continuations


def trained_as(ckpt: dict) -> tuple[str, int]:
    """(run name, seed) of a checkpoint, from its summary and provenance; the schema's default seed where the
    model was trained outside the workflow without a provenance record."""
    name = (ckpt.get("summary") or {}).get("model") or "model"
    return name, provenance.of_checkpoint(ckpt).get("seed", Study.model_fields["seed"].default)


def check(p: float | None, num_samples: int, max_new_tokens: int) -> None:
    if p is not None and not 0 < p <= 1:
        raise PicoError(f"--p {p:g} is no nucleus probability; give one in (0, 1], e.g. --p 0.9 (leave it out for "
                        f"greedy decoding)")
    if p is None and num_samples > 1:
        raise PicoError(f"--num-samples {num_samples} without --p: greedy decoding gives one continuation; add --p "
                        f"(e.g. --p 0.9) to draw {num_samples} samples")
    for flag, value in (("--num-samples", num_samples), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise PicoError(f"{flag} {value} is not a positive count; give 1 or more")


def check_model_first(model_path: str, prompts: list[str]) -> None:
    """A prompt typed before the model (generate "Once upon" MODEL.pt) would be read as the checkpoint."""
    if not Path(model_path).exists() and any(p.endswith(".pt") and Path(p).is_file() for p in prompts):
        model = next(p for p in prompts if p.endswith(".pt"))
        raise PicoError(f"the model comes first, then the prompts: picollm generate {shlex.quote(model)} "
                        f"{shlex.quote(model_path)}")


def study_max_new_tokens(model_path) -> int:
    """The sample stage's max_new_tokens for this model: that of the study it lies in (results/<experiment>/
    models/<run>/seed<k>/model.pt, the study as last built in results/<experiment>/provenance/study.json), else
    the schema's default."""
    try:
        study = study_root(Path(model_path).resolve()) / "provenance" / "study.json"
        return int(json.loads(study.read_text())["sampling"]["max_new_tokens"])
    except (IndexError, OSError, ValueError, KeyError, TypeError):  # a model outside a study's results
        return SamplingConfig.model_fields["max_new_tokens"].default


def run(args):
    check_model_first(args.model_path, args.prompts)
    max_new_tokens = args.max_new_tokens
    if max_new_tokens is None:  # as the sample stage drew the model's samples
        max_new_tokens = study_max_new_tokens(args.model_path)
    check(args.p, args.num_samples, max_new_tokens)
    output = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # notes (a prompt longer than the context) are no output
        use_threads(args.threads)
        model = load_model(args.model_path, resolve_device(args.device))
        tokenizer = checkpoint_tokenizer(model.checkpoint)
        name, trained_seed = trained_as(model.checkpoint)
        seed = trained_seed if args.seed is None else args.seed
        decoding = "greedy" if args.p is None else args.p
        for index, prompt in enumerate(args.prompts):
            for rec in continuations(model, tokenizer, name, prompt, decoding, args.num_samples, max_new_tokens,
                                     not args.no_stop, seed, label=f"prompt {index}"):
                print(json.dumps(rec, ensure_ascii=False) if args.jsonl else shown(rec), file=output, flush=True)


def shown(rec: dict) -> str:
    """A record as two lines: which decoding and seed, then the prompt and its continuation."""
    how = "greedy"
    if rec["decoding"] != "greedy":
        how = f"p={rec['decoding']:g}, sample {rec['sample']}, seed {rec['seed']}"
    end = " [end of story]" if rec["ended"] else f" [cut at {rec['new_tokens']} new tokens]"
    return f"--- {rec['model']}, {how}\n{rec['prompt']}{rec['text']}{end}"
