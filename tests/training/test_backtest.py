"""Backtest sections on tiny worlds: each section's candidates and scores, and the report's
verdicts, with right answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import repo
from models.coupon import NoCouponPolicy
from models.send_time import SendTimeConfig, SendTimeModel
from training.backtest import churn, coupons, report, send_time
from training.backtest.send_time import member_mode_hours, reachable_share


# ---------------------------------------------------------------- send time
def test_member_mode_within_allowed_hours():
    ts = pd.to_datetime(
        ["2025-05-05 23:10"] * 3 + ["2025-05-05 12:00"] * 2 + ["2025-05-06 09:00"]
    )  # Monday 23:00 three times, Monday 12:00 twice, Tuesday 09:00 once
    eng = pd.DataFrame({"member_id": ["a"] * 5 + ["b"], "ts": ts})
    assert member_mode_hours(eng, {}, 0) == {"a": 23, "b": 33}
    allowed = np.ones(168, dtype=bool)
    allowed[np.arange(168) % 24 >= 22] = False
    assert member_mode_hours(eng, {}, 0, allowed) == {"a": 12, "b": 33}
    allowed[33] = False
    assert member_mode_hours(eng, {}, 0, allowed) == {"a": 12}  # b has no allowed hour


def test_reachable_share_is_the_ceiling_under_quiet_hours():
    allowed = (np.arange(168) % 24 >= 8) & (np.arange(168) % 24 < 22)
    # 22:00 and 07:00 are within an hour of 21:00 and 08:00; 23:00 and 03:00 are not
    assert reachable_share(np.array([22, 7, 23, 3, 12]), allowed) == 0.6
    assert reachable_share(np.array([23]), np.ones(168, dtype=bool)) == 1.0


def test_send_time_candidates_and_scores():
    # a engages on Mondays at 12:00 (hour 12), b on Tuesdays at 23:00 (hour 47, quiet)
    ts = pd.to_datetime(["2025-05-05 12:00", "2025-05-12 12:00", "2025-05-19 12:00",
                         "2025-05-06 23:00", "2025-05-13 23:00"])  # fmt: skip
    eng = pd.DataFrame({"member_id": ["a"] * 3 + ["b"] * 2, "channel": "email", "ts": ts})
    shipped = SendTimeModel(SendTimeConfig()).fit(
        eng["member_id"].to_numpy(str), eng["channel"].to_numpy(str),
        eng["ts"].to_numpy("datetime64[us]"), timezones={},
    )  # fmt: skip
    recs = send_time.candidates(eng, {}, {}, ["a", "b"], shipped)
    assert set(recs) == {"shipped", "global_best_hour", "member_mode_hour",
                         "member_mode_hour_allowed"}  # fmt: skip
    assert recs["member_mode_hour"].tolist() == [12, 47]
    assert not shipped.config.quiet_mask()[recs["shipped"]].any()  # never a quiet hour
    scores = send_time.score(recs, np.array([12, 47]))
    assert scores["member_mode_hour"]["hit_rate_1h"] == 1.0
    assert scores["member_mode_hour"]["hit_rate_1h_se"] == 0.0
    assert all(set(m) == set(scores["shipped"]) for m in scores.values())


# ---------------------------------------------------------------- churn
def test_churn_scores_with_standard_errors():
    y = np.array([1, 1, 0, 0])
    scores = churn.score(
        {"perfect": np.array([0.9, 0.8, 0.2, 0.1]), "reversed": np.array([0.1, 0.2, 0.8, 0.9])},
        y,
    )
    assert scores["perfect"]["roc_auc"] == 1.0 and scores["perfect"]["roc_auc_se"] == 0.0
    assert scores["reversed"]["roc_auc"] == 0.0
    assert scores["perfect"]["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)


def test_churn_labels_are_members_without_a_purchase():
    future = pd.DataFrame({"member_id": ["a", "b"], "quantity": [1.0, -1.0]})
    assert churn.labels(pd.Series(["a", "b", "c"]), future).tolist() == [0, 1, 1]


# ---------------------------------------------------------------- coupons
def offers_world() -> pd.DataFrame:
    """One campaign, half control: the coupon adds 2 to every treated member's margin."""
    n = 40
    arm = np.where(np.arange(n) % 2 == 0, "C10", "")
    frame = pd.DataFrame({
        "member_id": [f"m{i}" for i in range(n)], "campaign_id": "camp", "arm": arm,
        "net_margin": np.where(arm != "", 3.0, 1.0), "redeemed": arm != "",
    })  # fmt: skip
    for f in repo.COUPON_FEATURES:
        frame[f] = 0.0
    return frame


def test_coupon_candidates_value_everyone_and_none():
    frame = offers_world()
    decisions = coupons.candidates(frame.iloc[:0], frame, NoCouponPolicy())
    assert set(decisions) == {"shipped", "everyone", "none"}  # no history: no propensity
    scores = coupons.score(decisions, frame)
    assert scores["everyone"]["incremental_margin"] == pytest.approx(2.0)
    assert scores["none"]["incremental_margin"] == 0.0
    assert scores["shipped"] == scores["none"]  # giving no coupon is giving none
    rand = coupons.random_scores(frame, budget=20)
    assert rand["share_offered"] == 0.5 and 0.0 < rand["incremental_margin"] < 2.0


def test_targeted_offers_are_not_valued():
    frame = offers_world()
    assert coupons.randomized(frame) and not coupons.randomized(frame[frame["arm"] != ""])


# ---------------------------------------------------------------- report
def result_with(products: dict) -> dict:
    return {"products": products, "churn": None, "send_time": None, "coupons": None}


def test_wins_tell_a_point_win_from_a_win_beyond_the_noise():
    sec = {
        "primary": "ndcg@10",
        "shipped": {"ndcg@10": 0.30, "ndcg@10_se": 0.01},
        "baselines": {
            "close": {"ndcg@10": 0.29, "ndcg@10_se": 0.01},  # 0.01 < 1.96 * 0.0141
            "far": {"ndcg@10": 0.20, "ndcg@10_se": 0.01},
            "better": {"ndcg@10": 0.31, "ndcg@10_se": 0.01},
        },
    }
    w = report.wins(result_with(sec))["products"]
    assert w["beats"] == {"close": True, "far": True, "better": False}
    assert w["beats_beyond_noise"] == {"close": False, "far": True, "better": False}
    assert not w["beats_all"]
    assert report.wins(result_with(None))["products"] is None


def test_markdown_joins_each_metric_with_its_standard_error():
    sec = {"primary": "ndcg@10", "shipped": {"ndcg@10": 0.3, "ndcg@10_se": 0.01, "coverage": 0.5},
           "baselines": {"popularity": {"ndcg@10": 0.1, "ndcg@10_se": 0.02, "coverage": 0.1}}}  # fmt: skip
    result = {"dataset": "tiny", "as_of": "2025-01-01", "horizon_days": 90, "notes": {},
              "rows": {"visible": {}, "horizon": {}}, **result_with(sec)}  # fmt: skip
    result["wins"] = report.wins(result)
    md = report.markdown(result)
    assert "| model | ndcg@10 | coverage |" in md
    assert "| **shipped** | 0.3000 ± 0.0100 | 0.5000 |" in md
    assert "by more than the noise (1.96 combined standard errors) it beats: popularity." in md
