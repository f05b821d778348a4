"""Coupon-abuse risk: abusers planted in hand-made and synthetic shops rank at the top and
cross the threshold; restraint never looks anomalous; too few coupon users score 0."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.abuse import ABUSE_FEATURES, AbuseConfig, abuse_risk


def behaviour(normal: int = 200, abusers: int = 4, seed: int = 0) -> pd.DataFrame:
    """Order behaviour of ordinary members (a few coupons, rare returns) and abusers (every
    order with a coupon, just above its minimum spend, most of it returned)."""
    rng = np.random.default_rng(seed)
    orders = rng.integers(3, 30, normal)
    coupons = rng.binomial(orders, 0.08)
    rows = pd.DataFrame({
        "member_id": [f"M{i:03d}" for i in range(normal)],
        "purchase_orders": orders,
        "coupon_orders": coupons,
        "coupon_order_share": coupons / orders,
        "return_rate": rng.beta(0.3, 8, normal),
        "just_above_min_share": np.where(coupons > 0, rng.binomial(coupons, 0.15) /
                                         np.maximum(coupons, 1), 0.0),
        "order_discount_share": rng.beta(0.5, 20, normal),
    })  # fmt: skip
    bad = pd.DataFrame({
        "member_id": [f"ABUSER{i}" for i in range(abusers)],
        "purchase_orders": 12, "coupon_orders": 12, "coupon_order_share": 1.0,
        "return_rate": rng.uniform(0.6, 0.8, abusers), "just_above_min_share": 1.0,
        "order_discount_share": rng.uniform(0.15, 0.2, abusers),
    })  # fmt: skip
    return pd.concat([rows, bad], ignore_index=True)


def test_planted_abusers_rank_at_the_top_and_cross_the_threshold():
    b = behaviour()
    r = abuse_risk(b, AbuseConfig(seed=0))
    assert r["member_id"].tolist() == b["member_id"].tolist()
    assert r["abuse_risk"].between(0, 1).all()
    top = r.nlargest(4, "abuse_risk")["member_id"]
    assert set(top) == {f"ABUSER{i}" for i in range(4)}
    assert r.loc[r["coupon_abuse_risk"], "member_id"].str.startswith("ABUSER").all()
    assert r["coupon_abuse_risk"].sum() == 4
    # members without a coupon order cannot abuse coupons
    assert (r.loc[b["coupon_orders"].eq(0), "abuse_risk"] == 0).all()


def test_restraint_is_not_anomalous():
    """A member with no returns, no discount and one coupon in 40 orders is below every
    median and so scores no higher than the median member."""
    b = behaviour(abusers=0)
    quiet = {"member_id": "QUIET", "purchase_orders": 40, "coupon_orders": 1,
             "coupon_order_share": 1 / 40, "return_rate": 0.0, "just_above_min_share": 0.0,
             "order_discount_share": 0.0}  # fmt: skip
    r = abuse_risk(pd.concat([b, pd.DataFrame([quiet])], ignore_index=True))
    users = r[b["coupon_orders"].reindex(r.index, fill_value=1).gt(0)]
    assert r["abuse_risk"].iloc[-1] <= users["abuse_risk"].median() + 1e-9
    assert not r["coupon_abuse_risk"].any()


def test_one_coupon_order_is_not_yet_a_habit():
    """Shares resting on one order are shrunk: a member whose single order used a coupon
    just above the minimum scores below an abuser with twelve such orders."""
    b = behaviour(abusers=1)
    one = {"member_id": "ONCE", "purchase_orders": 1, "coupon_orders": 1,
           "coupon_order_share": 1.0, "return_rate": 0.7, "just_above_min_share": 1.0,
           "order_discount_share": 0.18}  # fmt: skip
    r = abuse_risk(pd.concat([b, pd.DataFrame([one])], ignore_index=True)).set_index("member_id")
    assert r.loc["ONCE", "abuse_risk"] < r.loc["ABUSER0", "abuse_risk"]


def test_too_few_coupon_users_score_zero_and_missing_columns_are_named():
    b = behaviour(normal=5, abusers=0).assign(coupon_orders=0)
    assert abuse_risk(b)["abuse_risk"].eq(0).all()
    with pytest.raises(ValueError, match="return_rate"):
        abuse_risk(b.drop(columns=["return_rate"]))
    assert set(ABUSE_FEATURES) <= set(b)


@pytest.mark.slow
def test_abusers_planted_in_a_synthetic_shop_rank_at_the_top(tmp_path):
    """Five members added to a synthetic shop, each with ten coupon-only orders just above
    the coupon's minimum spend (30, set on AMT5) and seven of them returned: they are the
    five highest abuse risks, at or above the default threshold, and nobody else is."""
    from features.behaviour import order_behaviour
    from pipelines.ingest import load_shop
    from pipelines.synthetic import generate

    as_of = date(2025, 12, 31)
    generate(tmp_path, members=400, seed=3)
    shop = load_shop(tmp_path, as_of)
    tables = dict(shop.tables)
    ol = tables["order_lines"]
    products = tables["products"]["product_id"].tolist()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        for k in range(10):
            ts = pd.Timestamp("2025-03-01") + pd.Timedelta(days=20 * k + i)
            product, price = products[(10 * i + k) % len(products)], 30.5 + rng.random()
            line = {"member_id": f"ABUSER{i}", "product_id": product, "unit_price": price}
            rows.append({**line, "order_id": f"A{i}-{k}", "ts": ts, "quantity": 1.0,
                         "discount": 5.0, "coupon_id": "AMT5"})  # fmt: skip
            if k < 7:
                rows.append({**line, "order_id": f"R{i}-{k}", "ts": ts + pd.Timedelta(days=3),
                             "quantity": -1.0, "discount": 0.0, "coupon_id": None})  # fmt: skip
    added = pd.DataFrame(rows).astype({c: ol[c].dtype for c in ol.columns})
    tables["order_lines"] = pd.concat([ol, added[ol.columns]], ignore_index=True)
    coupons = tables["coupons"].copy()
    coupons["min_spend"] = np.where(coupons["coupon_id"].eq("AMT5"), 30.0, np.nan)
    tables["coupons"] = coupons
    b = order_behaviour(tables, as_of)
    assert b.attrs["min_spend_source"] == "mixed"
    r = abuse_risk(b, AbuseConfig())
    top = r.nlargest(5, "abuse_risk")["member_id"]
    assert set(top) == {f"ABUSER{i}" for i in range(5)}
    assert set(r.loc[r["coupon_abuse_risk"], "member_id"]) == set(top)
