"""Coupon policy on a constructed randomized experiment whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from models.coupon import CouponConfig, CouponPolicy, NoCouponPolicy, load_coupon_policy

FEATURES = ["price_sensitive", "tenure_days"]


def experiment(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offers randomized over control (""), "A" (cost 4) and "B" (cost 10).

    Loyal members (price_sensitive = 0) earn 20 whatever happens: a redeemed coupon is pure
    cost. Price-sensitive members earn 2 untreated, 2 + 12 - 4 with A (uplift +8) and
    2 + 7 - 10 with B (uplift -3: B costs more than it yields). Noise sd 3.
    """
    rng = np.random.default_rng(seed)
    ps = (rng.random(n) < 0.5).astype(float)
    tenure = rng.uniform(0, 1000, n)
    arm = rng.choice(np.array(["", "A", "B"]), n)
    base = np.where(ps == 1, 2.0, 20.0)
    gain = {"": 0.0, "A": 12.0, "B": 7.0}
    cost = {"": 0.0, "A": 4.0, "B": 10.0}
    net = np.array(
        [b + (gain[a] if p else 0.0) - cost[a] for b, a, p in zip(base, arm, ps, strict=True)]
    )
    return np.column_stack([ps, tenure]), arm, net + rng.normal(0, 3, n)


@pytest.fixture(scope="module")
def policy() -> CouponPolicy:
    X, arm, y = experiment()
    return CouponPolicy(CouponConfig()).fit(X, arm, y, feature_names=FEATURES)


def test_price_sensitive_get_a_loyal_get_none(policy):
    assert policy.fitted and policy.coupons == ["A", "B"]
    for tenure in (10.0, 500.0, 990.0):
        coupon, margin, reason = policy.decide(np.array([1.0, tenure]))
        assert coupon == "A"
        assert margin == pytest.approx(8.0, abs=1.0)
        assert reason.startswith("A: +") and "expected incremental margin net of cost" in reason
        coupon, margin, reason = policy.decide(np.array([0.0, tenure]))
        assert coupon is None
        assert margin == pytest.approx(-4.0, abs=1.0)  # A is the least bad: its cost
        assert reason.startswith("no coupon: best expected incremental margin -")
        assert reason.endswith("not above 0.00") and "80% lower bound" in reason


def test_expected_uplift_recovers_the_planted_effects(policy):
    up = policy.expected_uplift(np.array([[1.0, 100.0], [0.0, 100.0]]))
    assert up.shape == (2, 2)
    np.testing.assert_allclose(up, [[8.0, -3.0], [-4.0, -10.0]], atol=1.0)


def test_decide_many_matches_decide(policy):
    X, _, _ = experiment(n=50, seed=3)
    many, one = policy.decide_many(X), [policy.decide(x) for x in X]
    assert [(c, r) for c, _, r in many] == [(c, r) for c, _, r in one]
    np.testing.assert_allclose([m for _, m, _ in many], [m for _, m, _ in one], rtol=1e-12)


def test_threshold_is_respected():
    X, arm, y = experiment()
    strict = CouponPolicy(CouponConfig(min_incremental_margin=50.0)).fit(X, arm, y, FEATURES)
    coupon, margin, reason = strict.decide(np.array([1.0, 10.0]))
    assert coupon is None and margin > 0 and reason.endswith("not above 50.00")


def test_missing_features_are_imputed(policy):
    coupon, margin, _ = policy.decide(np.array([1.0, np.nan]))
    assert coupon == "A" and np.isfinite(margin)
    assert all(np.isfinite(m) for _, m, _ in policy.decide_many(np.full((3, 2), np.nan)))


def test_wrong_feature_count_says_what_was_expected(policy):
    with pytest.raises(ValueError, match="price_sensitive"):
        policy.decide(np.array([1.0]))


@pytest.mark.parametrize(
    ("keep", "reason"),
    [
        (lambda arm: arm == "nothing", "no randomized coupon history: no past offers"),
        (lambda arm: arm != "", "no randomized coupon history: no control group in past offers"),
        (lambda arm: np.arange(len(arm)) < 40, "fewer than min_rows_per_arm=30"),
        (lambda arm: arm == "", "no coupon arm with at least 30 offers (none offered)"),
    ],
)
def test_without_usable_history_the_policy_says_why(keep, reason):
    X, arm, y = experiment()
    rows = keep(arm)
    policy = CouponPolicy().fit(X[rows], arm[rows], y[rows], feature_names=FEATURES)
    assert not policy.fitted
    assert reason in policy.reason_unfitted
    assert policy.decide(np.array([1.0, 10.0])) == (None, 0.0, policy.reason_unfitted)
    assert policy.decide_many(X[:2]) == [(None, 0.0, policy.reason_unfitted)] * 2
    assert policy.expected_uplift(X[:2]).shape == (2, 0)


def test_unfitted_before_fit_says_why():
    coupon, margin, reason = CouponPolicy().decide(np.array([1.0, 2.0]))
    assert (coupon, margin) == (None, 0.0) and "not fitted" in reason


def test_thin_arm_is_dropped_with_a_reason():
    X, arm, y = experiment()
    rows = (arm != "B") | (np.cumsum(arm == "B") <= 10)
    policy = CouponPolicy().fit(X[rows], arm[rows], y[rows], feature_names=FEATURES)
    assert policy.fitted and policy.coupons == ["A"]
    assert policy.dropped == {"B": "10 offers, fewer than min_rows_per_arm=30"}
    assert policy.decide(np.array([1.0, 10.0]))[0] == "A"


def test_save_load_round_trip(policy, tmp_path):
    path = tmp_path / "coupon"
    policy.save(path)
    for loaded in (CouponPolicy.load(path), load_coupon_policy(path)):
        assert isinstance(loaded, CouponPolicy)
        assert loaded.coupons == policy.coupons and loaded.feature_names == FEATURES
        X, _, _ = experiment(n=40, seed=5)
        assert loaded.decide_many(X) == policy.decide_many(X)
        np.testing.assert_array_equal(loaded.expected_uplift(X), policy.expected_uplift(X))


def test_unfitted_policy_round_trips_its_reason(tmp_path):
    X, arm, y = experiment()
    policy = CouponPolicy().fit(X[arm != ""], arm[arm != ""], y[arm != ""], FEATURES)
    policy.save(tmp_path / "coupon")
    loaded = load_coupon_policy(tmp_path / "coupon")
    assert not loaded.fitted and loaded.reason_unfitted == policy.reason_unfitted
    assert loaded.decide(np.array([1.0, 2.0])) == policy.decide(np.array([1.0, 2.0]))


def test_no_coupon_baseline(tmp_path):
    X, arm, y = experiment(n=100)
    base = NoCouponPolicy().fit(X, arm, y, FEATURES)
    coupon, margin, reason = base.decide(X[0])
    assert (coupon, margin) == (None, 0.0) and reason
    assert base.decide_many(X[:3]) == [(None, 0.0, reason)] * 3
    assert base.expected_uplift(X).shape == (100, 0) and base.coupons == []
    base.save(tmp_path / "none")
    loaded = load_coupon_policy(tmp_path / "none")
    assert isinstance(loaded, NoCouponPolicy) and loaded.decide(X[0]) == (None, 0.0, reason)
    with pytest.raises(ValueError, match="NoCouponPolicy"):
        CouponPolicy.load(tmp_path / "none")


# ---------------------------------------------------------------- decomposed estimator
DEC_FEATURES = ["persuadable", "heavy", "noise"]
VALUE, COST = 30.0, {"A": 4.0, "B": 10.0}


def purchase_experiment(
    n: int = 12_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two campaigns, each randomizing one coupon against its own control group (A offered
    to 70% of campaign 1, B to 50% of campaign 2). A window with a purchase earns VALUE in
    margin; a treated member who buys redeems and costs the coupon's discount (COST).

    Light buyers (heavy = 0) buy with probability 0.3; a coupon lifts that to 0.7 for
    persuadable ones. Heavy buyers buy with probability 0.9 whatever happens: for them a
    coupon is pure cost. Expected uplift net of cost:

    - persuadable light: 0.4 * 30 - 0.7 * cost  ->  A +9.2, B +5.0
    - heavy:            -0.9 * cost             ->  A -3.6, B -9.0
    - other light:      -0.3 * cost             ->  A -1.2, B -3.0

    Returns X, arm, net_margin, cost, campaign.
    """
    rng = np.random.default_rng(seed)
    heavy = rng.random(n) < 0.4
    pers = ~heavy & (rng.random(n) < 0.5)
    camp = np.where(rng.random(n) < 0.5, "c1", "c2")
    u = rng.random(n)
    arm = np.where(camp == "c1", np.where(u < 0.7, "A", ""), np.where(u < 0.5, "B", ""))
    treated = arm != ""
    p = np.where(heavy, 0.9, np.where(pers & treated, 0.7, 0.3))
    bought = rng.random(n) < p
    cost = np.where(bought & treated, [COST.get(a, 0.0) for a in arm], 0.0)
    gross = np.where(bought, VALUE + rng.normal(0, 5, n), 0.0)
    X = np.column_stack([pers, heavy, rng.normal(0, 1, n)]).astype(float)
    return X, arm, gross - cost, cost, camp


@pytest.fixture(scope="module")
def decomposed() -> CouponPolicy:
    X, arm, y, cost, camp = purchase_experiment()
    return CouponPolicy().fit(X, arm, y, DEC_FEATURES, cost=cost, campaign=camp)


def test_decomposed_recovers_the_planted_uplift(decomposed):
    assert decomposed.fitted and decomposed.method == "decomposed"
    assert decomposed.coupons == ["A", "B"]
    up = decomposed.expected_uplift(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0, 0, 0]]))
    # the gain model is linear and shrunk: right in sign and order, close in size
    np.testing.assert_allclose(up, [[9.2, 5.0], [-3.6, -9.0], [-1.2, -3.0]], atol=2.0)
    parts = decomposed.expected_parts(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert set(parts) == {"purchase_lift", "value", "cost"}
    assert parts["purchase_lift"][0, 0] > 0.25 and abs(parts["purchase_lift"][1, 0]) < 0.1
    np.testing.assert_allclose(parts["cost"][1], [0.9 * 4.0, 0.9 * 10.0], atol=0.5)


def test_decomposed_offers_only_to_the_persuadable(decomposed):
    assert decomposed.decide(np.array([1.0, 0.0, 0.3]))[0] == "A"
    assert decomposed.decide(np.array([0.0, 1.0, 0.3]))[0] is None
    coupon, margin, reason = decomposed.decide(np.array([0.0, 0.0, np.nan]))
    assert coupon is None and margin < 0 and reason.startswith("no coupon")


def test_decomposed_value_on_held_out_offers_beats_everyone_and_none(decomposed):
    from training.coupon import policy_scores

    X, arm, y, _, camp = purchase_experiment(n=6_000, seed=1)
    up = decomposed.expected_uplift(X)
    offered = np.where(camp == "c1", "A", "B")
    col = np.where(offered == "A", 0, 1)
    score = up[np.arange(len(X)), col]
    shipped = policy_scores(arm, y, np.where(score > 0, offered, ""), score, camp)
    everyone = policy_scores(arm, y, offered, None, camp)
    assert shipped["incremental_margin"] > max(everyone["incremental_margin"], 0.0) + 1.0
    assert shipped["qini"] > 0


def test_decomposed_margin_outcome_and_single_experiment():
    X, arm, y, cost, camp = purchase_experiment()
    margin = CouponPolicy(CouponConfig(gain_outcome="margin")).fit(
        X, arm, y, DEC_FEATURES, cost=cost, campaign=camp
    )
    assert set(margin.expected_parts(X[:2])) == {"margin_lift", "value", "cost"}
    assert margin.decide(np.array([1.0, 0.0, 0.0]))[0] == "A"
    assert margin.decide(np.array([0.0, 1.0, 0.0]))[0] is None
    one = CouponPolicy().fit(X, arm, y, DEC_FEATURES, cost=cost)  # no campaigns: one experiment
    assert one.decide(np.array([1.0, 0.0, 0.0]))[0] == "A"
    assert one.decide(np.array([0.0, 1.0, 0.0]))[0] is None
    with pytest.raises(ValueError, match="gain_outcome"):
        CouponConfig(gain_outcome="basket")


def test_decomposed_needs_a_campaign_with_a_control_group():
    X, arm, y, cost, _ = purchase_experiment(n=2_000)
    camp = np.where(arm == "", "holdout", "offers")  # controls and coupons never meet
    policy = CouponPolicy().fit(X, arm, y, DEC_FEATURES, cost=cost, campaign=camp)
    assert not policy.fitted
    assert "no campaign has both a control group and a coupon" in policy.reason_unfitted
    with pytest.raises(ValueError, match="cost"):
        CouponPolicy().fit(X, arm, y, DEC_FEATURES, cost=cost[:-1])


def test_decomposed_drops_a_thin_arm():
    X, arm, y, cost, camp = purchase_experiment(n=4_000)
    rows = (arm != "B") | (np.cumsum(arm == "B") <= 10)
    policy = CouponPolicy().fit(
        X[rows], arm[rows], y[rows], DEC_FEATURES, cost=cost[rows], campaign=camp[rows]
    )
    assert policy.fitted and policy.coupons == ["A"] and "B" in policy.dropped
    assert policy.decide(np.array([1.0, 0.0, 0.0]))[0] == "A"


def test_decomposed_save_load_round_trip(decomposed, tmp_path):
    decomposed.save(tmp_path / "coupon")
    loaded = load_coupon_policy(tmp_path / "coupon")
    assert isinstance(loaded, CouponPolicy) and loaded.method == "decomposed"
    X, *_ = purchase_experiment(n=200, seed=4)
    np.testing.assert_array_equal(loaded.expected_uplift(X), decomposed.expected_uplift(X))
    assert loaded.decide_many(X) == decomposed.decide_many(X)
    assert [loaded.decide(x) for x in X[:20]] == [decomposed.decide(x) for x in X[:20]]


def test_decide_memoises_on_the_feature_values(decomposed):
    """The storefront asks about the same member on every page: the trees run once per
    distinct feature vector, and a memoised answer is the computed one."""
    X, *_ = purchase_experiment(n=200, seed=5)
    decomposed._decide_memo.cache_clear()
    first = [decomposed.decide(x) for x in X]
    info = decomposed._decide_memo.cache_info()
    distinct = len({x.tobytes() for x in X})
    assert info.misses == distinct
    again = [decomposed.decide(x.copy()) for x in X]
    assert again == first
    assert decomposed._decide_memo.cache_info().hits == info.hits + len(X)
    batch = decomposed.decide_many(X)
    assert [(c, round(m, 9)) for c, m, _ in batch] == [(c, round(m, 9)) for c, m, _ in first]


def interaction_experiment(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """One campaign, coupon A to half the members, who buy with p = 0.3. The coupon lifts
    that to 0.7 only for members with trait ``a`` and without trait ``b`` ("redeems coupons
    but is not a heavy buyer"): a + b is not additive. A purchase earns VALUE; a redeeming
    buyer costs COST["A"]."""
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < 0.5, rng.random(n) < 0.5
    arm = np.where(rng.random(n) < 0.5, "A", "")
    treated = arm != ""
    p = np.where(a & ~b & treated, 0.7, 0.3)
    bought = rng.random(n) < p
    cost = np.where(bought & treated, COST["A"], 0.0)
    gross = np.where(bought, VALUE + rng.normal(0, 5, n), 0.0)
    X = np.column_stack([a, b, rng.normal(0, 1, n)]).astype(float)
    return X, arm, gross - cost, cost


def test_boosted_learner_finds_an_interaction_the_ridge_one_cannot():
    X, arm, y, cost = interaction_experiment(16_000, seed=0)
    boosted = CouponPolicy().fit(X, arm, y, DEC_FEATURES, cost=cost)
    ridge = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, DEC_FEATURES, cost=cost)
    cells = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert [boosted.decide(x)[0] for x in cells] == [None, "A", None]
    Xt, armt, yt, _ = interaction_experiment(16_000, seed=1)

    from training.coupon import policy_scores

    def value(policy: CouponPolicy) -> float:
        up = policy.expected_uplift(Xt)[:, 0]
        return policy_scores(armt, yt, np.where(up > 0, "A", ""), up)["incremental_margin"]

    assert value(boosted) > value(ridge) + 0.3  # measured: about 2.3 against 1.7
    with pytest.raises(ValueError, match="learner"):
        CouponConfig(learner="forest")


def test_precomputed_decisions_are_the_computed_ones(decomposed):
    X, *_ = purchase_experiment(n=300, seed=6)
    assert decomposed.precompute(X) == len({x.tobytes() for x in X})
    decomposed._decide_memo.cache_clear()
    answers = [decomposed.decide(x.copy()) for x in X]
    assert decomposed._decide_memo.cache_info().misses == 0  # all from the precomputed table
    decomposed.precompute(X[:0])  # forget them: the same answers, computed
    assert [decomposed.decide(x) for x in X] == answers
    assert NoCouponPolicy().precompute(X) == 0


def _world(effect_ps: float, effect_loyal: float, n: int = 4000, seed: int = 5):
    """One coupon "A" (cost 3 when redeemed) against control; the planted net uplift is
    ``effect_ps`` for price-sensitive members and ``effect_loyal`` for the others. Noise sd 4."""
    rng = np.random.default_rng(seed)
    ps = (rng.random(n) < 0.5).astype(float)
    X = np.column_stack([ps, rng.uniform(0, 1000, n)])
    arm = rng.choice(np.array(["", "A"]), n)
    treated = arm == "A"
    net = 10.0 + treated * np.where(ps == 1, effect_ps, effect_loyal) + rng.normal(0, 4, n)
    return X, arm, net


def test_no_effect_anywhere_offers_nothing():
    X, arm, y = _world(0.0, 0.0)
    pol = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, FEATURES)
    decisions = pol.decide_many(X[:200])
    assert all(c is None for c, _, _ in decisions)
    assert abs(pol.shrinkage["mean"][0]) < 3 * pol.shrinkage["se"][0]


def test_an_effect_all_alike_is_not_personalised():
    X, arm, y = _world(2.0, 2.0)
    pol = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, FEATURES)
    up = pol.expected_uplift(X[:500])[:, 0]
    assert pol.shrinkage["mean"][0] == pytest.approx(2.0, abs=0.6)
    assert up.std() < 0.3  # the learner's spurious spread is shrunk away
    assert all(c == "A" for c, _, _ in pol.decide_many(X[:200]))


def test_real_heterogeneity_survives_the_shrinkage():
    X, arm, y = _world(6.0, -2.0)
    pol = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, FEATURES)
    assert pol.shrinkage["slope"][0] > 0.6
    up = pol.expected_uplift(np.array([[1.0, 500.0], [0.0, 500.0]]))[:, 0]
    assert up[0] == pytest.approx(6.0, abs=1.5) and up[1] == pytest.approx(-2.0, abs=1.5)
    assert (
        pol.decide(np.array([1.0, 10.0]))[0] == "A" and pol.decide(np.array([0.0, 10.0]))[0] is None
    )


def test_shrinkage_survives_save_and_load(tmp_path):
    X, arm, y = _world(6.0, -2.0, n=2000)
    pol = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, FEATURES)
    pol.save(tmp_path / "p.npz")
    back = load_coupon_policy(tmp_path / "p.npz")
    np.testing.assert_allclose(back.expected_uplift(X[:50]), pol.expected_uplift(X[:50]))
    assert back.decide_many(X[:50]) == pol.decide_many(X[:50])


def test_fixed_coupon_rule_round_trips(tmp_path):
    from models.coupon import FixedCouponPolicy

    rule = FixedCouponPolicy("A", 1.25).fit(
        np.zeros((2, 2)), np.array(["", "A"]), np.zeros(2), FEATURES
    )
    c, m, why = rule.decide(np.array([1.0, 2.0]))
    assert (c, m) == ("A", 1.25) and "every member" in why and "+1.25" in why
    rule.save(tmp_path / "f.npz")
    back = load_coupon_policy(tmp_path / "f.npz")
    assert back.decide_many(np.zeros((3, 2))) == [rule.decide(np.zeros(2))] * 3
    assert back.feature_names == FEATURES


@pytest.mark.parametrize("effect", [0.0, 0.25, 2.0])
def test_no_planted_heterogeneity_means_everyone_or_nobody(effect):
    # the same effect for every member: the spread the learner predicts is not confirmed on
    # held-out offers, so the slope is 0 and every member gets the same decision
    X, arm, y = _world(effect, effect)
    pol = CouponPolicy(CouponConfig(learner="ridge")).fit(X, arm, y, FEATURES)
    assert pol.shrinkage["slope"][0] == 0.0
    up, lower = pol.uplift_bounds(X)
    assert np.ptp(up) < 1e-9 and np.ptp(lower) < 1e-9
    assert len({c for c, _, _ in pol.decide_many(X)}) == 1


@pytest.mark.slow
def test_strong_planted_heterogeneity_personalises_with_the_boosted_learner():
    X, arm, y = _world(6.0, -2.0, n=6000)
    pol = CouponPolicy(CouponConfig(gain_outcome="margin")).fit(X, arm, y, FEATURES)
    assert pol.shrinkage["slope"][0] > 0.5
    chosen = np.array([c == "A" for c, _, _ in pol.decide_many(X)])
    ps = X[:, 0] == 1
    assert chosen[ps].mean() > 0.9 and chosen[~ps].mean() < 0.1


def test_evidence_slope_keeps_what_the_held_out_offers_confirm():
    from models.coupon import _evidence_slope

    assert _evidence_slope(0.2, 0.43) == 0.0  # within noise of zero: no heterogeneity
    assert _evidence_slope(-0.5, 0.1) == 0.0  # predicted spread runs the wrong way
    assert _evidence_slope(0.9, 0.03) == pytest.approx(0.9 * (1 - (0.03 / 0.9) ** 2))
    assert _evidence_slope(1.4, 0.1) == 1.0  # never more spread than the learner predicts
    assert _evidence_slope(0.5, float("inf")) == 0.0


def test_an_offer_needs_its_lower_bound_above_the_threshold():
    # a small effect (+0.25, se about 0.13): offered on the point estimate, not at 80%
    X, arm, y = _world(0.25, 0.25)
    offered = {}
    for conf in (0.5, 0.8, 0.99):
        pol = CouponPolicy(CouponConfig(learner="ridge", offer_confidence=conf))
        pol.fit(X, arm, y, FEATURES)
        up, lower = pol.uplift_bounds(X[:300])
        decisions = pol.decide_many(X[:300])
        # the rule, member by member: offer exactly where the lower bound clears the threshold
        assert [c is not None for c, _, _ in decisions] == (lower[:, 0] > 0.0).tolist()
        assert all(f"{conf:.0%}" in why for _, _, why in decisions)
        offered[conf] = np.mean([c is not None for c, _, _ in decisions])
    assert offered[0.5] == 1.0 and offered[0.8] == 0.0 and offered[0.99] == 0.0
    with pytest.raises(ValueError, match="offer_confidence"):
        CouponConfig(offer_confidence=0.3)
