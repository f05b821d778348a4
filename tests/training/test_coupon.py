"""Coupon outcomes and policy scores on offers whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import TrainConfig
from training.coupon import offer_outcomes, policy_scores


def test_offer_outcomes_split_the_discount_out_as_cost():
    t0 = pd.Timestamp("2025-03-01")
    offers = pd.DataFrame({
        "member_id": ["a", "b", "c"], "campaign_id": ["k"] * 3,
        "offered_ts": [t0] * 3, "coupon_id": ["C10", None, "C10"],
    })  # fmt: skip
    lines = pd.DataFrame({
        "order_id": ["o1", "o1", "o2", "o3"], "member_id": ["a", "a", "b", "a"],
        "ts": [t0 + pd.Timedelta(days=d) for d in (1, 1, 2, 30)],  # o3: after the window
        "product_id": ["p", "q", "p", "p"], "quantity": [1.0, 2.0, 1.0, 1.0],
        "unit_price": [50.0, 10.0, 20.0, 99.0], "discount": [5.0, 0.0, np.nan, 0.0],
    })  # fmt: skip
    rates = pd.Series({"p": 0.5, "q": 0.2})
    out = offer_outcomes(offers, lines, rates, TrainConfig(), t0 + pd.Timedelta(days=60))
    assert out["arm"].tolist() == ["C10", "", "C10"]
    np.testing.assert_allclose(out["cost"], [5.0, 0.0, 0.0])
    np.testing.assert_allclose(out["net_margin"], [25.0 + 4.0 - 5.0, 10.0, 0.0])


def test_policy_scores_value_and_standard_error():
    # one campaign, half treated: treated earn 12, controls 10 -> uplift +2 per offer
    arm = np.array(["A", ""] * 50)
    y = np.where(arm == "A", 12.0, 10.0)
    everyone = policy_scores(arm, y, np.full(100, "A"), None, np.zeros(100))
    assert everyone["incremental_margin"] == pytest.approx(2.0)
    assert everyone["share_offered"] == 1.0 and everyone["incremental_margin_se"] > 0
    half = np.where(np.arange(100) < 50, "A", "")
    assert policy_scores(arm, y, half, None)["incremental_margin"] == pytest.approx(1.0)
    none = policy_scores(arm, y, np.full(100, ""), None)
    assert none["incremental_margin"] == 0.0 and none["incremental_margin_se"] == 0.0
    with pytest.raises(ValueError, match="never offered"):
        policy_scores(arm, y, np.full(100, "B"), None)


def _one_off(n: int = 1200, seed: int = 3) -> pd.DataFrame:
    """One randomized campaign, halves control / A: A adds 6 to the margin of members with
    x > 0 and takes 6 from the others (cost 1 per redeemed coupon)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    arm = rng.permutation(np.resize(np.array(["", "A"]), n))
    effect = np.where(arm == "A", np.where(x > 0, 6.0, -6.0), 0.0)
    return pd.DataFrame({
        "member_id": [f"m{i}" for i in range(n)], "campaign_id": "mail", "arm": arm,
        "x": x, "z": rng.normal(size=n), "cost": np.where(arm == "A", 1.0, 0.0),
        "net_margin": 5.0 + effect + rng.normal(0, 1.0, n),
    })  # fmt: skip


def test_run_gate_and_backtest_value_the_policy_through_the_same_code(monkeypatch):
    from features.settings import CouponSettings, GateSettings, TrainingSettings
    from training import coupon as tc
    from training.backtest import coupons as bc
    from training.config import coupon_config
    from training.gate import select

    frame = _one_off()
    calls: list[int] = []
    real = tc.cross_fitted_personalised

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tc, "cross_fitted_personalised", spy)
    gate = GateSettings(cross_fit_folds=3)
    cfg = TrainConfig()
    res = tc.train_coupon(frame, ["x", "z"], cfg, CouponSettings(), gate)
    ccfg = coupon_config(CouponSettings(), TrainingSettings(seed=cfg.seed))
    cands, _, _ = bc.cross_fitted(frame, ["x", "z"], ccfg, 3, cfg.seed)
    assert calls == [len(frame), len(frame)]  # once for run's gate, once for the backtest
    backtest = select(cands, z=gate.z)
    assert res.selection is not None
    assert res.selection.champion == backtest.champion == "personalised"
    assert [r.estimate for r in res.selection.rows] == [r.estimate for r in backtest.rows]
    # every offer was valued out of fold: the gate saw all of them, not a held-out share
    assert res.selection.n_units == len(frame)
    assert any("cross-fitting" in n for n in res.notes)


def test_member_folds_split_members_not_offers():
    from training.coupon import member_folds

    members = pd.Series(["a", "b", "a", "c", "b", "d"])
    fold = member_folds(members, k=2, seed=1)
    assert fold[0] == fold[2] and fold[1] == fold[4] and set(fold) == {0, 1}
    with pytest.raises(ValueError, match="2 to 4 folds"):
        member_folds(members, k=5)
