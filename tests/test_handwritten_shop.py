"""A shop written by hand against docs/data-format.md alone: order_lines.csv with only the
required columns and a history shorter than the churn training cutoffs reach back. The run
must complete and score every member."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.settings import MemberwiseSettings
from pipelines.run import run_pipeline
from pipelines.score import score_members

pytestmark = pytest.mark.slow
FAST = {"hybrid": {"iterations": 3, "factors": 8}}  # products settings of a quick run


def write_order_lines(folder, members: int = 80, seed: int = 11) -> pd.DataFrame:
    """~5 months of orders: each member buys every ~2-6 weeks from 30 products, some stop
    half-way; one return and one line without product detail."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2025-08-01")
    for m in range(members):
        t = start + pd.Timedelta(days=float(rng.uniform(0, 30)))
        stop = start + pd.Timedelta(days=float(rng.uniform(60, 160)))
        k = 0
        while t < min(stop, pd.Timestamp("2025-12-31")):
            for p in rng.choice(30, size=int(rng.integers(1, 4)), replace=False):
                rows.append((f"o{m}-{k}", f"m{m:03d}", t.isoformat(), f"p{p:02d}",
                             float(rng.integers(1, 3)), float(5 + p)))  # fmt: skip
            k += 1
            t += pd.Timedelta(days=float(rng.uniform(14, 42)), hours=float(rng.uniform(0, 12)))
    df = pd.DataFrame(
        rows, columns=["order_id", "member_id", "ts", "product_id", "quantity", "unit_price"]
    )
    ret = df.iloc[0].copy()
    ret["quantity"] = -1.0
    nulls = df.iloc[1].copy()
    nulls["order_id"], nulls["product_id"] = "o-spend-only", None
    df = pd.concat([df, ret.to_frame().T, nulls.to_frame().T], ignore_index=True)
    df.to_csv(folder / "order_lines.csv", index=False)
    return df


def test_order_lines_only_with_a_short_history(tmp_path):
    data, home = tmp_path / "shop", tmp_path / "home"
    data.mkdir()
    lines = write_order_lines(data)
    settings = MemberwiseSettings(home=home, products=FAST)
    report = run_pipeline(data, date(2025, 12, 31), settings, progress=lambda _: None)
    assert set(report["models"]) == {"products", "churn", "coupon", "send_time", "similar"}
    assert report["models"]["coupon"]["champion_role"] == "baseline"  # no offers: none
    scores = score_members(settings, progress=lambda _: None)
    assert set(scores["member_id"]) == set(lines["member_id"])
    assert scores["member_id"].is_unique
    assert scores["churn_risk"].between(0, 1).all()
    assert scores["coupon_id"].isna().all() | scores["coupon_id"].eq("").all()


def write_optional_tables(folder, lines: pd.DataFrame, seed: int = 12) -> None:
    """Every optional table of the contract, small and written by hand (Parquet and CSV
    mixed): members with time zones, a product catalogue, browsing events, messages with
    opens, a coupon catalogue and two randomized campaigns with control groups."""
    rng = np.random.default_rng(seed)
    ids = sorted(lines["member_id"].unique())
    zones = ["Europe/London", "America/New_York", "Asia/Tokyo", "Not/AZone"]  # one unknown
    pd.DataFrame({
        "member_id": ids,
        "signup_ts": pd.Timestamp("2025-07-01"),
        "timezone": [zones[i % len(zones)] for i in range(len(ids))],
        "country": "GB", "tier": ["gold" if i % 5 == 0 else "basic" for i in range(len(ids))],
    }).to_parquet(folder / "members.parquet", index=False)  # fmt: skip
    products = sorted(lines["product_id"].dropna().unique())
    pd.DataFrame({
        "product_id": products,
        "category": [f"c{i % 4}" for i in range(len(products))],
        "price": [5.0 + i for i in range(len(products))],
        "margin_rate": 0.3, "in_stock": [i != 3 for i in range(len(products))],
    }).to_csv(folder / "products.csv", index=False)  # fmt: skip
    ts = pd.Timestamp("2025-08-01") + pd.to_timedelta(rng.uniform(0, 150, 600), unit="D")
    pd.DataFrame({
        "member_id": rng.choice(ids, 600), "ts": ts,
        "event_type": rng.choice(["view", "cart", "login"], 600),
        "product_id": rng.choice(products, 600),
    }).to_parquet(folder / "events.parquet", index=False)  # fmt: skip
    sent = pd.Timestamp("2025-08-01") + pd.to_timedelta(rng.uniform(0, 150, 500), unit="D")
    opened = sent + pd.to_timedelta(rng.uniform(0.1, 30, 500), unit="h")
    pd.DataFrame({
        "member_id": rng.choice(ids, 500), "channel": rng.choice(["email", "sms", "push"], 500),
        "sent_ts": sent, "opened_ts": opened.where(rng.random(500) < 0.4),
        "clicked_ts": pd.NaT, "campaign_id": None,
    }).to_parquet(folder / "messages.parquet", index=False)  # fmt: skip
    pd.DataFrame({
        "coupon_id": ["TEN", "FIVE"], "kind": ["percent_off", "amount_off"],
        "value": [10.0, 5.0], "min_spend": [None, 20.0], "category": [None, None],
    }).to_parquet(folder / "coupons.parquet", index=False)  # fmt: skip
    offers = []
    for camp, coupon, day in (("C1", "TEN", "2025-09-01"), ("C2", "FIVE", "2025-11-01")):
        for m in ids:
            treated = rng.random() < 0.6
            redeemed = (
                pd.Timestamp(day) + pd.Timedelta(days=3) if treated and rng.random() < 0.2 else None
            )
            offers.append((m, camp, pd.Timestamp(day), coupon if treated else None, redeemed))
    pd.DataFrame(
        offers, columns=["member_id", "campaign_id", "offered_ts", "coupon_id", "redeemed_ts"]
    ).to_parquet(folder / "coupon_offers.parquet", index=False)


def test_every_optional_table_written_by_hand(tmp_path):
    data, home = tmp_path / "shop", tmp_path / "home"
    data.mkdir()
    lines = write_order_lines(data, members=60, seed=5)
    write_optional_tables(data, lines)
    settings = MemberwiseSettings(home=home, products=FAST)
    report = run_pipeline(data, date(2025, 12, 31), settings, progress=lambda _: None)
    for table in ("members", "products", "events", "messages", "coupons", "coupon_offers"):
        assert report["ingest"][table]["kept"] > 0, table
    scores = score_members(settings, progress=lambda _: None)
    assert set(scores["member_id"]) == set(lines["member_id"])
    assert scores["send_channel"].isin(["email", "sms", "push"]).all()
