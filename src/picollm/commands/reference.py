"""`picollm reference`: the sampling measures of real validation stories, to read the samples' measures against."""
import json
from pathlib import Path

import pandas as pd

from picollm import provenance
from picollm.config import ReferenceJob, parse
from picollm.sample_metrics import reference_measures
from picollm.io import write_csv


def run(args):
    job = parse(ReferenceJob, args.config)
    tokens = Path(args.tokens_dir)
    rec = provenance.record("reference", seed=job.seed, config=args.config,
                            inputs=[tokens / "meta.json", tokens / "val.bin"], outputs=[args.out])
    rows = reference_measures(tokens, job.sampling, job.seed, english=job.data.english)
    write_csv(args.out, pd.DataFrame(rows).assign(seed=job.seed))
    provenance.write(args.provenance, rec)
    print(json.dumps({k: rows[0][k] for k in ("samples", "distinct_2", "rep_4", "mean_words", "ended_share",
                                              "english_word_share")}))
