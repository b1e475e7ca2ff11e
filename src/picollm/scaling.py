"""How each model type's validation loss falls with training compute: its compute frontier and a fitted
saturating power law bpb(C) = E + A * C^(-alpha), with 95% intervals from a bootstrap over seeds.

Points. Every validation measurement along a training run (metrics.csv's val_loss, on training's fixed
validation windows) is a point at compute C = FLOPs per token (picollm.flops) x tokens seen, its loss turned
into bits per byte with the bytes per token of packed windows over the whole validation split (the
evaluation's val_bytes_per_window_token, whichever way it scored). A run's curve is the mean over its seeds at each step.

Frontier. The lower envelope of a type's curves: a point is on it when no point of that type at a smaller or
equal compute reached a lower bits per byte. It says what the type achieves at each compute with the best
size among those trained, as in Kaplan et al. (2020), Fig. 7.

Fit. bpb(C) = E + A C^-alpha by least squares on log bpb, over the frontier's points from the end of warm-up
on (during warm-up the learning rate, not the compute, limits the loss), when there are at least
MIN_FIT_POINTS of them; with fewer the points are shown unfitted. E is the loss no amount of compute removes
at this data and these sizes, alpha how fast the rest falls.

Intervals. Each bootstrap replicate redraws every run's seeds with replacement, averages them again, and
redoes the frontier and the fit. The quantiles of those fits would make too narrow an interval with a few seeds
(with two, the 2.5% and 97.5% quantiles are just the two single-seed fits), so the interval is the fit
± t(n - 1) x the replicates' std x sqrt(n / (n - 1)), n the seeds per run (the fewest of any run of the type):
the bootstrap's standard error, corrected as for a mean of n values (whose bootstrap std is sqrt((n - 1) / n)
times its standard error), with Student's t for a spread estimated from n seeds. For a mean this is
picollm.stats.t_interval, the interval of tables/compare.csv. A, a scale factor, gets it on log A (so it stays
positive); alpha stays at or above 0 and E between 0 and the lowest fitted bits per byte, as the fit's bounds
require. None with one seed per run.

Bounds. A parameter the points push onto one of the fit's bounds (E onto 0: a frontier that shows no floor) is
set to the bound and flagged (<name>_at_bound): the points do not determine it, and where every redraw lands on the
bound too its interval has width 0, which is the bound holding, not certainty.

Crossings. Where two types' frontiers cross past both warm-ups, between their points (straight in log
compute), each frontier held at its best out to the largest compute its type trained to. Past the last crossing
one type stays ahead; in each bootstrap replicate (both types' seeds redrawn together) that order settles at its
last crossing, at the start of the compute both cover if it holds throughout, or, if the replicate ends in the
other order, at the end of that compute. The interval of the last crossing is the mean's last crossing ± t(n - 1)
x the std of those log computes x sqrt(n / (n - 1)), n the fewest seeds of any run of the two types, kept within
the compute both cover; the share of replicates that end in the mean's order says how often the seeds agree on
which type ends ahead.

Sizes. A type whose runs all have one size (a sweep of the learning rate, one model) has a frontier that is a
learning curve of that size: its fit says how that model's loss falls as it trains, not how the type scales,
and its note says so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from picollm.io import write_csv
from picollm.stats import t_factor

MIN_FIT_POINTS = 5  # three parameters, and two points to spare so that the fit is tested by the data
# A fitted value this close to a bound, as a share of the span it may take, counts as at it: least squares stops
# short of a bound by its own tolerance (E of 3e-7 for a frontier with no floor), and E at 1e-4 of a span of 1.5
# bpb prints as 0.000 anyway
BOUND_TOLERANCE = 1e-4
BOOTSTRAP = 400
POINT_COLUMNS = ["type", "run", "seed", "kind", "step", "tokens_seen", "train_flops", "params_non_embedding",
                 "after_warmup", "bpb", "capped"]


def run_points(run: str, seed: int, metrics_csv, eval_json) -> pd.DataFrame:
    """One run and seed: its validation points along training (kind `curve`) and the evaluation's whole-split
    bits per byte at the end (kind `final`; `capped` when evaluate.max_tokens scored only part of the split)."""
    ev = json.loads(Path(eval_json).read_text())
    rows = pd.read_csv(metrics_csv)
    bytes_per_token = ev["val_bytes_per_window_token"]
    peak = warmup_end(ev, rows)
    val = rows.dropna(subset=["val_loss"])
    val = val[val["step"] > 0]  # step 0 has spent no compute: no place on a log axis
    common = {"type": ev["type"], "run": run, "seed": seed, "params_non_embedding": ev["params_non_embedding"]}
    curve = pd.DataFrame({**common, "kind": "curve", "step": val["step"], "tokens_seen": val["tokens_seen"],
                          "train_flops": val["tokens_seen"] * ev["flops_per_token"], "after_warmup": val["step"] >= peak,
                          "bpb": val["val_loss"] / math.log(2) / bytes_per_token, "capped": False})
    final = pd.DataFrame([{**common, "kind": "final", "step": int(rows["step"].max()),
                           "tokens_seen": ev["tokens_seen"], "train_flops": ev["train_flops"], "after_warmup": True,
                           "bpb": ev["bpb"], "capped": bool(ev.get("val_capped", False))}])
    return pd.concat([curve, final], ignore_index=True)[POINT_COLUMNS]


def warmup_end(ev: dict, rows: pd.DataFrame) -> int:
    """The step warm-up ends at: train.warmup_steps as the checkpoint recorded it, or, for a model that records
    no train config, the step of the highest logged learning rate."""
    recorded = ev.get("config", {}).get("train", {}).get("warmup_steps")
    if recorded is not None:
        return int(recorded)
    return int(rows.loc[rows["lr"].idxmax(), "step"]) if rows["lr"].notna().any() else 0


def read_points(metrics: dict, evals: dict) -> pd.DataFrame:
    """Every run's points from metrics = {run: {seed: metrics.csv}} and evals = {run: {seed: eval json}}."""
    return pd.concat([run_points(run, seed, path, evals[run][seed])
                      for run, seeds in metrics.items() for seed, path in seeds.items()], ignore_index=True)


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Each run's validation curve averaged over its seeds, step by step."""
    return (curves.groupby(["type", "run", "step"], sort=False)
            .agg(train_flops=("train_flops", "mean"), after_warmup=("after_warmup", "all"), bpb=("bpb", "mean"))
            .reset_index())


def on_frontier(flops: np.ndarray, bpb: np.ndarray) -> np.ndarray:
    """Indices of the points no point at a smaller or equal compute beats, by compute (ties: lower bpb first).
    A point without a bpb (NaN) is on no frontier and hides no other point (fmin skips NaN)."""
    order = np.lexsort((bpb, flops))
    best_before = np.fmin.accumulate(np.concatenate([[np.inf], bpb[order]]))[:-1]
    return order[bpb[order] < best_before]


def frontier(curves: pd.DataFrame) -> pd.DataFrame:
    """The points of one type's curves that no point at a smaller or equal compute beats, by compute."""
    return curves.iloc[on_frontier(curves["train_flops"].to_numpy(float), curves["bpb"].to_numpy(float))]


def fit_power_law(flops, bpb) -> dict | None:
    """{E, A, alpha} of bpb = E + A C^-alpha, least squares on log bpb; None when it does not converge.

    C is scaled by its smallest value while fitting, so that A stays of the order of the losses."""
    c, y = np.asarray(flops, float), np.asarray(bpb, float)
    scale = c.min()
    x = c / scale

    log_x, log_y = np.log(x), np.log(y)

    def residuals(p):
        e, b, alpha = p
        return np.log(e + b * np.exp(-alpha * log_x)) - log_y

    def jacobian(p):  # exact derivatives: the bootstrap fits hundreds of times, finite differences cost 4x
        e, b, alpha = p
        power = np.exp(-alpha * log_x)
        fitted = e + b * power
        return np.column_stack([1 / fitted, power / fitted, -b * power * log_x / fitted])

    start = [0.5 * y.min(), max(y.max() - 0.5 * y.min(), 1e-3), 0.3]
    lower, upper = np.array([0, 1e-9, 1e-4]), np.array([y.min(), np.inf, 5])
    result = least_squares(residuals, start, jac=jacobian, bounds=(lower, upper))
    if not result.success:
        return None
    low, high = at_bounds(result.x, lower, upper)
    e, b, alpha = np.where(low, lower, np.where(high, upper, result.x))  # at a bound: the bound itself, 0 not 6e-12
    return {"E": float(e), "A": float(b * scale ** alpha), "alpha": float(alpha),
            **{f"{name}_at_bound": bool(flag) for name, flag in zip(("E", "A", "alpha"), low | high)}}


def at_bounds(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which fitted values sit at their lower and which at their upper bound: within BOUND_TOLERANCE of the span
    they may take (of 1 where the span is infinite: A's factor, on the scale of the losses). least_squares keeps its
    iterates strictly inside the bounds, so a parameter the points push onto a bound ends a hair inside it."""
    span = np.where(np.isfinite(upper - lower), upper - lower, np.maximum(np.abs(lower), 1.0))
    return x - lower <= BOUND_TOLERANCE * span, upper - x <= BOUND_TOLERANCE * span


def predict(fit: dict, flops) -> np.ndarray:
    return fit["E"] + fit["A"] * np.asarray(flops, float) ** -fit["alpha"]


def fit_points(front: pd.DataFrame) -> pd.DataFrame:
    return front[front["after_warmup"]]


def fit_type(curves: pd.DataFrame) -> dict | None:
    """The fit of one type's mean curves, None when the frontier has fewer than MIN_FIT_POINTS to fit."""
    return fit_frontier(curves["train_flops"].to_numpy(float), curves["bpb"].to_numpy(float),
                        curves["after_warmup"].to_numpy(bool))


def warm_frontier(flops: np.ndarray, bpb: np.ndarray, after_warmup: np.ndarray) -> np.ndarray:
    """Indices of the frontier points of mean curves (given as arrays of their points) past warm-up: the
    points a fit and a crossing read."""
    front = on_frontier(flops, bpb)
    return front[np.asarray(after_warmup, bool)[front]]


def fit_frontier(flops: np.ndarray, bpb: np.ndarray, after_warmup: np.ndarray) -> dict | None:
    """fit_type of mean curves given as arrays of their points."""
    front = warm_frontier(flops, bpb, after_warmup)
    if len(front) < MIN_FIT_POINTS:
        return None
    return fit_power_law(flops[front], bpb[front])


def seed_grid(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run's train_flops, bpb and after_warmup (0/1) as (seeds x steps) arrays, seeds in order of appearance,
    NaN where a seed has no point at a step; rows repeating a (seed, step) count once, as their mean."""
    seeds = rows["seed"].unique()
    table = rows.assign(after_warmup=rows["after_warmup"].astype(float)).pivot_table(
        index="seed", columns="step", values=["train_flops", "bpb", "after_warmup"], aggfunc="mean",
        dropna=False).reindex(seeds)
    return tuple(table[name].to_numpy(float) for name in ("train_flops", "bpb", "after_warmup"))


def redrawn_means(grid, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mean_curves of one run over the seeds `drawn` (row indices of its seed_grid, repeats counted): per step
    that any drawn seed reached, its mean compute and bpb, and whether every drawn seed was past warm-up."""
    flops, bpb, warm = (part[drawn] for part in grid)
    present = ~np.isnan(bpb)
    count = present.sum(axis=0)
    kept = count > 0
    mean = [np.where(present, part, 0.0).sum(axis=0)[kept] / count[kept] for part in (flops, bpb)]
    return mean[0], mean[1], np.where(present, warm, 1.0).min(axis=0)[kept] == 1.0


def seed_grids(curves: pd.DataFrame) -> list:
    """The seed_grid of each run of `curves`, in order of appearance."""
    return [seed_grid(rows) for _, rows in curves.groupby("run", sort=False)]


def redrawn_curves(grids: list, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bootstrap replicate: every run's seeds redrawn with replacement and averaged again (redrawn_means),
    all runs' points together as flops, bpb and after_warmup arrays."""
    runs = [redrawn_means(grid, rng.integers(0, len(grid[0]), size=len(grid[0]))) for grid in grids]
    return tuple(np.concatenate(part) for part in zip(*runs))


def bootstrap(curves: pd.DataFrame, kind: str, replicates: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """The fit of one type over `replicates` redraws of every run's seeds (rows of fits that converged)."""
    rng = np.random.default_rng(seed)
    grids = seed_grids(curves)
    fits = []
    for _ in range(replicates):
        fit = fit_frontier(*redrawn_curves(grids, rng))
        if fit is not None:
            fits.append(fit)
    return pd.DataFrame(fits, columns=["E", "A", "alpha"]).assign(type=kind)


def crossing_line(flops: np.ndarray, bpb: np.ndarray, after_warmup: np.ndarray) -> dict:
    """What crossings() reads of one type's mean curves (arrays of their points): its frontier past warm-up,
    held at its last bits per byte out to the largest compute the type reached past warm-up, as arrays
    {train_flops, bpb}. A frontier that stops falling has not ended: the type still achieves its best at every
    larger compute it trained to."""
    after_warmup = np.asarray(after_warmup, bool)
    front = warm_frontier(flops, bpb, after_warmup)
    line_flops, line_bpb = flops[front], bpb[front]
    reached = flops[after_warmup].max(initial=-np.inf)
    if len(front) and reached > line_flops[-1]:
        line_flops, line_bpb = np.append(line_flops, reached), np.append(line_bpb, line_bpb[-1])
    return {"train_flops": line_flops, "bpb": line_bpb}


# The functions below read a line (columns or keys train_flops and bpb: a DataFrame, or crossing_line's arrays,
# which the bootstrap's hundreds of redraws build without pandas' cost per frame) as two float arrays.
def line_arrays(line) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(line["train_flops"], float), np.asarray(line["bpb"], float)


def crossings(a, b) -> list[float]:
    """Computes where line a (train_flops, bpb; straight between its points in log compute) crosses line b,
    within the compute both cover (none where either has no point)."""
    low, high = common_compute(a, b)
    if not low < high:
        return []
    grid = np.geomspace(low, high, 400)
    diff = at_compute(a, grid) - at_compute(b, grid)
    out = []
    for i in np.flatnonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0):
        t = diff[i] / (diff[i] - diff[i + 1])  # the zero between two grid points, in log compute
        out.append(float(np.exp(np.log(grid[i]) + t * (np.log(grid[i + 1]) - np.log(grid[i])))))
    return out


def at_compute(line, flops) -> np.ndarray:
    """A line's bits per byte at the computes `flops`, straight between its points in log compute."""
    line_flops, line_bpb = line_arrays(line)
    return np.interp(np.log(flops), np.log(line_flops), line_bpb)


def common_compute(a, b) -> tuple[float, float]:
    """The range of compute two lines both cover (empty when low >= high, or when either line is empty)."""
    (a_flops, _), (b_flops, _) = line_arrays(a), line_arrays(b)
    if not len(a_flops) or not len(b_flops):
        return math.nan, math.nan
    return max(a_flops.min(), b_flops.min()), min(a_flops.max(), b_flops.max())


def ends_ahead(a, b) -> bool:
    """Whether line a is below line b at the largest compute both cover (they share some)."""
    high = common_compute(a, b)[1]
    return bool(at_compute(a, [high])[0] < at_compute(b, [high])[0])


def mean_line(means: pd.DataFrame) -> pd.DataFrame:
    """The crossing_line of one type's mean curves, as a frame."""
    return pd.DataFrame(crossing_line(*(means[name].to_numpy(t) for name, t in
                                        (("train_flops", float), ("bpb", float), ("after_warmup", bool)))))


def settles_at(a, b, a_ahead: bool) -> tuple[float, bool]:
    """From which compute line a stays below line b (a_ahead) or above it, within the compute both cover, and
    whether the lines end in that order: their last crossing, or the start of that compute where the order holds
    throughout; the end of that compute where they end in the other order; NaN where they share no compute."""
    low, high = common_compute(a, b)
    if not low < high:
        return math.nan, False
    if ends_ahead(a, b) != a_ahead:
        return high, False
    found = crossings(a, b)
    return (found[-1] if found else low), True


def redrawn_settling(a: pd.DataFrame, b: pd.DataFrame, a_ahead: bool, replicates: int = BOOTSTRAP,
                     seed: int = 0) -> pd.DataFrame:
    """settles_at of the lines of curves a and b (two types) in each of `replicates` redraws of every run's
    seeds: columns flops and same_order."""
    rng = np.random.default_rng(seed)
    grids = seed_grids(a), seed_grids(b)
    return pd.DataFrame([settles_at(*(crossing_line(*redrawn_curves(runs, rng)) for runs in grids), a_ahead)
                         for _ in range(replicates)], columns=["flops", "same_order"])


def pair_crossing(curves: pd.DataFrame, means: pd.DataFrame, first: str, second: str, seeds: int,
                  replicates: int = BOOTSTRAP) -> dict:
    """Where the frontiers of types first and second cross after both warm-ups (crossing_line): at_flops, every
    crossing of the mean curves' lines (space-separated); ci_low and ci_high, a 95% interval for the last, past
    which the order holds; same_order, the share of redraws of every run's seeds whose lines end in the mean
    lines' order. The interval is the module's, on log compute, over every redraw's settles_at (a redraw that ends
    in the other order counts as the end of the common compute), kept within the compute both mean lines cover.
    No interval and no share with one seed, or where the lines share no compute."""
    a, b = mean_line(means[means["type"] == first]), mean_line(means[means["type"] == second])
    found = crossings(a, b)
    out = {"at_flops": " ".join(f"{c:.3g}" for c in found), "ci_low": math.nan, "ci_high": math.nan,
           "same_order": math.nan}
    low, high = common_compute(a, b)
    if seeds < 2 or not low < high:
        return out
    settled = redrawn_settling(curves[curves["type"] == first], curves[curves["type"] == second],
                               ends_ahead(a, b), replicates).dropna()
    if found:
        out["ci_low"], out["ci_high"] = interval(settled["flops"].to_numpy(), found[-1], seeds, (low, high),
                                                 log=True)
    out["same_order"] = float(settled["same_order"].mean()) if len(settled) else math.nan
    return out


def interval(draws: np.ndarray | pd.Series, estimate: float, seeds: int, within=(0.0, math.inf), log: bool = False,
             confidence: float = 0.95) -> tuple[float, float]:
    """The interval of a fitted parameter `estimate` from its bootstrap `draws` over `seeds` seeds per run (see
    the module's Intervals), kept `within` the values the fit allows; on the log scale for a scale factor (A, a
    multiplier, spreads on it). NaN with one seed or fewer than two draws."""
    if seeds < 2 or len(draws) < 2:
        return float("nan"), float("nan")
    values, centre = (np.log(draws), math.log(estimate)) if log else (draws, estimate)
    half = t_factor(seeds, confidence) * float(values.std(ddof=1)) * math.sqrt(seeds / (seeds - 1))
    low, high = (math.exp(centre - half), math.exp(centre + half)) if log else (centre - half, centre + half)
    return max(low, within[0]), min(high, within[1])


def fit_rows(points: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """tables/scaling.csv's rows: per model type its fit with 95% intervals (bootstrap over seeds), the points
    used, and the computes at which its frontier crosses each other type's after both warm-ups (before, the
    learning rate, not the compute, sets the losses), the last with its 95% interval (pair_crossing)."""
    curves = points[points["kind"] == "curve"]
    means = mean_curves(curves)
    types = list(dict.fromkeys(means["type"]))
    fronts = {t: frontier(means[means["type"] == t]) for t in types}
    fewest_seeds = {t: int(curves[curves["type"] == t].groupby("run")["seed"].nunique().min()) for t in types}
    # each pair once, its types in the order of their names: kind's row and other's give the same redraws
    crossed = {(first, second): pair_crossing(curves, means, first, second,
                                              min(fewest_seeds[first], fewest_seeds[second]))
               for first in sorted(types) for second in sorted(types) if first < second}
    rows = []
    for kind in types:
        own = curves[curves["type"] == kind]
        fit = fit_type(means[means["type"] == kind])
        seeds = own.groupby("run")["seed"].nunique()
        row = {"experiment": experiment, "type": kind, "runs": own["run"].nunique(),
               "sizes": own["params_non_embedding"].nunique(), "seeds": int(seeds.min()),
               "frontier_points": len(fronts[kind]), "fit_points": len(fit_points(fronts[kind])),
               "fitted": fit is not None, "flops_min": own["train_flops"].min(), "flops_max": own["train_flops"].max()}
        draws = bootstrap(own, kind) if fit is not None and seeds.min() > 1 else pd.DataFrame()
        floor = fit_points(fronts[kind])["bpb"].min()  # E lies below every fitted point (fit_power_law's bounds)
        within = {"alpha": {}, "E": {"within": (0.0, floor)}, "A": {"log": True}}
        for name in ("alpha", "E", "A"):
            low, high = interval(draws[name], fit[name], int(seeds.min()), **within[name]) if len(draws) else \
                (float("nan"),) * 2
            row.update({name: fit[name] if fit else float("nan"), f"{name}_ci_low": low, f"{name}_ci_high": high,
                        f"{name}_at_bound": fit[f"{name}_at_bound"] if fit else float("nan")})
        for other in types:
            if other != kind:
                found = crossed[tuple(sorted((kind, other)))]
                row.update({f"crosses_{other}_{name}": value for name, value in found.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def read_crossings(row, other: str) -> list[float]:
    """crosses_<other>_at_flops of a tables/scaling.csv row as the CSV reads back (one crossing is a number,
    several are space-separated text, none is blank or a missing column), as computes."""
    value = row.get(f"crosses_{other}_at_flops", math.nan)
    return [float(c) for c in str(value).split()] if value == value else []


def fit_note(row) -> str:
    """'alpha 0.21 [0.18, 0.25], E 1.23 [1.10, 1.31] bpb', or why there is no fit; a parameter at one of the fit's
    bounds says that these points do not determine it, and a type of one size that its fit is of a learning
    curve."""
    if not row["fitted"]:
        return f"no fit: {row['fit_points']} frontier points after warm-up, {MIN_FIT_POINTS} needed"

    def said(name, form, unit=""):
        loose = " (not determined by these points)" if at_bound(row, name) else ""
        return f"{name} {with_interval(row, name, form)}{unit}{loose}"

    one_size = " (one size: a learning curve, not a scaling law)" if row.get("sizes", 2) == 1 else ""
    return f"{said('alpha', '.3g')}, {said('E', '.3f', ' bpb')}{one_size}"


def at_bound(row, name: str) -> bool:
    """Whether a tables/scaling.csv row's parameter sits at a bound of the fit: a bool, or as the CSV reads it back
    (False for a type without a fit, or a table from before the column)."""
    return str(row.get(f"{name}_at_bound", False)) == "True"


def with_interval(row, name: str, form: str) -> str:
    """'0.385 [0.319, 0.422]': a fitted parameter of a tables/scaling.csv row and its interval (if any). A parameter
    at a bound of the fit reads 'at its bound 0', its interval only where it reaches off the bound: an interval of
    width 0 there is the bound holding every redraw, not certainty."""
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if at_bound(row, name):
        spread = f" [{low:{form}}, {high:{form}}]" if low == low and f"{low:{form}}" != f"{high:{form}}" else ""
        return f"at its bound {value:.4g}{spread}"
    return f"{value:{form}} [{low:{form}}, {high:{form}}]" if low == low else f"{value:{form}}"


def write_tables(metrics: dict, evals: dict, out_csv, points_csv, experiment: str) -> pd.DataFrame:
    """tables/scaling.csv (fit_rows) and tables/scaling_points.csv (every validation point along training and
    every final evaluation, in bits per byte at its training compute)."""
    points = read_points(metrics, evals)
    fits = fit_rows(points, experiment)
    write_csv(points_csv, points)
    write_csv(out_csv, fits)
    return fits
