"""The planner on worlds whose right answer is known: the budget is never exceeded, the
frequency cap and quiet hours hold, the holdout share is what was asked, the same seed gives
the same plan, and the knapsack picks by margin per unit of cost."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from models.campaign import (
    HOLDOUT,
    NONE,
    CampaignSpec,
    Defaults,
    in_quiet,
    plan,
    summary,
)  # fmt: skip


def members(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "member_id": [f"M{i:06d}" for i in range(n)],
        "margin__A": rng.normal(1.0, 2.0, n), "margin__B": rng.normal(2.0, 3.0, n),
        "preferred_channel": rng.choice(["email", "sms", "push"], n),
        "send_hour": rng.integers(0, 24, n),
        "timezone": rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo", None], n),
        "abuse_risk": rng.random(n), "value_tier": rng.choice(["gold", "silver", "bronze"], n),
    })  # fmt: skip


def spec(**kw) -> CampaignSpec:
    base = {"name": "c1", "offers": [{"coupon_id": "A", "cost": 1.0},
                                     {"coupon_id": "B", "cost": 3.0}],
            "budget": 300.0, "start": date(2026, 1, 5), "send_days": 3,
            "channels": ["email", "push"]}  # fmt: skip
    return CampaignSpec.model_validate(base | kw)


@pytest.mark.parametrize("budget", [0.0, 10.0, 300.0, 1e9])
def test_the_budget_is_never_exceeded(budget):
    s = plan(members(3000), spec(budget=budget, exploration_share=0.1), Defaults(), seed=3)
    assert s["expected_cost"].sum() <= budget + 1e-6
    if budget == 0:
        assert (s["action"] == NONE).all()


def test_knapsack_prefers_margin_per_unit_of_cost():
    t = pd.DataFrame({"member_id": ["a", "b", "c"], "margin__A": [3.0, 10.0, 1.5],
                      "margin__B": [np.nan, np.nan, np.nan]})  # fmt: skip
    sp = spec(offers=[{"coupon_id": "A", "cost": 1.0}, {"coupon_id": "B", "cost": 1.0}],
              budget=2.0, holdout_share=0.0)  # fmt: skip
    s = plan(t, sp, Defaults(), seed=0).set_index("member_id")
    assert s.loc["b", "action"] == "A" and s.loc["a", "action"] == "A"
    assert s.loc["c", "action"] == NONE  # the budget ran out before the weakest


def test_holdout_share_within_one_point_at_100k():
    s = plan(members(100_000), spec(budget=1e9), Defaults(holdout_share=0.1), seed=11)
    share = (s["arm"] == HOLDOUT).mean()
    assert abs(share - 0.10) <= 0.01
    assert (s.loc[s["arm"] == HOLDOUT, "action"] == NONE).all()
    assert s.loc[s["arm"] == HOLDOUT, "channel"].isna().all()


def test_propensities_are_a_distribution_and_match_the_draw():
    s = plan(members(20_000), spec(budget=1e9, exploration_share=0.2), Defaults(), seed=1)
    p = s[["p__none", "p__A", "p__B"]].to_numpy()
    assert np.allclose(p.sum(1), 1.0)
    # members the policy meant B for got B about p__B of the time
    meant = s["intended"] == "B"
    got = (s.loc[meant, "action"] == "B").mean()
    assert abs(got - s.loc[meant, "p__B"].mean()) < 0.02


def test_quiet_hours_hold_in_each_members_local_time():
    s = plan(members(2000), spec(budget=1e9), Defaults(quiet_hours=(21, 8)), seed=2)
    t = members(2000).set_index("member_id").loc[s["member_id"]]
    for utc, zone in zip(pd.to_datetime(s["send_at_utc"]), t["timezone"], strict=True):
        local = utc.tz_localize("UTC").tz_convert(ZoneInfo(zone or "UTC"))
        assert not in_quiet(local.hour, (21, 8)), (utc, zone)
    assert in_quiet(22, (21, 8)) and in_quiet(3, (21, 8)) and not in_quiet(12, (21, 8))


def test_frequency_cap_counts_other_campaigns():
    t = members(500)
    prior = pd.DataFrame({"member_id": np.repeat(t["member_id"].iloc[:100], 3),
                          "send_at_utc": pd.Timestamp("2026-01-03 10:00")})  # fmt: skip
    s = plan(t, spec(budget=1e9), Defaults(frequency_cap=3, abuse_threshold=None), prior=prior)
    assert not set(t["member_id"].iloc[:100]) & set(s["member_id"])
    assert len(s) == 400
    far = prior.assign(send_at_utc=pd.Timestamp("2025-10-01"))  # outside the 7 days
    assert (
        len(plan(t, spec(budget=1e9), Defaults(frequency_cap=3, abuse_threshold=None), prior=far))
        == 500
    )


def test_eligibility_leaves_out_tiers_and_abuse_risk():
    t = members(1000)
    s = plan(t, spec(eligibility={"tiers": ["gold"]}), Defaults(abuse_threshold=0.5))
    kept = t.set_index("member_id").loc[s["member_id"]]
    assert (kept["value_tier"] == "gold").all() and (kept["abuse_risk"] < 0.5).all()


def test_same_seed_same_plan_other_seed_other_holdout():
    t = members(2000)
    a = plan(t, spec(), Defaults(), seed=5)
    b = plan(t.sample(frac=1.0, random_state=1), spec(), Defaults(), seed=5)
    pd.testing.assert_frame_equal(a, b)
    c = plan(t, spec(), Defaults(), seed=6)
    assert not a["arm"].equals(c["arm"])
    assert a["decision_id"].is_unique


def test_messages_only_campaign_sends_everyone_but_the_holdout():
    s = plan(members(1000), spec(offers=[], budget=0), Defaults(holdout_share=0.2), seed=0)
    assert set(s["action"]) == {"message", NONE}
    assert (s.loc[s["action"] == "message", "channel"].isin(["email", "push"])).all()
    assert summary(s, spec(offers=[], budget=0))["expected_cost"] == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("holdout_share", 1.2, "less than 1"), ("offers", [{"coupon_id": "none", "cost": 1}],
      "reserved"), ("channels", ["fax"], "email"), ("quiet_hours", [25, 3], "less than or equal to 23"),
     ("name", "../x", "pattern")],
)  # fmt: skip
def test_bad_specs_are_refused_with_the_reason(field, value, message):
    with pytest.raises(ValueError, match=message):
        spec(**{field: value})
