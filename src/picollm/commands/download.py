"""`picollm download`: one data source's raw train/val text."""
from picollm import provenance
from picollm.config import DownloadJob, parse
from picollm.data.sources import download


def run(args):
    job = parse(DownloadJob, args.config)
    src = job.data.sources[0]
    counts = download(src, job.seed, job.data.val_fraction, args.train, args.val)
    provenance.write(args.provenance, provenance.record("download", config=args.config, seed=job.seed,
                                                        inputs=src.local_files,
                                                        outputs=[args.train, args.val], counts=counts))
    print(f"{src.name}: {counts}")
