"""Statistics over seeds on hand-made numbers: Student-t intervals and paired differences."""
import math

import pytest

from picollm.stats import few_seeds_note, paired_difference, t_interval

T_975_2 = 4.302652729749462  # Student t, 97.5% quantile, 2 degrees of freedom (tables give 4.303)


def test_t_interval_of_three_values():
    ci = t_interval([1, 2, 3])
    assert ci["n"] == 3 and ci["mean"] == 2 and ci["std"] == pytest.approx(1)
    assert ci["ci_low"] == pytest.approx(2 - T_975_2 / math.sqrt(3))
    assert ci["ci_high"] == pytest.approx(2 + T_975_2 / math.sqrt(3))


def test_t_interval_confidence_and_sample_size():
    assert t_interval([1, 2, 3], confidence=0.90)["ci_high"] == pytest.approx(2 + 2.919986 / math.sqrt(3))
    # two seeds: t with 1 degree of freedom is 12.71, a wide interval, as it should be
    ci = t_interval([1.0, 1.2])
    assert ci["ci_high"] - ci["mean"] == pytest.approx(12.706205 * math.sqrt(0.02) / math.sqrt(2))
    same = t_interval([1.5, 1.5, 1.5])
    assert same["std"] == 0 and same["ci_low"] == same["ci_high"] == 1.5


def test_t_interval_of_one_value_has_no_spread():
    ci = t_interval([2.5])
    assert ci["n"] == 1 and ci["mean"] == 2.5
    assert all(math.isnan(ci[k]) for k in ("std", "ci_low", "ci_high"))
    assert t_interval([2.5, float("nan")])["n"] == 1  # a seed without the measurement is left out
    assert t_interval([])["n"] == 0 and math.isnan(t_interval([])["mean"])


def test_paired_difference_pairs_by_seed():
    a = {1: 1.0, 2: 1.2, 3: 1.1, 4: 9.0}  # seed 4 has no partner in b and is left out
    b = {1: 1.5, 2: 1.6, 3: 1.65}
    d = paired_difference(a, b)
    diffs = [-0.5, -0.4, -0.55]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    assert d["n"] == 3 and d["mean_diff"] == pytest.approx(mean)
    assert d["ci_low"] == pytest.approx(mean - T_975_2 * std / math.sqrt(3))
    assert d["ci_high"] == pytest.approx(mean + T_975_2 * std / math.sqrt(3)) and d["ci_high"] < 0
    assert d["verdict"] == "a better"
    assert paired_difference(b, a)["verdict"] == "b better"


def test_pairing_sees_a_difference_the_seed_spread_hides():
    """Seeds move both runs together; a is always 0.01 lower: separate intervals overlap, the paired one does not."""
    b = {1: 1.0, 2: 1.3, 3: 1.6}
    a = {1: 0.99, 2: 1.291, 3: 1.589}
    ca, cb = t_interval(a.values()), t_interval(b.values())
    assert ca["ci_high"] > cb["ci_low"]
    assert paired_difference(a, b)["verdict"] == "a better"


def test_within_noise():
    assert paired_difference({1: 1.0, 2: 1.2, 3: 1.1}, {1: 1.1, 2: 1.1, 3: 1.1})["verdict"] == "within noise"
    one = paired_difference({1: 1.0}, {1: 2.0})  # one seed: no interval, no verdict
    assert one["n"] == 1 and one["verdict"] == "within noise" and math.isnan(one["ci_low"])
    none = paired_difference({1: 1.0}, {2: 2.0})
    assert none["n"] == 0 and none["verdict"] == "within noise"


def test_few_seeds_say_why_their_intervals_are_wide():
    assert few_seeds_note(2) == "with 2 seeds the 95% t factor is 12.7: wide intervals by construction"
    assert "4.3" in few_seeds_note(3) and few_seeds_note(1) == few_seeds_note(4) == ""
