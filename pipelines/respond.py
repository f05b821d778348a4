"""The synthetic shop answers a campaign: ``memberwise generate --out SHOP --respond-to PLAN``.

:func:`respond` reads a plan's send list and the shop's planted truth and appends to the
shop what the planted members do in each member's outcome window (``window_days`` from
the send time): the orders they place (``order_lines``, a coupon's discount on the order
when a treated member buys), the offers (``coupon_offers``, holdout members with a null
coupon, so the next run's coupon model learns from the campaign) and the messages sent
(``messages``). The planted probabilities are written to
``truth/campaign_<NAME>.parquet``: per member ``p0`` (chance of an order in the window
without the campaign: ``1 - exp(-rate * days / 30)`` while not churned) and ``p1`` (with
the member's intended action: ``p0`` plus the coupon's planted ``uplift_purchase_prob``,
clipped to 0..1; a message alone changes nothing), so a report's measured lift can be
checked against known truth.

:func:`planted_targets` gives the member frame a plan needs from the truth (per-offer
planted margins as ``margin__<coupon>``): the stand-in, in tests and benchmarks, for the
scores a run would have written.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

NONE = "none"  # the models.campaign vocabulary (pipelines does not import models here)
MESSAGE = "message"


def planted_targets(shop: Path, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """One row per member of the shop's truth: member_id, timezone, preferred_channel,
    lifecycle (the planted segment), ``send_hour`` (the planted peak hour) and
    ``margin__<coupon>`` (planted expected incremental margin, plus Gaussian noise of sd
    ``noise`` currency, to stand for an imperfect model)."""
    truth = pd.read_parquet(Path(shop) / "truth" / "members.parquet")
    fx = pd.read_parquet(Path(shop) / "truth" / "coupon_effects.parquet")
    wide = fx.pivot(index="member_id", columns="coupon_id", values="expected_incremental_margin")
    if noise > 0:
        rng = np.random.default_rng(seed)
        wide = wide + rng.normal(0.0, noise, wide.shape)
    wide.columns = [f"margin__{c}" for c in wide.columns]
    out = truth[["member_id", "timezone", "preferred_channel", "segment"]].rename(
        columns={"segment": "lifecycle"}
    )
    out["send_hour"] = truth["peak_hour_local"].to_numpy()
    return out.merge(wide.reset_index(), on="member_id", how="left")


def _append(path: Path, rows: pd.DataFrame) -> None:
    if path.exists():
        old = pd.read_parquet(path)
        rows = rows.reindex(columns=old.columns)
        for c in old.columns:  # keep the table's own types (an all-null column is object)
            if str(old[c].dtype).startswith("datetime64"):
                rows[c] = pd.to_datetime(rows[c]).astype(old[c].dtype)
        rows = pd.concat([old, rows], ignore_index=True)
    rows.to_parquet(path, index=False)


def respond(shop: Path, sends: pd.DataFrame, seed: int = 0) -> dict[str, int]:
    """Simulate the planted members' answers to ``sends`` (a plan's send list) and append
    them to the shop at ``shop``. Deterministic for a given seed and send list. Returns
    rows appended per table."""
    shop = Path(shop)
    if sends.empty:
        raise ValueError("the send list is empty")
    name = str(sends["campaign"].iloc[0])
    truth = pd.read_parquet(shop / "truth" / "members.parquet").set_index("member_id")
    missing = sorted(set(sends["member_id"]) - set(truth.index))
    if missing:
        raise ValueError(
            f"{len(missing)} member(s) of the plan are not in this shop (e.g. {missing[0]}): "
            "answer a plan with the shop it was planned on"
        )
    fx = pd.read_parquet(shop / "truth" / "coupon_effects.parquet")
    uplift = fx.set_index(["member_id", "coupon_id"])["uplift_purchase_prob"]
    products = pd.read_parquet(shop / "products.parquet")
    coupons = pd.read_parquet(shop / "coupons.parquet").set_index("coupon_id")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 7])  # not the plan's stream

    s = sends.sort_values("member_id", kind="stable").reset_index(drop=True)
    n = len(s)
    t0 = pd.to_datetime(s["send_at_utc"]).to_numpy("datetime64[us]")
    days = s["window_days"].to_numpy(float)
    m = truth.loc[s["member_id"]]
    churn = m["churn_ts"].to_numpy("datetime64[us]")
    active = np.isnat(churn) | (churn > t0)
    p0 = np.where(active, 1.0 - np.exp(-m["purchase_rate"].to_numpy(float) * days / 30.0), 0.0)

    def lifted(action: pd.Series) -> np.ndarray:
        keys = pd.MultiIndex.from_arrays([s["member_id"], action.astype(str)])
        up = uplift.reindex(keys).fillna(0.0).to_numpy(float)
        return np.clip(p0 + np.where(active, up, 0.0), 0.0, 1.0)

    p1 = lifted(s["intended"])
    p_got = lifted(s["action"])
    converted = rng.random(n) < p_got
    when = t0 + (rng.random(n) * days * 86400e6).astype("timedelta64[us]")
    product = rng.integers(0, len(products), size=n)

    buy = np.flatnonzero(converted)
    price = products["price"].to_numpy(float)[product[buy]]
    coupon = s["coupon_id"].to_numpy(object)[buy]
    discount = np.zeros(len(buy))
    for i, c in enumerate(coupon):
        if c is None or c not in coupons.index:
            continue
        kind, value = coupons.at[c, "kind"], float(coupons.at[c, "value"])
        discount[i] = price[i] * value / 100 if kind == "percent_off" else min(value, price[i])
    lines = pd.DataFrame({
        "order_id": [f"{name}-O{i:07d}" for i in buy],
        "member_id": s["member_id"].to_numpy(object)[buy],
        "ts": when[buy], "product_id": products["product_id"].to_numpy(object)[product[buy]],
        "quantity": 1.0, "unit_price": price, "discount": np.round(discount, 2),
        "coupon_id": [c if d > 0 else None for c, d in zip(coupon, discount, strict=True)],
    })  # fmt: skip
    _append(shop / "order_lines.parquet", lines)
    counts = {"order_lines": len(lines)}

    has_coupons = s["coupon_id"].notna().any()
    if has_coupons:
        offered = s.loc[s["coupon_id"].notna() | s["arm"].eq("holdout")]
        redeemed = pd.Series(when, index=s.index).where(converted & s["coupon_id"].notna())
        offers = pd.DataFrame({
            "member_id": offered["member_id"], "campaign_id": name,
            "offered_ts": t0[offered.index], "coupon_id": offered["coupon_id"],
            "redeemed_ts": redeemed.loc[offered.index].to_numpy("datetime64[us]"),
        })  # fmt: skip
        _append(shop / "coupon_offers.parquet", offers)
        counts["coupon_offers"] = len(offers)
    sent = s.loc[s["channel"].notna()]
    msgs = pd.DataFrame({
        "member_id": sent["member_id"], "channel": sent["channel"],
        "sent_ts": t0[sent.index], "opened_ts": pd.NaT, "clicked_ts": pd.NaT,
        "campaign_id": name,
    })  # fmt: skip
    _append(shop / "messages.parquet", msgs)
    counts["messages"] = len(msgs)

    pd.DataFrame({
        "member_id": s["member_id"], "arm": s["arm"], "action": s["action"],
        "intended": s["intended"], "p0": p0, "p1": p1, "converted": converted,
    }).to_parquet(shop / "truth" / f"campaign_{name}.parquet", index=False)  # fmt: skip
    return counts
