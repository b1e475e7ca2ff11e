"""Tables rebuilt from files on disk: the sample table and the per-model summary table."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from picollm.io import atomic_path, write_text


def read_samples(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    frame = pd.DataFrame(rows)
    frame["decoding"] = frame["decoding"].map(lambda d: d if d == "greedy" else f"p={float(d):g}")
    return frame


def _cell(text: str, width: int = 240) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def samples_table(paths, out_csv, out_md, experiment: str) -> pd.DataFrame:
    """Every model x decoding x prompt side by side: CSV with every sample, Markdown with the first of each."""
    frame = read_samples(paths)
    columns = ["model", "prompt", "decoding", "sample", "seed", "new_tokens", "text"]
    with atomic_path(out_csv) as tmp:
        frame[columns].to_csv(tmp, index=False)
    first = frame[frame["sample"] == 0]
    order = list(dict.fromkeys(first["decoding"]))
    lines = [f"# Samples: experiment `{experiment}`", "",
             "First sample of each model and decoding (all samples in samples.csv); the prompt is shown before "
             "each continuation.", ""]
    for prompt, group in first.groupby("prompt", sort=False):
        wide = group.pivot(index="decoding", columns="model", values="text").reindex(order)
        lines += [f"## Prompt: “{prompt}”", "", "| decoding | " + " | ".join(wide.columns) + " |",
                  "|---" * (len(wide.columns) + 1) + "|"]
        lines += [f"| {dec} | " + " | ".join(_cell(row[m]) for m in wide.columns) + " |" for dec, row in wide.iterrows()]
        lines.append("")
    write_text(out_md, "\n".join(lines))
    return frame


def models_table(summary_paths, out_md, experiment: str) -> pd.DataFrame:
    """One row per model: parameters, tokens seen, wall time, tokens/s, device, losses."""
    rows = [json.loads(Path(p).read_text()) for p in summary_paths]
    frame = pd.DataFrame(rows)[["model", "type", "params", "params_non_embedding", "tokens_seen", "wall_s",
                                "tokens_per_s", "device", "final_train_loss", "final_val_loss"]]
    text = (f"# Models: experiment `{experiment}`\n\n"
            + frame.to_markdown(index=False, floatfmt=".4g", intfmt=",") + "\n")
    write_text(out_md, text)
    return frame
