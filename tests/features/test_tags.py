"""Member tags on tiny worlds whose right answers are known."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from features.settings import TagConfig
from features.tags import LIFECYCLE_STAGES, compute_tags

AS_OF = date(2024, 6, 30)
REF = pd.Timestamp("2024-07-01")  # end of the as-of day


def lines(rows):
    """rows: (member, days_before_ref, product, qty, price[, discount])."""
    recs = []
    for i, r in enumerate(rows):
        m, days, p, q, price, *rest = r
        recs.append({"order_id": f"o{i}", "member_id": m, "ts": REF - pd.Timedelta(days=days),
                     "product_id": p, "quantity": float(q), "unit_price": float(price),
                     "discount": float(rest[0]) if rest else 0.0})  # fmt: skip
    return pd.DataFrame(recs)


def by_member(df):
    return df.set_index("member_id")


def test_rule_tags_use_the_documented_thresholds():
    ol = lines([
        ("dormant", 61, "p1", 1, 10), ("dormant", 200, "p1", 1, 10),
        ("recent", 59, "p1", 1, 10), ("recent", 100, "p1", 1, 10),
        ("freq", 1, "p1", 1, 10), ("freq", 10, "p1", 1, 10), ("freq", 29, "p1", 1, 10),
        ("two", 1, "p1", 1, 10), ("two", 10, "p1", 1, 10), ("two", 31, "p1", 1, 10),
        ("big", 5, "p2", 1, 500), ("big", 300, "p2", 1, 5),
        ("deal", 5, "p1", 2, 10, 10), ("deal", 40, "p1", 1, 10),
    ])  # fmt: skip
    t = by_member(compute_tags({"order_lines": ol}, AS_OF, TagConfig()))
    assert t.loc["dormant", "dormant"] and not t.loc["recent", "dormant"]
    assert t.loc["freq", "high_frequency"] and not t.loc["two", "high_frequency"]
    assert t.loc["big", "high_order_value"] and t["high_order_value"].sum() == 1
    assert t.loc["deal", "price_sensitive"]  # 10 of 30 spend discounted >= 0.3
    assert t.loc["deal", "discount_share"] == pytest.approx(10 / 30)
    assert t.loc["freq", "recency_days"] == pytest.approx(1.0)
    assert "high_frequency" in t.loc["freq", "tags"].split(",")


def test_rfm_scores_are_quintiles_and_value_tiers_a_pyramid():
    rows = []
    for i in range(100):
        rows += [(f"m{i:03d}", 1 + i, "p1", 1, 1 + i)]  # more recent -> cheaper
        rows += [(f"m{i:03d}", 400 + k, "p1", 1, 1) for k in range(i % 7)]
    t = compute_tags({"order_lines": lines(rows)}, AS_OF)
    for col in ("r_score", "f_score", "m_score"):
        assert sorted(t[col].value_counts().to_dict().items()) == [(s, 20) for s in range(1, 6)]
    # the most recent buyer has R=5, the least recent R=1
    t = by_member(t)
    assert t.loc["m000", "r_score"] == 5 and t.loc["m099", "r_score"] == 1
    shares = t["value_tier"].value_counts().to_dict()
    assert shares == {"platinum": 5, "gold": 15, "silver": 30, "bronze": 30, "basic": 20}
    top = t["monetary"].nlargest(5).index
    assert set(t.loc[top, "value_tier"]) == {"platinum"}


def test_lifecycle_stages_and_early_warnings():
    ol = lines(
        [("new", 5, "p", 1, 10)]
        + [("churned", 200, "p", 1, 10), ("churned", 260, "p", 1, 10)]
        + [("dormant", 70, "p", 1, 10), ("dormant", 100, "p", 1, 10)]
        + [("react", 10, "p", 1, 10), ("react", 150, "p", 1, 10), ("react", 170, "p", 1, 10)]
        # 4 orders in the previous 90 days, 2 in the last 90: activity down by half
        + [("decl", d, "p", 1, 10) for d in (40, 80, 100, 110, 120, 130)]
        # regular 10-day cycle, now 30 days without an order: gap past 1.5x the cycle
        + [("gap", d, "p", 1, 10) for d in (30, 40, 50, 60)]
        + [("grow", d, "p", 1, 10) for d in (5, 15, 25, 35, 120)]
        + [("mature", d, "p", 1, 10) for d in (10, 50, 95, 130, 170, 400)]
    )
    members = pd.DataFrame({"member_id": ["fresh"], "signup_ts": [REF - pd.Timedelta(days=3)]})
    t = by_member(compute_tags({"order_lines": ol, "members": members}, AS_OF))
    stage = t["lifecycle_stage"]
    assert stage["new"] == "new" and stage["fresh"] == "new"
    assert stage["churned"] == "churned"
    assert stage["dormant"] == "dormant"
    assert stage["react"] == "reactivated"
    assert stage["decl"] == "declining"
    assert stage["grow"] == "growing"
    assert stage["mature"] == "mature"
    assert set(stage) <= set(LIFECYCLE_STAGES)
    assert t.loc["decl", "warn_activity_down"]
    assert t.loc["gap", "warn_gap_exceeded"] and t.loc["gap", "usual_cycle_days"] == 10
    assert not t.loc["mature", "warn_gap_exceeded"]


def test_future_rows_are_invisible_and_as_of_moves_the_window():
    ol = lines([("a", 10, "p", 1, 10), ("a", -5, "p", 1, 999)])  # second is after as-of
    t = by_member(compute_tags({"order_lines": ol}, AS_OF))
    assert t.loc["a", "frequency"] == 1 and t.loc["a", "monetary"] == 10
    earlier = by_member(compute_tags({"order_lines": ol}, AS_OF - timedelta(days=30)))
    assert "a" not in earlier.index  # first order came after that date


def test_preferences_hours_and_channel():
    ol = lines([("a", 10, "shoe", 1, 50), ("a", 20, "shoe", 1, 50), ("a", 30, "hat", 1, 10)])
    # 19:00 New York local on three Tuesdays (UTC 23:00 in summer)
    ts = pd.to_datetime(["2024-06-04 23:00", "2024-06-11 23:00", "2024-06-18 23:00"])
    ol["ts"] = ts
    products = pd.DataFrame({"product_id": ["shoe", "hat"], "category": ["shoes", "hats"]})
    members = pd.DataFrame({"member_id": ["a"], "timezone": ["America/New_York"]})
    messages = pd.DataFrame({
        "member_id": ["a"] * 4, "channel": ["email", "email", "push", "push"],
        "sent_ts": pd.to_datetime(["2024-06-01"] * 4),
        "opened_ts": pd.to_datetime([None, None, "2024-06-01 23:10", None]),
    })  # fmt: skip
    t = by_member(compute_tags({"order_lines": ol, "products": products, "members": members,
                                "messages": messages}, AS_OF))  # fmt: skip
    assert t.loc["a", "top_category"] == "shoes"
    assert t.loc["a", "top_category_share"] == pytest.approx(100 / 110)
    assert t.loc["a", "categories"] == "shoes,hats"
    assert t.loc["a", "active_hour"] == 19
    assert t.loc["a", "active_how"] == 1 * 24 + 19  # Tuesday 19:00 local
    assert t.loc["a", "preferred_channel"] == "push"
    assert t.loc["a", "timezone"] == "America/New_York"


def test_output_types_are_stable_for_feast():
    t = compute_tags({"order_lines": lines([("a", 1, "p", 1, 1)])}, AS_OF)
    assert t["event_timestamp"].dt.tz is not None
    assert t["recency_days"].dtype == np.float64
    assert t["dormant"].dtype == bool
