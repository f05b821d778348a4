"""Order-level member features the tag frame does not carry: returns, coupon habits and
category drift, as of a date.

:func:`order_behaviour` reads the shop's typed tables (``order_lines``; ``coupons`` and
``products`` when present; the frames of ``pipelines.ingest.ShopData.tables``) and returns
one row per member with an order line up to the end of ``as_of`` (UTC):

- ``purchase_orders``: orders with a bought line (quantity > 0);
- ``returns``: orders with a returned or cancelled line (quantity < 0);
- ``return_rate``: value returned or cancelled / value bought (0..1, clipped);
- ``coupon_orders`` / ``coupon_order_share``: purchase orders carrying a coupon, and their
  share of purchase orders;
- ``just_above_min_share``: share of the coupon orders whose value before discount is at
  most ``min_spend_margin`` above the coupon's minimum spend (``min_spend_source`` says
  whether the minimum came from the coupons table or, where it has none, the proxy: the
  5th percentile of the value of all orders redeeming that coupon, the smallest basket the
  coupon is seen to need);
- ``order_discount_share``: discount / value before discount over purchase orders;
- ``category_overlap``: how far the later half of the member's purchase orders buys the
  same categories as the earlier half (the intersection of the two spend-share
  histograms, 0 = nothing in common, 1 = the same mix; NaN with fewer than
  ``2 * DRIFT_MIN_ORDERS`` categorised purchase orders), with ``earlier_category`` and
  ``recent_category`` (the top category of each half).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

DRIFT_MIN_ORDERS = 2  # categorised purchase orders in each half for a drift measure
MIN_SPEND_PROXY_QUANTILE = 0.05
BEHAVIOUR_COLUMNS: tuple[str, ...] = (
    "purchase_orders", "returns", "return_rate", "coupon_orders", "coupon_order_share",
    "just_above_min_share", "order_discount_share", "category_overlap", "earlier_category",
    "recent_category",
)  # fmt: skip


def _min_spend(orders: pd.DataFrame, coupons: pd.DataFrame | None) -> tuple[pd.Series, str]:
    """Minimum spend per coupon id: the table's where it has one, else the proxy."""
    redeemed = orders[orders["coupon_id"].notna()]
    proxy = redeemed.groupby("coupon_id")["gross"].quantile(MIN_SPEND_PROXY_QUANTILE)
    if coupons is None or "min_spend" not in coupons or not coupons["min_spend"].notna().any():
        return proxy, "proxy"
    given = coupons.dropna(subset=["min_spend"]).set_index(
        coupons.dropna(subset=["min_spend"])["coupon_id"].astype(str)
    )["min_spend"]
    source = "coupons table" if proxy.index.isin(given.index).all() else "mixed"
    both = given.reindex(proxy.index.union(given.index)).fillna(proxy)
    return both.astype(np.float64), source


def order_behaviour(
    tables: Mapping[str, pd.DataFrame], as_of: date, min_spend_margin: float = 0.1
) -> pd.DataFrame:
    """One row per member with an order line on or before ``as_of``: member_id and
    :data:`BEHAVIOUR_COLUMNS` (see the module docstring). ``attrs["min_spend_source"]``
    is "coupons table", "proxy" or "mixed"."""
    end = datetime.combine(as_of, datetime.min.time()) + timedelta(days=1)
    ol = tables["order_lines"]
    ol = ol[ol["ts"] < end]
    qty = ol["quantity"].to_numpy(np.float64)
    price = ol["unit_price"].to_numpy(np.float64)
    disc = ol["discount"].fillna(0.0).to_numpy(np.float64) if "discount" in ol else 0.0
    coupon = ol["coupon_id"] if "coupon_id" in ol else pd.Series(pd.NA, index=ol.index)
    lines = pd.DataFrame({
        "member_id": ol["member_id"].astype(str).to_numpy(),
        "order_id": ol["order_id"].astype(str).to_numpy(),
        "ts": ol["ts"].to_numpy(),
        "product_id": ol["product_id"].to_numpy() if "product_id" in ol else None,
        "bought": np.where(qty > 0, qty * price, 0.0),
        "returned": np.where(qty < 0, -qty * price, 0.0),
        "discount": np.where(qty > 0, disc, 0.0),
        "is_buy": qty > 0,
        "is_return": qty < 0,
        "coupon_id": coupon.astype("string").to_numpy(),
    })  # fmt: skip
    orders = lines.groupby(["member_id", "order_id"], as_index=False, sort=False).agg(
        ts=("ts", "min"), gross=("bought", "sum"), returned=("returned", "sum"),
        discount=("discount", "sum"), is_buy=("is_buy", "any"), is_return=("is_return", "any"),
        coupon_id=("coupon_id", "first"),
    )  # fmt: skip
    buys = orders[orders["is_buy"]].copy()
    min_spend, source = _min_spend(buys, tables.get("coupons"))
    floor = buys["coupon_id"].map(min_spend).astype(np.float64)
    buys["just_above"] = (buys["gross"] >= floor) & (
        buys["gross"] <= floor * (1 + min_spend_margin)
    )
    buys["has_coupon"] = buys["coupon_id"].notna()

    per = orders.groupby("member_id", sort=True).agg(
        gross=("gross", "sum"), returned=("returned", "sum"), returns=("is_return", "sum"),
    )  # fmt: skip
    b = buys.groupby("member_id").agg(
        purchase_orders=("order_id", "size"), coupon_orders=("has_coupon", "sum"),
        just_above=("just_above", "sum"), discount=("discount", "sum"), gross=("gross", "sum"),
    )  # fmt: skip
    out = pd.DataFrame(index=per.index)
    out["purchase_orders"] = b["purchase_orders"].reindex(out.index).fillna(0).astype(np.int64)
    out["returns"] = per["returns"].astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["return_rate"] = np.clip(per["returned"] / per["gross"].where(per["gross"] > 0), 0, 1)
        co = b["coupon_orders"].reindex(out.index).fillna(0)
        out["coupon_orders"] = co.astype(np.int64)
        out["coupon_order_share"] = co / out["purchase_orders"].where(out["purchase_orders"] > 0)
        out["just_above_min_share"] = b["just_above"].reindex(out.index) / co.where(co > 0)
        out["order_discount_share"] = (b["discount"] / b["gross"].where(b["gross"] > 0)).reindex(
            out.index
        )
    out["return_rate"] = out["return_rate"].fillna(0.0)
    out["coupon_order_share"] = out["coupon_order_share"].fillna(0.0)
    out["just_above_min_share"] = out["just_above_min_share"].fillna(0.0)
    out["order_discount_share"] = out["order_discount_share"].fillna(0.0)
    drift = _category_drift(lines[lines["is_buy"]], tables.get("products"))
    out = out.join(drift, how="left")
    out = out.reset_index(names="member_id")
    out.attrs["min_spend_source"] = source
    return out[["member_id", *BEHAVIOUR_COLUMNS]]


def _category_drift(lines: pd.DataFrame, products: pd.DataFrame | None) -> pd.DataFrame:
    """category_overlap, earlier_category and recent_category per member (index)."""
    cols = ["category_overlap", "earlier_category", "recent_category"]
    if products is None or "category" not in products or lines["product_id"].isna().all():
        return pd.DataFrame(columns=cols, dtype=object)
    cat = products.drop_duplicates("product_id").set_index(
        products.drop_duplicates("product_id")["product_id"].astype(str)
    )["category"]
    ln = lines.assign(category=lines["product_id"].astype("string").map(cat))
    ln = ln[ln["category"].notna()]
    if ln.empty:
        return pd.DataFrame(columns=cols, dtype=object)
    # each categorised purchase order's position in the member's history -> half
    o = ln.groupby(["member_id", "order_id"], as_index=False)["ts"].min()
    o = o.sort_values(["member_id", "ts", "order_id"], kind="stable")
    o["rank"] = o.groupby("member_id").cumcount()
    o["n"] = o.groupby("member_id")["order_id"].transform("size")
    o = o[o["n"] >= 2 * DRIFT_MIN_ORDERS]
    if o.empty:
        return pd.DataFrame(columns=cols, dtype=object)
    o["half"] = np.where(o["rank"] >= o["n"] // 2, "recent", "earlier")
    ln = ln.merge(o[["member_id", "order_id", "half"]], on=["member_id", "order_id"])
    spend = ln.groupby(["member_id", "half", "category"], as_index=False)["bought"].sum()
    spend["share"] = spend["bought"] / spend.groupby(["member_id", "half"])["bought"].transform(
        "sum"
    )
    wide = spend.pivot_table(
        index=["member_id", "category"], columns="half", values="share", fill_value=0.0
    )
    for h in ("earlier", "recent"):
        if h not in wide:
            wide[h] = 0.0
    overlap = np.minimum(wide["earlier"], wide["recent"]).groupby(level="member_id").sum()
    top = spend.sort_values(["member_id", "half", "share", "category"],
                            ascending=[True, True, False, True])  # fmt: skip
    top = (
        top.groupby(["member_id", "half"])
        .head(1)
        .pivot(index="member_id", columns="half", values="category")
    )
    res = pd.DataFrame({"category_overlap": overlap.clip(0, 1)})
    res["earlier_category"] = top.get("earlier")
    res["recent_category"] = top.get("recent")
    return res
