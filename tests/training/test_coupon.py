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
