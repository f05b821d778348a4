"""Member tables honouring the contract (features/member_table.py), for tests and benchmarks:
a hand-made five-member table whose figures are known exactly, one derived from a synthetic
shop's tag frame, and a large random one."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd

from features import member_table
from features.rules import evaluate_tags, load_rules

AS_OF = date(2025, 12, 31)
LEVELS = ("bronze", "silver", "gold", "platinum")
CHANNELS = ("email", "sms", "push")


def handmade_members() -> pd.DataFrame:
    """Five members. Spend 100+300+0+50+550 = 1000 over 1+3+0+1+5 = 10 orders; repurchasers
    M2 and M5 of the four buyers; active in 30 days: M2 and M5; retained after 7 days: M2
    (M1 and M4 not, M3 never ordered, M5 too new: null)."""
    d = pd.Timestamp
    rows = [
        (
            "M1",
            ["dormant"],
            "bronze",
            10.0,
            "low",
            "at_risk",
            1,
            1,
            100.0,
            0.8,
            20.0,
            "email",
            d("2025-01-10"),
            d("2025-01-10"),
            False,
            False,
            False,
            False,
        ),  # fmt: skip
        (
            "M2",
            ["high_frequency", "vip"],
            "gold",
            300.0,
            "high",
            "active",
            3,
            3,
            300.0,
            0.1,
            400.0,
            "sms",
            d("2025-06-01"),
            d("2025-12-20"),
            True,
            True,
            True,
            True,
        ),  # fmt: skip
        (
            "M3",
            [],
            "bronze",
            0.0,
            "low",
            "new",
            0,
            0,
            0.0,
            0.5,
            5.0,
            "email",
            pd.NaT,
            pd.NaT,
            False,
            None,
            None,
            None,
        ),  # fmt: skip
        (
            "M4",
            ["dormant", "price_sensitive"],
            "silver",
            50.0,
            "medium",
            "at_risk",
            1,
            1,
            50.0,
            0.7,
            30.0,
            None,
            d("2025-03-01"),
            d("2025-03-01"),
            False,
            False,
            False,
            False,
        ),  # fmt: skip
        (
            "M5",
            ["vip"],
            "platinum",
            550.0,
            "high",
            "active",
            5,
            5,
            550.0,
            0.05,
            800.0,
            "push",
            d("2025-12-28"),
            d("2025-12-30"),
            True,
            None,
            None,
            None,
        ),  # fmt: skip
    ]
    cols = ["member_id", "tags", "level", "growth_value", "value_tier", "lifecycle", "frequency",
            "orders", "spend", "churn_risk", "clv_12m", "preferred_channel", "first_order_date",
            "last_order_date", "active_30d", "retained_7d", "retained_30d", "retained_90d"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=cols)
    frame["monetary"] = frame["spend"]
    frame["avg_order_value"] = (frame["spend"] / frame["orders"].replace(0, np.nan)).fillna(0.0)
    last = frame["last_order_date"]
    frame["recency_days"] = (pd.Timestamp(AS_OF) - last).dt.days.astype(float)
    frame["tenure_days"] = (pd.Timestamp(AS_OF) - frame["first_order_date"]).dt.days.astype(float)  # fmt: skip
    return _complete(frame)


def members_from_tags(tags: pd.DataFrame, as_of: date = AS_OF, seed: int = 0) -> pd.DataFrame:
    """A member table from a tag frame (features/tags.py): its features carried along, and the
    columns a run's models would add filled from them deterministically."""
    rng = np.random.default_rng(seed)
    t = tags.drop(columns=["event_timestamp"], errors="ignore").copy()
    t["tags"] = t["tags"].map(lambda s: [x for x in str(s or "").split(",") if x])
    ev = evaluate_tags(t, load_rules())  # reasons as a run writes them
    t["tag_reasons"] = [
        json.dumps({tag: str(ev[f"{tag}_reason"].iloc[i]) if f"{tag}_reason" in ev and
                    ev[f"{tag}_reason"].iloc[i] else f"{tag}: holds" for tag in held})
        for i, held in enumerate(t["tags"])
    ]  # fmt: skip
    t["lifecycle"] = t["lifecycle_stage"]
    n = len(t)
    freq = t["frequency"].fillna(0)
    t["orders"] = freq.astype(int)
    t["spend"] = t["monetary"].fillna(0.0)
    t["growth_value"] = (t["spend"] * 1.0 + freq * 10).round(1)
    t["level"] = pd.cut(t["growth_value"], [-np.inf, 200, 800, 2000, np.inf], labels=LEVELS).astype(str)  # fmt: skip
    t["churn_risk"] = np.clip(t["recency_days"].fillna(400) / 400, 0, 1)
    t["clv_12m"] = (t["spend"] * (1 - t["churn_risk"]) * 0.5).round(2)
    last = pd.Timestamp(as_of) - pd.to_timedelta(t["recency_days"], unit="D")
    first = pd.Timestamp(as_of) - pd.to_timedelta(t["first_purchase_days"], unit="D")
    t["last_order_date"], t["first_order_date"] = last, first
    t["active_30d"] = t["recency_days"].fillna(1e9) <= 30
    for days in (7, 30, 90):
        old = t["first_purchase_days"] >= days
        again = (freq >= 2) & (rng.random(n) < 0.5 + days / 360)
        t[f"retained_{days}d"] = pd.Series(np.where(old, again, None), index=t.index, dtype="object")  # fmt: skip
    return _complete(t, as_of)


def random_members(n: int, seed: int = 0, as_of: date = AS_OF) -> pd.DataFrame:
    """``n`` random members (benchmarks)."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(2.0, n)
    spend = np.round(orders * rng.gamma(2.0, 40.0, n), 2)
    recency = np.where(orders > 0, rng.integers(0, 720, n), np.nan)
    tenure = np.where(orders > 0, recency + rng.integers(0, 720, n), np.nan)
    tag_pool = np.array(["dormant", "vip", "high_frequency", "price_sensitive", "warn_gap_exceeded"])  # fmt: skip
    picks = rng.random((n, len(tag_pool))) < np.array([0.3, 0.05, 0.1, 0.2, 0.15])
    frame = pd.DataFrame({
        "member_id": [f"M{i:07d}" for i in range(n)],
        "tags": [list(tag_pool[row]) for row in picks],
        "level": np.array(LEVELS)[np.minimum(orders // 2, 3)],
        "growth_value": spend + orders * 10,
        "value_tier": np.array(["low", "medium", "high"])[np.digitize(spend, [100, 400])],
        "lifecycle": np.where(orders == 0, "new", np.where(recency > 180, "at_risk", "active")),
        "orders": orders, "frequency": orders.astype(float), "spend": spend, "monetary": spend,
        "avg_order_value": np.where(orders > 0, spend / np.maximum(orders, 1), 0.0),
        "recency_days": recency, "tenure_days": tenure,
        "churn_risk": rng.random(n), "clv_12m": np.round(rng.gamma(2.0, 50.0, n), 2),
        "preferred_channel": np.array(CHANNELS)[rng.integers(0, 3, n)],
        "active_30d": recency <= 30,
    })  # fmt: skip
    day = pd.Timestamp(as_of)
    frame["last_order_date"] = day - pd.to_timedelta(frame["recency_days"], unit="D")
    frame["first_order_date"] = day - pd.to_timedelta(frame["tenure_days"], unit="D")
    for days in (7, 30, 90):
        known = tenure >= days
        frame[f"retained_{days}d"] = pd.array(np.where(known, orders >= 2, False), dtype="boolean")  # fmt: skip
        frame.loc[~known, f"retained_{days}d"] = pd.NA
    return _complete(frame, as_of)


def _complete(frame: pd.DataFrame, as_of: date = AS_OF) -> pd.DataFrame:
    """Every contract column present, with the contract's types."""
    f = frame
    f["as_of"] = as_of.isoformat()
    f["tag_version"] = "test"
    if "tag_reasons" not in f:
        f["tag_reasons"] = [json.dumps({t: f"{t}: holds in the fixture" for t in tags}) for tags in f["tags"]]  # fmt: skip
    defaults = {"rfm_segment": "loyal", "r_score": 3, "f_score": 3, "m_score": 3,
                "cluster": "steady", "abuse_risk": 0.1, "churn_driver": None,
                "recall_action": None, "coupon_id": None,
                "expected_incremental_margin": 0.0}  # fmt: skip
    for col, v in defaults.items():
        if col not in f:
            f[col] = v
    f["joined_date"] = f["first_order_date"].fillna(pd.Timestamp(as_of) - timedelta(days=30))
    for col in ("first_order_date", "last_order_date", "joined_date"):
        f[col] = pd.to_datetime(f[col]).dt.date
    for col in ("retained_7d", "retained_30d", "retained_90d", "active_30d"):
        f[col] = f[col].astype("boolean")
    for col in ("r_score", "f_score", "m_score", "orders"):
        f[col] = f[col].fillna(0).astype("int64")
    assert not member_table.missing_columns(f)
    return f
