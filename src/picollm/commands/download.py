"""`picollm download`: one data source's raw train/val text."""
from picollm import provenance
from picollm.config import validate_part
from picollm.data.sources import download


def run(args):
    cfg = validate_part(args.config, required=("data",), optional=("seed",))
    src = cfg["data"]["sources"][0]
    counts = download(src, cfg["seed"], cfg["data"]["val_fraction"], args.train, args.val)
    provenance.write(args.provenance, provenance.record("download", config=args.config, seed=cfg["seed"],
                                                        outputs=[args.train, args.val], counts=counts))
    print(f"{src['name']}: {counts}")
