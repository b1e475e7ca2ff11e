"""Scaling: compute frontiers, power-law fits with bootstrap intervals, frontier crossings, the log evaluation
schedule, compute-matched comparisons, and a tiny scaling study end to end (two model types x three sizes)."""
import json
import re
import math

import numpy as np
import pandas as pd
import pytest

from conftest import snakemake, tiny_offline_config, write_config
from picollm import scaling, tables
from picollm.config import Study, TrainConfig, parse
from picollm.errors import PicoError


def law(flops, e=1.2, a=40.0, alpha=0.25):
    return e + a * np.asarray(flops, float) ** -alpha


def curve(kind, run, seed, flops, bpb):
    n = len(flops)
    return pd.DataFrame({"type": kind, "run": run, "seed": seed, "kind": "curve", "step": np.arange(1, n + 1),
                         "tokens_seen": np.arange(1, n + 1), "train_flops": flops, "params_non_embedding": 1,
                         "after_warmup": True, "bpb": bpb})


def test_fit_recovers_a_hand_made_power_law():
    flops = np.geomspace(1e8, 1e12, 12)
    fit = scaling.fit_power_law(flops, law(flops))
    assert fit["alpha"] == pytest.approx(0.25, rel=1e-4)
    assert fit["E"] == pytest.approx(1.2, rel=1e-4)
    assert fit["A"] == pytest.approx(40.0, rel=1e-3)
    assert scaling.predict(fit, [1e10]) == pytest.approx(law(1e10), rel=1e-6)


def test_a_fit_whose_floor_sits_at_its_bound_says_so():
    """A frontier with no floor (E = 0) pushes E onto the fit's bound 0, where every redraw lands too: the table
    flags it and the note says that the points do not determine it, not "E 0.000 [0.000, 0.000]"."""
    flops = np.geomspace(1e8, 1e12, 10)
    rows = {}
    for e in (0.0, 1.2):
        runs = [curve(f"e{e}", f"e{e}", seed, flops, law(flops, e=e) * (1 + 0.01 * seed)) for seed in (1, 2)]
        rows[e] = scaling.fit_rows(pd.concat(runs, ignore_index=True), "hand").iloc[0]
    floorless, floored = rows[0.0], rows[1.2]
    assert floorless["E_at_bound"] and floorless["E"] == 0.0  # the bound itself, not the optimizer's 3e-7
    assert not floorless["alpha_at_bound"] and not floorless["A_at_bound"]
    assert not floored["E_at_bound"] and floored["E"] == pytest.approx(1.2, rel=0.05)
    assert "E at its bound 0 bpb (not determined by these points)" in scaling.fit_note(floorless)
    assert "E at its bound" not in scaling.fit_note(floored) and "not determined" not in scaling.fit_note(floored)
    assert scaling.with_interval(floorless, "E", ".3f") == "at its bound 0"  # no interval of width 0
    assert scaling.with_interval(floored, "E", ".3f").startswith("1.2")


def test_a_parameter_at_its_bound_reads_as_the_csv_gives_it():
    """True or False as written, the same text read back, NaN where a type has no fit, no column in an older
    table; an interval that reaches off the bound is kept."""
    row = {"E": 0.0, "E_ci_low": 0.0, "E_ci_high": 1.417}
    assert scaling.with_interval(pd.Series(row), "E", ".3f") == "0.000 [0.000, 1.417]"  # no column: as before
    for flag in (True, "True", np.bool_(True)):
        flagged = pd.Series({**row, "E_at_bound": flag})
        assert scaling.with_interval(flagged, "E", ".3f") == "at its bound 0 [0.000, 1.417]"
    for flag in (False, "False", float("nan")):
        assert not scaling.at_bound(pd.Series({**row, "E_at_bound": flag}), "E")


def test_frontier_is_the_lower_envelope_over_runs():
    # a small model fast at first then flat, a large one slow at first then lower
    small = curve("t", "small", 1, [1, 2, 4, 8], [3.0, 2.0, 1.9, 1.85])
    large = curve("t", "large", 1, [2, 4, 8, 16], [3.5, 2.2, 1.5, 1.2])
    front = scaling.frontier(scaling.mean_curves(pd.concat([small, large])))
    assert list(front["train_flops"]) == [1, 2, 4, 8, 16]
    assert list(front["run"]) == ["small", "small", "small", "large", "large"]
    assert list(front["bpb"]) == [3.0, 2.0, 1.9, 1.5, 1.2]


def test_crossing_of_two_frontiers_at_a_known_compute():
    flops = np.geomspace(1, 1e4, 5)  # 1, 10, ..., 1e4
    a = pd.DataFrame({"train_flops": flops, "bpb": 5 - np.log10(flops)})  # 5, 4, 3, 2, 1
    b = pd.DataFrame({"train_flops": flops, "bpb": 4 - 0.5 * np.log10(flops)})  # 4, 3.5, 3, 2.5, 2
    assert scaling.crossings(a, b) == [pytest.approx(100, rel=1e-2)]
    assert scaling.crossings(a, a.assign(bpb=a["bpb"] + 1)) == []  # parallel: never
    assert scaling.crossings(a, b.assign(train_flops=b["train_flops"] * 1e6)) == []  # no common compute


def test_a_frontier_that_stops_falling_is_crossed_where_another_passes_its_best():
    flops = np.geomspace(1, 1e4, 9)
    falling = curve("a", "a", 1, flops, np.linspace(3.0, 1.0, 9))  # 3.0, 2.75, ..., 1.0
    flat = curve("b", "b", 1, flops, [2.0, 1.9, 1.8, 1.85, 1.9, 1.81, 1.95, 1.9, 1.85])  # best 1.8 at step 3
    line = scaling.mean_line(scaling.mean_curves(flat))
    assert list(line["train_flops"]) == [1, flops[1], flops[2], 1e4] and list(line["bpb"]) == [2.0, 1.9, 1.8, 1.8]
    rows = scaling.fit_rows(pd.concat([falling, flat]), "hand").set_index("type")
    crossing = flops[4] * 10 ** (0.8 * 0.5)  # a's 2.0 -> 1.75 passes b's best 1.8 at 0.8 of that step (10^0.5)
    assert float(rows.loc["a", "crosses_b_at_flops"]) == pytest.approx(crossing, rel=1e-2)


def crossing_study(rng, seeds):
    """Types a and b of one size each, whose laws cross at a known compute; every seed has a lasting offset of its
    own (as in test_intervals_from_two_seeds_cover_the_true_law) and noise at each point."""
    flops = np.geomspace(1e8, 1e12, 12)
    frames = []
    for seed in range(1, seeds + 1):
        for kind, e, a in (("a", 1.0, 400.0), ("b", 1.5, 10.0)):
            noise = np.exp(rng.normal(0, 0.02) + rng.normal(0, 0.005, len(flops)))
            frames.append(curve(kind, kind, seed, flops, law(flops, e=e, a=a, alpha=0.3) * noise))
    return pd.concat(frames, ignore_index=True)


def crossing_of(points, seeds, replicates):
    return scaling.pair_crossing(points, scaling.mean_curves(points), "a", "b", seeds, replicates=replicates)


def test_crossing_intervals_cover_the_true_crossing_and_narrow_with_seeds():
    truth = (390 / 0.5) ** (1 / 0.3)  # 1 + 400 C^-0.3 = 1.5 + 10 C^-0.3
    rng = np.random.default_rng(7)
    for seeds in (2, 3):
        covered, agreed, ratios, trials = 0, 0, [], 20
        for _ in range(trials):
            found = crossing_of(crossing_study(rng, seeds), seeds, replicates=60)
            low, high = found["ci_low"], found["ci_high"]
            assert low < float(found["at_flops"].split()[-1]) < high
            covered += low <= truth <= high
            agreed += found["same_order"] > 0.9
            ratios.append(high / low)
        assert covered >= 0.9 * trials and agreed >= 0.9 * trials, (seeds, covered, agreed)
        if seeds == 2:
            two_seeds = np.median(ratios)
    assert np.median(ratios) < two_seeds / 3  # t(2) = 4.3 against t(1) = 12.7, and more seeds to average


def test_a_crossing_has_one_interval_in_both_rows_and_none_with_one_seed():
    points = crossing_study(np.random.default_rng(3), 2)
    rows = scaling.fit_rows(points, "hand").set_index("type")
    for end in ("at_flops", "ci_low", "ci_high", "same_order"):
        assert rows.loc["a", f"crosses_b_{end}"] == rows.loc["b", f"crosses_a_{end}"]
    assert rows.loc["a", "crosses_b_ci_low"] > 0
    one = scaling.fit_rows(points[points["seed"] == 1], "hand").set_index("type").loc["a"]
    assert one["crosses_b_at_flops"] != ""
    assert all(math.isnan(one[f"crosses_b_{end}"]) for end in ("ci_low", "ci_high", "same_order"))


def falling(kind, seed, start, flops):
    """A straight fall of 0.1 bpb a decade of compute from `start`."""
    return curve(kind, kind, seed, flops, start - 0.1 * np.log10(flops))


def test_a_crossing_that_only_the_mean_of_the_seeds_shows_gets_a_wide_interval():
    """a's seeds lie wholly above and wholly below b's constant 2.0; only their mean crosses it (at 316). Redraws
    of one seed either hold the order throughout or end in the other order, so the interval spans the compute."""
    flops = np.geomspace(1, 1e4, 9)
    points = pd.concat([falling("a", 1, 2.6, flops), falling("a", 2, 1.9, flops),
                        *(curve("b", "b", seed, flops, np.full(9, 2.0)) for seed in (1, 2))], ignore_index=True)
    found = crossing_of(points, 2, replicates=200)
    assert float(found["at_flops"]) == pytest.approx(10 ** 2.5, rel=1e-2)
    assert (found["ci_low"], found["ci_high"]) == (1, 1e4)  # clipped to the compute both cover
    assert 0.6 < found["same_order"] < 0.9  # (1, 1) ends with b ahead: a quarter of the redraws


def test_a_redraw_that_ends_in_the_other_order_counts_at_the_end_of_the_compute():
    """b's seeds are alike; a's second seed ends below b, its first above: the mean ends with a ahead."""
    flops = np.geomspace(1, 1e4, 9)
    points = pd.concat([falling("a", 1, 2.55, flops), falling("a", 2, 2.2, flops),
                        *(curve("b", "b", seed, flops, 2.3 - 0.05 * np.log10(flops)) for seed in (1, 2))],
                       ignore_index=True)
    lines = {kind: scaling.mean_line(scaling.mean_curves(points[points["type"] == kind])) for kind in "ab"}
    assert scaling.ends_ahead(lines["a"], lines["b"])
    assert scaling.settles_at(lines["a"], lines["b"], True) == (pytest.approx(float(crossing_of(
        points, 2, 10)["at_flops"]), rel=1e-2), True)
    one = {kind: scaling.mean_line(scaling.mean_curves(points[(points["type"] == kind) & (points["seed"] == 1)]))
           for kind in "ab"}
    assert scaling.settles_at(one["a"], one["b"], True) == (1e4, False)  # seed 1 alone: a ends behind
    settled = scaling.redrawn_settling(points[points["type"] == "a"], points[points["type"] == "b"], True, 400)
    assert (settled.loc[~settled["same_order"], "flops"] == 1e4).all()
    assert 0.65 < settled["same_order"].mean() < 0.85  # a redraws (1, 1) in a quarter of them


def two_seed_family(kind, sizes, noise, rng):
    """Runs whose curves follow one law with a size-dependent floor, each seed with its own noise."""
    frames = []
    for size in sizes:
        flops = np.geomspace(1e8, 1e10 * size, 10)
        for seed in (1, 2):
            bpb = law(flops) + 2.0 / size * (flops / flops.max()) ** 2 + rng.normal(0, noise, len(flops))
            frames.append(curve(kind, f"{kind}{size}", seed, flops, bpb))
    return frames


def test_fit_rows_give_intervals_around_the_truth_and_say_when_too_few_points():
    rng = np.random.default_rng(0)
    frames = two_seed_family("transformer", [1, 2, 4], 0.002, rng)
    frames.append(curve("lstm", "lstm", 1, [1e9, 1e10], [2.5, 2.4]))
    rows = scaling.fit_rows(pd.concat(frames), "hand").set_index("type")
    t = rows.loc["transformer"]
    assert t["fitted"] and t["runs"] == 3 and t["seeds"] == 2 and t["fit_points"] >= scaling.MIN_FIT_POINTS
    assert t["alpha_ci_low"] < t["alpha"] < t["alpha_ci_high"]
    assert t["alpha_ci_low"] < 0.25 * 1.2 and t["alpha_ci_high"] > 0.25 * 0.8
    lstm = rows.loc["lstm"]
    assert not lstm["fitted"] and math.isnan(lstm["alpha"])
    assert scaling.fit_note(lstm) == f"no fit: 2 frontier points after warm-up, {scaling.MIN_FIT_POINTS} needed"
    assert "crosses_lstm_at_flops" in rows.columns and "crosses_transformer_at_flops" in rows.columns


def pandas_bootstrap(curves, replicates, seed=0):
    """The bootstrap written out plainly in pandas: each replicate redraws every run's seeds with replacement,
    averages them again (mean_curves) and fits the frontier (fit_type)."""
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(replicates):
        drawn = []
        for _, rows in curves.groupby("run", sort=False):
            seeds = rows["seed"].unique()
            for i, s in enumerate(rng.choice(seeds, size=len(seeds))):
                drawn.append(rows[rows["seed"] == s].assign(seed=i))
        fit = scaling.fit_type(scaling.mean_curves(pd.concat(drawn)))
        if fit is not None:
            fits.append(fit)
    return pd.DataFrame(fits, columns=["E", "A", "alpha"])


def test_bootstrap_equals_redrawing_the_seeds_in_pandas():
    rng = np.random.default_rng(1)
    frames = two_seed_family("transformer", [1, 2, 4], 0.01, rng)
    third = curve("transformer", "transformer4", 3, np.geomspace(1e8, 4e10, 10), law(np.geomspace(1e8, 4e10, 10)))
    frames.append(third.iloc[:7])  # a third seed of one run, stopped early: fewer seeds at its last steps
    frames[0] = frames[0].assign(after_warmup=frames[0]["step"] > 2)
    curves = pd.concat(frames, ignore_index=True)
    got = scaling.bootstrap(curves, "transformer", replicates=60, seed=5)
    want = pandas_bootstrap(curves, replicates=60, seed=5)
    assert len(got) == len(want) > 50 and (got["type"] == "transformer").all()
    # the same draws; the means may differ in their last bit, which least squares carries to its tolerance (1e-8)
    pd.testing.assert_frame_equal(got[["E", "A", "alpha"]], want, rtol=1e-6)


def test_intervals_from_two_seeds_cover_the_true_law(monkeypatch):
    """Simulated studies of two sizes and two seeds, each seed with a lasting offset of its own (an
    initialisation that ends better or worse): the 95% intervals of alpha and E hold the law's values in at least
    90% of them, where a percentile interval of the same draws (from one single-seed fit to the other) falls
    short."""
    rng = np.random.default_rng(1)
    real = scaling.bootstrap
    monkeypatch.setattr(scaling, "bootstrap", lambda curves, kind: real(curves, kind, replicates=60,
                                                                         seed=int(rng.integers(1 << 30))))
    covered, trials = {"alpha": 0, "E": 0, "A": 0}, 30
    for _ in range(trials):
        frames = []
        for size in (1, 2):
            steps = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512][:11 - size])
            flops = steps * 1024 * 1e6 * size
            for seed in (1, 2):
                offset = rng.normal(0, 0.02)  # the seed's own, at every step
                bpb = law(flops / 1e9, e=1.5, alpha=0.4) * np.exp(offset + rng.normal(0, 0.007, len(steps)))
                frames.append(curve("t", f"t{size}", seed, flops, bpb).assign(
                    step=steps, params_non_embedding=size, after_warmup=steps >= 4))
        points = pd.concat(frames, ignore_index=True)
        row = scaling.fit_rows(points, "sim").iloc[0]
        assert row["fitted"] and row["sizes"] == 2
        covered["alpha"] += row["alpha_ci_low"] <= 0.4 <= row["alpha_ci_high"]
        covered["E"] += row["E_ci_low"] <= 1.5 <= row["E_ci_high"]
        covered["A"] += row["A_ci_low"] <= 40 * 1e9 ** 0.4 <= row["A_ci_high"]  # law(C / 1e9) = E + 40 (C / 1e9)^-0.4
        # within the fit's bounds: A > 0, alpha >= 0, E below every fitted point
        assert row["A_ci_low"] > 0 and row["alpha_ci_low"] >= 0
        assert row["E_ci_high"] <= scaling.mean_curves(points)["bpb"].min()
    assert min(covered.values()) >= 0.9 * trials, covered


def test_a_type_of_one_size_is_fitted_as_a_learning_curve():
    flops = np.geomspace(1e8, 1e12, 8)
    runs = [curve("t", run, seed, flops, law(flops) + 0.01 * seed) for run in ("lr_a", "lr_b") for seed in (1, 2)]
    row = scaling.fit_rows(pd.concat(runs, ignore_index=True), "hand").iloc[0]
    assert row["runs"] == 2 and row["sizes"] == 1 and row["fitted"]
    assert scaling.fit_note(row).endswith(" bpb (one size: a learning curve, not a scaling law)")


def test_frontiers_that_cross_only_in_warm_up_do_not_cross():
    flops = np.geomspace(1, 1e4, 9)
    a = curve("a", "a", 1, flops, np.array([3.0, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3]))
    b = curve("b", "b", 1, flops, np.array([2.5, 2.2, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4]))  # a passes b at step 2
    warm = [a.assign(after_warmup=a["step"] > 2), b.assign(after_warmup=b["step"] > 2)]
    assert scaling.fit_rows(pd.concat([a, b]), "hand").set_index("type").loc["a", "crosses_b_at_flops"] != ""
    assert scaling.fit_rows(pd.concat(warm), "hand").set_index("type").loc["a", "crosses_b_at_flops"] == ""
    rising = b.assign(bpb=[2.0, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9], after_warmup=b["step"] > 2)  # lr too high
    rows = scaling.fit_rows(pd.concat([warm[0], rising]), "hand").set_index("type")  # b: no point after warm-up
    assert rows.loc["b", "fit_points"] == 0 and rows.loc["a", "crosses_b_at_flops"] == ""


def test_bootstrap_counts_a_repeated_step_once_as_its_mean():
    rng = np.random.default_rng(2)
    curves = pd.concat(two_seed_family("transformer", [1, 2, 4], 0.01, rng), ignore_index=True)
    step3 = curves[curves["step"] == 3]
    repeated = pd.concat([curves, step3.assign(bpb=step3["bpb"] + 0.02)], ignore_index=True)
    averaged = curves.assign(bpb=np.where(curves["step"] == 3, curves["bpb"] + 0.01, curves["bpb"]))
    got = scaling.bootstrap(repeated, "transformer", replicates=30, seed=3)
    want = scaling.bootstrap(averaged, "transformer", replicates=30, seed=3)
    pd.testing.assert_frame_equal(got, want, rtol=1e-6)


def test_a_point_without_bpb_is_on_no_frontier_and_hides_none():
    flops = np.array([1.0, 2.0, 4.0, 8.0])
    assert list(scaling.on_frontier(flops, np.array([np.nan, 3.0, 2.0, 2.5]))) == [1, 2]
    assert list(scaling.on_frontier(flops, np.array([3.0, np.nan, 2.0, 1.0]))) == [0, 2, 3]


def test_one_seed_gives_a_fit_without_an_interval():
    flops = np.geomspace(1e8, 1e12, 8)
    rows = scaling.fit_rows(curve("t", "r", 1, flops, law(flops)), "hand")
    assert rows.loc[0, "alpha"] == pytest.approx(0.25, rel=1e-3)
    assert math.isnan(rows.loc[0, "alpha_ci_low"]) and math.isnan(rows.loc[0, "alpha_ci_high"])


def test_log_eval_schedule_spreads_points_evenly_in_log_steps():
    cfg = TrainConfig(max_steps=1000, eval_schedule="log", eval_points=4, warmup_steps=0)
    steps = [s for s in range(1001) if cfg.is_eval_step(s)]
    assert steps == [0, 1, 10, 100, 1000]
    # the points from the end of warm-up on, where the fit reads them, and step 1
    warm = TrainConfig(max_steps=1000, eval_schedule="log", eval_points=3, warmup_steps=10)
    assert [s for s in range(1001) if warm.is_eval_step(s)] == [0, 1, 10, 100, 1000]
    assert [s for s in range(101) if TrainConfig(max_steps=100, eval_interval=50).is_eval_step(s)] == [0, 50, 100]


@pytest.mark.parametrize("key, value, words", [
    ("eval_schedule", "weekly", ["eval_schedule", "interval", "log"]),
    ("eval_points", 1, ["eval_points"]),
])
def test_bad_eval_schedule_is_one_line(key, value, words):
    with pytest.raises(PicoError) as err:
        parse(TrainConfig, {key: value}, at=("train",))
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_scaling_figure_with_one_run_per_type_is_one_line():
    cfg = tiny_offline_config(figures={"scaling": True})
    with pytest.raises(PicoError, match=r"config key 'figures.scaling'.*sweep a size") as err:
        Study.model_validate(cfg)
    assert "\n" not in str(err.value)
    cfg["sweep"] = {"lstm": {"hidden_dim": [16]}}
    assert Study.model_validate(cfg).figures.scaling


def write_eval(path, bpb, budget):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bpb": bpb, "flops_budget": budget}))
    return str(path)


def test_compare_pairs_runs_only_at_the_same_budget(tmp_path):
    evals = {}
    for run, budget, bpb in [("lstm_a", 1e12, (2.0, 2.1, 2.2)), ("tf_a", 1e12, (1.8, 1.89, 1.97)),
                             ("tf_b", 3e12, (1.6, 1.7, 1.8)), ("base", None, (2.5, 2.6, 2.7)),
                             ("other", None, (2.5, 2.61, 2.7))]:
        evals[run] = {s: write_eval(tmp_path / run / f"{s}.json", v, budget) for s, v in zip((1, 2, 3), bpb)}
    frame = tables.compare_table(evals, tmp_path / "compare.csv", "hand")
    assert {(r.a, r.b) for r in frame.itertuples()} == {("lstm_a", "tf_a"), ("base", "other")}
    row = frame[frame["a"] == "lstm_a"].iloc[0]
    assert row["flops_budget"] == 1e12 and row["verdict"] == "b better"
    assert row["statement"].startswith("at 1e+12 FLOPs: tf_a better than lstm_a by 0.2133 bpb (95% CI ")
    assert pd.read_csv(tmp_path / "compare.csv").shape == frame.shape


# --- a tiny scaling study, end to end ---------------------------------------------------------------------

BUDGET = 6e8


def scaling_config() -> dict:
    cfg = tiny_offline_config(experiment="scaling_tiny", seeds=[1, 2], figures={"scaling": True})
    cfg["train"] = {**{k: v for k, v in cfg["train"].items() if k != "max_steps"}, "flops": BUDGET,
                    "eval_schedule": "log", "eval_points": 8, "warmup_steps": 3}
    models = cfg["models"]
    cfg["models"] = {"lstm": {**models["lstm"], "hidden_dim": 16},
                     "transformer": {**models["transformer"], "d_model": 16}}
    cfg["sweep"] = {"lstm": {"hidden_dim": [24]}, "transformer": {"d_model": [24]}}  # two sizes a type
    cfg["sampling"] = {"prompts": ["1 2 3"], "p_values": [1.0], "max_new_tokens": 8, "num_samples": 1}
    return cfg


@pytest.fixture(scope="module")
def scaling_study(tmp_path_factory):
    work = tmp_path_factory.mktemp("scaling")
    config = write_config(work / "study.yaml", scaling_config())
    result = snakemake(work, "all", "--cores", "2", "--configfile", config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, config, work / "results" / "scaling_tiny"


def test_tiny_scaling_study_writes_every_output(scaling_study):
    _, _, results = scaling_study
    for name in ("figures/scaling.png", "figures/scaling.svg", "tables/scaling.csv", "tables/scaling_points.csv",
                 "provenance/scaling.json", "report.html"):
        assert (results / name).stat().st_size > 0, name
    fits = pd.read_csv(results / "tables/scaling.csv").set_index("type")
    assert set(fits.index) == {"lstm", "transformer"}
    assert (fits["runs"] == 2).all() and (fits["seeds"] == 2).all()
    assert "crosses_transformer_at_flops" in fits.columns
    points = pd.read_csv(results / "tables/scaling_points.csv")
    assert (points["train_flops"] <= BUDGET).all()
    for run, rows in points[points["kind"] == "curve"].groupby(["run", "seed"]):
        assert len(rows) >= 6, run  # eval_points 8 on a log grid, fewer only where short runs round together
        flops = np.sort(rows["train_flops"].to_numpy())
        assert np.ptp(np.log10(flops)) > 1  # spread over more than a decade of compute
    for type_, row in fits.iterrows():
        if row["fitted"]:  # the table's fit is the fit of its own points
            means = scaling.mean_curves(points[(points["kind"] == "curve") & (points["type"] == type_)])
            redo = scaling.fit_type(means)
            assert redo["alpha"] == pytest.approx(row["alpha"], rel=1e-6)


def test_equal_budgets_are_paired_as_compute_matched(scaling_study):
    _, _, results = scaling_study
    compare = pd.read_csv(results / "tables/compare.csv")
    assert len(compare) == 6 and (compare["flops_budget"] == BUDGET).all()  # 4 runs, one budget
    assert compare["statement"].str.startswith("at 6e+08 FLOPs: ").all()


def test_adding_a_size_or_a_budget_runs_only_the_new_runs_and_the_aggregates(scaling_study):
    work, config, _ = scaling_study
    result = snakemake(work, "all", "-n", "--cores", "2", "--configfile", config, "--config",
                       "sweep={lstm: {hidden_dim: [24, 40]}, transformer: {d_model: [24], train.flops: [1.2e9]}}",
                       "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M))
    assert {k: int(counts[k]) for k in ("train", "sample", "evaluate")} == {"train": 4, "sample": 4, "evaluate": 4}
    assert int(counts["scaling"]) == 1 and int(counts["figure_scaling"]) == 1
    assert "download" not in counts and "tokenize" not in counts


def test_the_final_panel_says_when_the_evaluation_was_capped(tmp_path, monkeypatch):
    from picollm.plots import scaling as figure
    flops = np.geomspace(1e8, 1e12, 8)
    curves = [curve("t", f"t{size}", seed, flops * size, law(flops) + 0.01 * seed).assign(params_non_embedding=size)
              for size in (1, 2) for seed in (1, 2)]
    finals = [c.tail(1).assign(kind="final") for c in curves]
    drawn, save = [], figure.save
    monkeypatch.setattr(figure, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    for capped, title in ((False, "at the end of training (whole split)"),
                          (True, "at the end of training (capped split)")):
        points = pd.concat([*curves, *finals], ignore_index=True)
        points["capped"] = capped & (points["kind"] == "final")
        points.to_csv(tmp_path / "points.csv", index=False)
        scaling.fit_rows(points, "hand").to_csv(tmp_path / "fits.csv", index=False)
        figure.plot({"points": tmp_path / "points.csv", "fits": tmp_path / "fits.csv"}, tmp_path / "s.png", "hand")
        assert drawn[-1].axes[1].get_title() == title


def test_the_figure_marks_where_one_frontier_passes_another_with_its_interval(tmp_path, monkeypatch):
    from picollm.plots import scaling as figure
    points = crossing_study(np.random.default_rng(3), 2)
    points = pd.concat([points, *[rows.tail(1).assign(kind="final") for _, rows in points.groupby(["run", "seed"])]],
                       ignore_index=True)
    points.to_csv(tmp_path / "points.csv", index=False)
    fits = scaling.fit_rows(points, "hand")
    fits.to_csv(tmp_path / "fits.csv", index=False)
    drawn, save = [], figure.save
    monkeypatch.setattr(figure, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    figure.plot({"points": tmp_path / "points.csv", "fits": tmp_path / "fits.csv"}, tmp_path / "s.png", "hand")
    compute = drawn[0].axes[0]
    (label,) = [t.get_text() for t in compute.texts]
    row = fits.set_index("type").loc["a"]
    assert label == f"a passes b\n(in {row['crosses_b_same_order']:.0%} of seed redraws)"  # a ends below b
    (mark,) = [c for c in compute.containers if c.has_xerr]
    (x,), _ = mark.lines[0].get_data()
    assert x == pytest.approx(float(row["crosses_b_at_flops"]), rel=1e-2)
    (bar,) = mark.lines[2]
    (low, _), (high, _) = bar.get_segments()[0]
    assert (low, high) == pytest.approx((row["crosses_b_ci_low"], row["crosses_b_ci_high"]))


@pytest.mark.parametrize("starts", [(2.6, 1.9), (2.25, 2.25)])
def test_the_figure_draws_a_crossing_at_the_edge_of_its_interval_and_none_where_frontiers_do_not_cross(
        tmp_path, monkeypatch, starts):
    """The mean-only crossing (its interval clipped to the compute both cover), or seeds alike (an interval of
    width 0 around the crossing at 316.2, which the CSV rounds to 316), and a third type no frontier crosses."""
    from picollm.plots import scaling as figure
    flops = np.geomspace(1, 1e4, 9)
    curves = [falling("a", 1, starts[0], flops), falling("a", 2, starts[1], flops),
              *(curve(kind, kind, seed, flops, np.full(9, bpb)) for kind, bpb in (("b", 2.0), ("c", 3.0))
                for seed in (1, 2))]
    points = pd.concat([*curves, *(c.tail(1).assign(kind="final") for c in curves)], ignore_index=True)
    points.to_csv(tmp_path / "points.csv", index=False)
    scaling.fit_rows(points, "hand").to_csv(tmp_path / "fits.csv", index=False)
    drawn, save = [], figure.save
    monkeypatch.setattr(figure, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    figure.plot({"points": tmp_path / "points.csv", "fits": tmp_path / "fits.csv"}, tmp_path / "s.png", "hand")
    assert [t.get_text().split("\n")[0] for t in drawn[0].axes[0].texts] == ["a passes b"]


def test_the_last_crossing_reads_every_form_the_csv_gives():
    from picollm.plots.scaling import last_crossing
    assert last_crossing(pd.Series({"crosses_b_at_flops": 3.16e2}), "b") == 316.0  # one crossing: a number
    assert last_crossing(pd.Series({"crosses_b_at_flops": "10 2.15e+03"}), "b") == 2150.0
    assert last_crossing(pd.Series({"crosses_b_at_flops": float("nan")}), "b") is None  # none: a blank cell
    assert last_crossing(pd.Series({"crosses_c_at_flops": 1.0}), "b") is None  # a table without the column


def test_runs_of_one_size_are_named_in_the_final_panel(tmp_path, monkeypatch):
    """A sweep of the learning rate puts its runs at one parameter count: their points say which run each is."""
    from picollm.plots import scaling as figure
    flops = np.geomspace(1e8, 1e12, 8)
    curves = [curve("t", run, seed, flops, law(flops) + shift + 0.01 * seed)
              for run, shift in (("t", 0.0), ("t.train.lr=0.01", 0.1)) for seed in (1, 2)]
    points = pd.concat([*curves, *[c.tail(1).assign(kind="final") for c in curves]], ignore_index=True)
    points.to_csv(tmp_path / "points.csv", index=False)
    scaling.fit_rows(points, "hand").to_csv(tmp_path / "fits.csv", index=False)
    drawn, save = [], figure.save
    monkeypatch.setattr(figure, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    figure.plot({"points": tmp_path / "points.csv", "fits": tmp_path / "fits.csv"}, tmp_path / "s.png", "hand")
    assert sorted(t.get_text() for t in drawn[0].axes[1].texts) == ["t", "t.train.lr=0.01"]
    assert len(drawn[0].axes[0].texts) == 0  # one type: no frontier to pass


def no_overlap(boxes) -> bool:
    """Whether no two of the pixel boxes share any area (touching edges are fine)."""
    return not any(a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])


def inside(box, frame) -> bool:
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def bars_low(ax) -> float:
    """The lowest y any vertical error bar of the axes reaches."""
    return min(segment[:, 1].min() for bars in ax.containers if bars.has_yerr
               for collection in bars.lines[2] for segment in collection.get_segments())


def test_the_scaling_figure_keeps_a_crossing_label_near_the_right_edge_in_its_panel_and_clips_bars_at_0(
        tmp_path, monkeypatch):
    """a passes b at about 3e3 of 1e4 (log x: the right eighth of the panel), where a label to the right of the X
    would run into the other panel; two seeds far apart put a t interval of a final below 0 bits per byte."""
    from picollm.plots import scaling as figure
    flops = np.geomspace(1, 1e4, 9)
    curves = [falling("a", 1, 2.6, flops), falling("a", 2, 2.62, flops),
              *(curve("b", "b", seed, flops, np.full(9, 2.25)) for seed in (1, 2))]
    finals = [c.tail(1).assign(kind="final") for c in curves]
    finals[0] = finals[0].assign(bpb=0.5)  # a's seeds end at 0.5 and 1.5 bpb: 1 +- 6.4, below 0
    finals[1] = finals[1].assign(bpb=1.5)
    points = pd.concat([*curves, *finals], ignore_index=True)
    points.to_csv(tmp_path / "points.csv", index=False)
    scaling.fit_rows(points, "hand").to_csv(tmp_path / "fits.csv", index=False)
    drawn, save = [], figure.save
    monkeypatch.setattr(figure, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    figure.plot({"points": tmp_path / "points.csv", "fits": tmp_path / "fits.csv"}, tmp_path / "s.png", "hand")
    fig = drawn[0]
    fig.canvas.draw()
    compute, final = fig.axes[:2]
    (label,) = compute.texts
    assert label.get_text().startswith("a passes b")
    x, _ = compute.transAxes.inverted().transform(compute.transData.transform(label.xy))
    assert x > 2 / 3 and label.get_ha() == "right"  # in the right third: to the left of its X
    box = label.get_window_extent()
    assert inside(box, compute.get_window_extent()) and not box.overlaps(final.get_window_extent())
    assert bars_low(final) == pytest.approx(0.0, abs=1e-9)
    assert final.get_title().endswith("\nbars clipped at 0 bits per byte")


def sweep_eval(path, run, kind, point, params, bpb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": run, "run": run, "type": kind, "params": params, "params_embedding": 100,
                                "params_head": 100, "params_core": params - 200, "head_tied": False,
                                "tokens_seen": 5120, "train_flops": 6e8, "bpb": bpb,
                                "sweep": None if point is None else dict(zip(["model", "key", "value"], point))}))
    return str(path)


def test_the_sweep_figure_keeps_labels_apart_in_its_panel_and_clips_bars_at_0(tmp_path, monkeypatch):
    """The tiny scaling study's sweep: two types swept to sizes a few percent apart, on one FLOP budget, so that
    hidden_dim=24 and d_model=24 (and the =32 pair) fall on one another; two seeds of hidden_dim=32 far apart (a t
    interval of 6.5 +- 9.1 bpb)."""
    from picollm.plots import sweep
    runs = {"lstm": ("lstm", None, 10500, (4.7, 5.3)),
            "lstm.hidden_dim=24": ("lstm", ("lstm", "hidden_dim", 24), 14500, (5.6, 6.3)),
            "lstm.hidden_dim=32": ("lstm", ("lstm", "hidden_dim", 32), 19000, (5.8, 7.2)),
            "transformer": ("transformer", None, 7000, (5.1, 5.3)),
            "transformer.d_model=24": ("transformer", ("transformer", "d_model", 24), 14000, (5.6, 5.8)),
            "transformer.d_model=32": ("transformer", ("transformer", "d_model", 32), 21500, (5.9, 6.0))}
    evals = {run: {seed: sweep_eval(tmp_path / run / f"{seed}.json", run, kind, point, params, bpb)
                   for seed, bpb in zip((1, 2), seeds)} for run, (kind, point, params, seeds) in runs.items()}
    drawn, save = [], sweep.save
    monkeypatch.setattr(sweep, "save", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw)))
    sweep.plot(evals, tmp_path / "sweep.png", "hand")
    fig = drawn[0]
    fig.canvas.draw()
    every = [ax for ax in fig.axes if ax.get_visible()][-1]
    assert "by size" in every.get_title()
    labels = {t.get_text(): t.get_window_extent() for t in every.texts}
    assert {"hidden_dim=24", "d_model=24", "hidden_dim=32", "d_model=32", "lstm", "transformer"} == set(labels)
    assert no_overlap(list(labels.values()))
    assert all(inside(box, every.get_window_extent()) for box in labels.values())
    for ax in fig.axes[:3]:
        assert bars_low(ax) >= 0.0
    assert "bars clipped at 0 bits per byte" in fig._suptitle.get_text()
