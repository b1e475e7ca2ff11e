"""`picollm scaling`: tables/scaling.csv and tables/scaling_points.csv from every run's curves and evaluations."""
from picollm import provenance, scaling
from picollm.commands import by_run_and_seed, paths
from picollm.config import TablesJob, parse


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    metrics, evals = by_run_and_seed(args.metrics), by_run_and_seed(args.evals)
    scaling.write_tables(metrics, evals, args.csv, args.points, experiment)
    inputs = paths(metrics) + paths(evals)
    provenance.write(args.provenance, provenance.record("scaling", config=args.config, inputs=inputs,
                                                        outputs=[args.csv, args.points]))
