"""Metrics on tiny worlds whose right answers are worked out by hand in each test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    calibration_table,
    catalogue_coverage,
    churn_metrics,
    hour_hit_rate,
    hour_of_day_hit_rate,
    map_at_k,
    ndcg_at_k,
    ndcg_per_member,
    policy_value,
    policy_value_multi,
    precision_at_k,
    qini_coefficient,
    qini_curve,
    recall_at_k,
    roc_auc_standard_error,
    standard_error,
)

RANKING = (ndcg_at_k, recall_at_k, map_at_k, precision_at_k)


# ---------------------------------------------------------------- ranking
def test_perfect_ranking_scores_one():
    recs = [["a", "b", "c"], ["x", "y"]]
    relevant = [{"a", "b", "c"}, {"x", "y"}]
    for metric in (ndcg_at_k, recall_at_k, map_at_k):
        assert metric(recs, relevant, k=3) == pytest.approx(1.0)
    assert precision_at_k(recs, relevant, k=2) == pytest.approx(1.0)


def test_three_item_example_by_hand():
    # one member, list [a, b, c], relevant {a, c, d}, k = 3: hits at ranks 1 and 3
    recs, relevant = [["a", "b", "c"]], [{"a", "c", "d"}]
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(recs, relevant, k=3) == pytest.approx(dcg / idcg)
    assert recall_at_k(recs, relevant, k=3) == pytest.approx(2 / 3)
    assert precision_at_k(recs, relevant, k=3) == pytest.approx(2 / 3)
    assert map_at_k(recs, relevant, k=3) == pytest.approx((1 / 1 + 2 / 3) / 3)
    # k = 2 cuts the list to [a, b]: recall caps the denominator at min(k, |relevant|) = 2
    assert recall_at_k(recs, relevant, k=2) == pytest.approx(1 / 2)
    assert ndcg_at_k(recs, relevant, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert map_at_k(recs, relevant, k=2) == pytest.approx(1 / 2)


def test_members_without_relevant_items_are_skipped_and_duplicates_count_once():
    recs = [["a", "b"], ["z", "z"], ["q"]]
    relevant: list[set[str]] = [{"a"}, {"z"}, set()]
    # third member skipped; second member's list is [z] after dedup: 1 hit of k = 2
    assert precision_at_k(recs, relevant, k=2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert recall_at_k(recs, relevant, k=2) == pytest.approx(1.0)
    for metric in RANKING:
        assert math.isnan(metric([["a"]], [set()], k=5))


def test_ranking_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="same order"):
        ndcg_at_k([["a"]], [{"a"}, {"b"}])
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k([["a"]], [{"a"}], k=0)


def test_catalogue_coverage():
    assert catalogue_coverage([["a", "b"], ["b", "c"], []], catalogue_size=6) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        catalogue_coverage([["a", "b"]], catalogue_size=1)


# ---------------------------------------------------------------- churn
def test_churn_metrics_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = churn_metrics(y, p)
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3 of 4
    assert m["roc_auc"] == pytest.approx(0.75)
    # ranked: 0.8 (pos, precision 1), 0.4 (neg), 0.35 (pos, precision 2/3)
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(ll)
    assert m["base_rate"] == 0.5 and m["n"] == 4


def test_churn_metrics_single_class_gives_nan_aucs():
    m = churn_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["base_rate"] == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        churn_metrics([0, 1], [0.5, 1.5])


def test_calibration_table_uniform_bins():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.55])
    t = calibration_table(y, p, bins=10)
    assert len(t) == 10 and t["count"].sum() == 6
    first, second = t.iloc[0], t.iloc[1]
    assert first["count"] == 1 and first["observed_rate"] == 0.0
    assert second["count"] == 2 and second["mean_predicted"] == pytest.approx(0.135)
    assert second["observed_rate"] == pytest.approx(0.5)
    last = t.iloc[-1]  # 0.95 and 1.0 share the closed last bin
    assert last["count"] == 2 and last["observed_rate"] == 1.0
    assert np.isnan(t.iloc[3]["mean_predicted"]) and t.iloc[3]["count"] == 0
    q = calibration_table(y, p, bins=2, strategy="quantile")
    assert q["count"].tolist() == [3, 3]


# ---------------------------------------------------------------- uplift
def uplift_world(n: int = 20_000, seed: int = 0):
    """Randomized 50/50 offer; treatment lifts the purchase rate by ``tau`` in [-0.1, 0.3]
    (some members are put off), base rate 0.2. ``tau`` is the perfect uplift score."""
    rng = np.random.default_rng(seed)
    tau = rng.uniform(-0.1, 0.3, n)
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < 0.2 + treated * tau).astype(float)
    return treated, y, tau


def test_qini_curve_by_hand():
    # scores 4..1; rows: (t, y) = (1,1) (0,0) (1,1) (0,1)
    treated = np.array([True, False, True, False])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    x, q = qini_curve(treated, y, np.array([4.0, 3.0, 2.0, 1.0]))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1.0])
    # n=1: Y_t=1, no control yet -> 1; n=2: 1 - 0*1/1 = 1; n=3: 2 - 0*2/1 = 2; n=4: 2 - 1*2/2
    np.testing.assert_allclose(q, [0, 1, 1, 2, 1])
    # area under q: (0.5 + 1 + 1.5 + 1.5) / 4 = 1.125; under the random line 0.5; / 4 rows
    assert qini_coefficient(treated, y, np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx(
        (1.125 - 0.5) / 4
    )


def test_qini_ties_are_one_step_and_constant_score_is_random():
    treated, y, _ = uplift_world(2_000, seed=3)
    x, q = qini_curve(treated, y, np.ones(len(y)))
    assert x.tolist() == [0.0, 1.0]
    assert qini_coefficient(treated, y, np.ones(len(y))) == pytest.approx(0.0, abs=1e-12)
    # order within ties does not matter
    s = np.repeat([3.0, 2.0, 1.0], [500, 700, 800])
    perm = np.random.default_rng(1).permutation(len(y))
    a = qini_coefficient(treated, y, s)
    b = qini_coefficient(treated[perm], y[perm], s[perm])
    assert a == pytest.approx(b)


def test_perfect_uplift_score_beats_random_and_reverse_is_below():
    treated, y, tau = uplift_world()
    perfect = qini_coefficient(treated, y, tau)
    reverse = qini_coefficient(treated, y, -tau)
    noise = qini_coefficient(treated, y, np.random.default_rng(9).random(len(y)))
    # expected per-row area for the perfect score: the incremental-gain curve
    # 0.5 * n * int_0^1 (G(x) - x G(1)) dx, with G the cumulative tau from the top:
    # tau ~ U(-0.1, 0.3) -> G(x) = 0.3x - 0.2x^2, G(1) = 0.1, area 0.5 * 0.2/6 = 0.01667.
    # Tolerance 0.004 = 4.5 standard errors (sd over 40 seeds: 0.0009).
    assert perfect == pytest.approx(0.2 / 12, abs=0.004)
    assert reverse == pytest.approx(-0.2 / 12, abs=0.004)
    assert abs(noise) < 0.004
    x, q = qini_curve(treated, y, tau)
    xr, qr = qini_curve(treated, y, -tau)
    mid = np.searchsorted(x, 0.5)
    assert q[mid] > 0.5 * q[-1] > qr[np.searchsorted(xr, 0.5)]


# ---------------------------------------------------------------- policy value
def test_policy_value_recovers_truth_on_a_randomized_experiment():
    rng = np.random.default_rng(4)
    n = 60_000
    segment = rng.random(n) < 0.4  # in the segment the offer adds +2.0, elsewhere -1.0
    treated = rng.random(n) < 0.3
    effect = np.where(segment, 2.0, -1.0)
    y = 5.0 + treated * effect + rng.normal(0, 1, n)
    # truth: treat the segment only -> 5 + 0.4 * 2 = 5.8; treat all -> 5 + 0.4*2 - 0.6 = 5.2.
    # Tolerance 0.12 = 4 standard errors (the estimate's sd over 100 seeds is 0.029).
    assert policy_value(treated, y, segment) == pytest.approx(5.8, abs=0.12)
    assert policy_value(treated, y, np.ones(n, bool)) == pytest.approx(5.2, abs=0.12)
    assert policy_value(treated, y, np.zeros(n, bool)) == pytest.approx(5.0, abs=0.12)
    assert policy_value(treated, y, segment, propensity=0.3) == pytest.approx(5.8, abs=0.12)
    assert policy_value(treated, y, segment, self_normalize=True) == pytest.approx(5.8, abs=0.12)


def test_policy_value_with_known_propensities_by_hand():
    # two treated rows with P(treated) 0.5 and 0.25, one control with P(control) 0.5
    treated = np.array([True, True, False, False])
    y = np.array([2.0, 4.0, 1.0, 3.0])
    e = np.array([0.5, 0.25, 0.5, 0.5])
    assigned = np.array([True, True, False, True])  # rows 0, 1, 2 agree
    assert policy_value(treated, y, assigned, e) == pytest.approx(
        (2 / 0.5 + 4 / 0.25 + 1 / 0.5) / 4
    )
    with pytest.raises(ValueError, match="could not have received"):
        policy_value(treated, y, assigned, np.array([0.5, 0.25, 0.5, 0.0]))


def test_policy_value_multi_arm():
    rng = np.random.default_rng(5)
    n = 60_000
    arm = rng.choice(np.array(["", "pct10", "ship"]), size=n, p=[0.5, 0.3, 0.2])
    loyal = rng.random(n) < 0.5
    # pct10 is worth +3 to loyal members and -1 to the rest; free shipping +1 for everyone
    lift = np.select([arm == "pct10", arm == "ship"], [np.where(loyal, 3.0, -1.0), 1.0], 0.0)
    y = 10.0 + lift + rng.normal(0, 2, n)
    best = np.where(loyal, "pct10", "ship")
    assert policy_value_multi(arm, y, np.full(n, "")) == pytest.approx(y[arm == ""].mean())
    assert policy_value_multi(arm, y, np.full(n, "ship")) == pytest.approx(y[arm == "ship"].mean())
    # truth 10 + 0.5 * 3 + 0.5 * 1 = 12. Tolerances are 4 standard errors measured over 100
    # seeds: Horvitz-Thompson sd 0.074 (the level of 10 is reweighted too), Hajek sd 0.019.
    assert policy_value_multi(arm, y, best) == pytest.approx(12.0, abs=0.3)
    assert policy_value_multi(arm, y, best, self_normalize=True) == pytest.approx(12.0, abs=0.08)
    with pytest.raises(ValueError, match="never offered"):
        policy_value_multi(arm, y, np.full(n, "bogof"))


# ---------------------------------------------------------------- send time
def test_hour_hit_rate_wraps_around_the_week():
    rec = np.array([167, 0, 10, 10, 50])
    act = np.array([0, 167, 11, 12, 50 + 24])
    # 167 <-> 0 is one hour (Sunday 23:00 -> Monday 00:00); 10 vs 12 is two; 50 vs 74 a day
    assert hour_hit_rate(rec, act, tolerance_hours=1) == pytest.approx(3 / 5)
    assert hour_hit_rate(rec, act, tolerance_hours=0) == pytest.approx(0.0)
    assert hour_hit_rate(rec, act, tolerance_hours=2) == pytest.approx(4 / 5)
    # same hour of day, different day: a hit on the 24-hour circle
    assert hour_of_day_hit_rate(rec, act, tolerance_hours=1) == pytest.approx(4 / 5)
    assert hour_of_day_hit_rate([23], [24 * 3], tolerance_hours=1) == 1.0  # Mon 23:00 ~ Thu 00:00
    assert math.isnan(hour_hit_rate([], []))
    with pytest.raises(ValueError, match=r"\[0, 168\)"):
        hour_hit_rate([168], [0])


# ---------------------------------------------------------------- noise
def test_ndcg_per_member_averages_to_ndcg_and_marks_empty_sets():
    recs = [["a", "b"], ["x", "y"], ["p"]]
    relevant = [{"a"}, {"y"}, set()]
    per = ndcg_per_member(recs, relevant, k=2)
    assert per[:2].tolist() == pytest.approx([1.0, 1 / np.log2(3)])
    assert np.isnan(per[2])  # the third has nothing relevant
    assert np.nanmean(per) == pytest.approx(ndcg_at_k(recs, relevant, k=2))
    with pytest.raises(ValueError, match="relevant sets"):
        ndcg_per_member(recs, relevant[:2])


def test_standard_error_of_a_mean():
    assert standard_error([1.0, 3.0]) == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert standard_error([2.0, 2.0, 2.0]) == 0.0
    assert math.isnan(standard_error([1.0]))


def test_roc_auc_standard_error_by_hand():
    # A = 0.5 with one of each class: Q1 = Q2 = 1/3, variance = A(1 - A) = 0.25
    assert roc_auc_standard_error(0.5, 1, 1) == pytest.approx(0.5)
    assert roc_auc_standard_error(1.0, 50, 50) == 0.0  # perfect separation: no spread
    big, small = roc_auc_standard_error(0.7, 1000, 1000), roc_auc_standard_error(0.7, 100, 100)
    assert big == pytest.approx(small / np.sqrt(10), rel=0.01)  # shrinks as 1 / sqrt(n)
    assert math.isnan(roc_auc_standard_error(0.7, 0, 10))
