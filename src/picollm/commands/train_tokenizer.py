"""`picollm train-tokenizer`: a byte-level BPE (`tokenizer: bpe:N`) learnt from every source's training text."""
import json

from picollm import provenance
from picollm.config import TokenizerJob, bpe_vocab_size, parse
from picollm.data.bpe import use_threads, write_tokenizer
from picollm.errors import PicoError
from picollm.io import note


def run(args):
    job = parse(TokenizerJob, args.config)
    size = bpe_vocab_size(job.tokenizer)
    if size is None:
        raise PicoError(f"train-tokenizer learns a bpe:N tokenizer, not {job.tokenizer!r}; "
                        f"give --config '{{\"tokenizer\": \"bpe:4096\"}}' (any N in 257..65536)")
    use_threads(args.threads)
    rec = provenance.record("train_tokenizer", config=args.config, inputs=args.train, outputs=[args.out])
    tokenizer = write_tokenizer(args.train, size, args.out)
    rec["tokenizer"] = {"vocab_size": tokenizer.n_vocab, "sha256": tokenizer.sha256}
    provenance.write(args.provenance, rec)
    if tokenizer.n_vocab < size:  # the text ran out of pairs to merge
        note(f"the training text gives only {tokenizer.n_vocab} of the {size} tokens asked for")
    print(json.dumps({"tokenizer": job.tokenizer, "vocab_size": tokenizer.n_vocab, "sha256": tokenizer.sha256}))
