"""Why an at-risk member is likely to leave, and how to win them back (the programme's
"Early warning and recall").

:func:`churn_drivers` takes the tag frame with a ``churn_risk`` column (one row per member)
and the order behaviour of ``features.behaviour.order_behaviour`` (returns, category drift),
and for every member whose churn risk is at or above ``InsightSettings.at_risk_threshold``
names the likely reason, with its evidence quoting the member's values and the thresholds:

- ``price``: price-sensitive, buys on discount or redeems offers (discounted share of
  spend, or coupon redemption rate over at least ``driver_min_offers`` offers, at least
  ``driver_price_share``);
- ``unhappy``: returns and cancellations (returned or cancelled orders at least
  ``driver_unhappy_share`` of purchase orders);
- ``need_changed``: category drift (the later half of the member's orders shares at most
  ``driver_drift_overlap`` of its category mix with the earlier half);
- ``forgotten``: a long gap (past ``driver_gap_ratio`` x the member's usual cycle) and no
  attention to messages (open rate at most ``driver_low_open_rate``, or none opened in the
  recent window, or no messages at all);
- ``unclear``: none of these reaches its threshold (the evidence says how close each came).

When several hold, the strongest (value / threshold, for drift (1 - overlap) / (1 -
threshold)) wins; ties go in the order above. The recall action follows the value tier:
``personal_outreach`` (``high_value_tiers``: one-to-one contact and a bespoke offer),
``personalised_coupon`` (``middle_value_tiers``) or ``batch_campaign`` (the rest), and
``recall_detail`` says what to lead with for the reason (price: an exclusive, time-limited
discount; unhappy: service recovery; forgotten: a brand reminder and new arrivals; need
changed: the related categories).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from features.settings import InsightSettings

DRIVERS: tuple[str, ...] = ("price", "unhappy", "need_changed", "forgotten", "unclear")
RECALL_ACTIONS: tuple[str, ...] = ("personal_outreach", "personalised_coupon", "batch_campaign")
DRIVER_COLUMNS: tuple[str, ...] = (
    "churn_driver", "churn_driver_evidence", "recall_action", "recall_detail",
)  # fmt: skip
TAG_COLUMNS: tuple[str, ...] = (
    "member_id", "churn_risk", "value_tier", "discount_share", "coupon_offers",
    "coupon_redemption_rate", "recency_days", "usual_cycle_days", "gap_ratio", "open_rate",
    "messages_recent", "opens_recent",
)  # fmt: skip

_ACTION_TEXT = {
    "personal_outreach": "one-to-one contact and a bespoke offer",
    "personalised_coupon": "a personalised coupon",
    "batch_campaign": "a batch win-back campaign",
}


def _f(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _ratio(value: float, threshold: float) -> float:
    """How far ``value`` is towards ``threshold`` (>= 1: reached); a zero threshold is
    reached by anything above zero."""
    if threshold > 0:
        return value / threshold
    return math.inf if value > 0 else 0.0


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _price(row: dict[str, Any], s: InsightSettings) -> tuple[float, str]:
    share, rate = _f(row.get("discount_share")), _f(row.get("coupon_redemption_rate"))
    offers = _f(row.get("coupon_offers"))
    t = s.driver_price_share
    parts, strength = [], 0.0
    if math.isfinite(share):
        parts.append(f"{_pct(share)} of spend discounted")
        strength = max(strength, _ratio(share, t))
    if math.isfinite(rate) and offers > 0:
        parts.append(f"redeemed {_pct(rate)} of {offers:.0f} coupon offers")
        if offers >= s.driver_min_offers:
            strength = max(strength, _ratio(rate, t))
        else:
            parts[-1] += f" (too few to count: {s.driver_min_offers} needed)"
    said = ", ".join(parts) or "no discount or offer history"
    return strength, f"price: {said} (threshold {_pct(t)})"


def _unhappy(row: dict[str, Any], s: InsightSettings) -> tuple[float, str]:
    returns, orders = _f(row.get("returns")), _f(row.get("purchase_orders"))
    value = _f(row.get("return_rate"))
    t = s.driver_unhappy_share
    if not (math.isfinite(returns) and orders > 0):
        return 0.0, "unhappy: no order history to read returns from"
    share = returns / orders
    strength = _ratio(share, t)
    of_value = f", {_pct(value)} of the value bought" if math.isfinite(value) else ""
    return strength, (
        f"unhappy: {returns:.0f} of {orders:.0f} orders returned or cancelled "
        f"({_pct(share)}{of_value}; threshold {_pct(t)})"
    )


def _need_changed(row: dict[str, Any], s: InsightSettings) -> tuple[float, str]:
    overlap = _f(row.get("category_overlap"))
    t = s.driver_drift_overlap
    if not math.isfinite(overlap):
        return 0.0, "need changed: too few categorised orders to compare earlier and recent ones"
    strength = _ratio(1 - overlap, 1 - t) if t < 1 else 1.0
    before, after = row.get("earlier_category"), row.get("recent_category")
    mix = f"recent orders mostly {after}, earlier ones {before}; " if before and after else ""
    return strength, (
        f"need changed: {mix}{_pct(overlap)} of the category mix in common "
        f"(threshold {_pct(t)} or less)"
    )


def _forgotten(row: dict[str, Any], s: InsightSettings) -> tuple[float, str]:
    gap, cycle = _f(row.get("gap_ratio")), _f(row.get("usual_cycle_days"))
    rec = _f(row.get("recency_days"))
    rate, sent, opened = (_f(row.get(c)) for c in ("open_rate", "messages_recent", "opens_recent"))
    t = s.driver_gap_ratio
    if not math.isfinite(gap):
        return 0.0, "forgotten: no usual purchase cycle yet (fewer than two orders)"
    ignored = (
        not math.isfinite(rate) or rate <= s.driver_low_open_rate or (sent > 0 and not opened > 0)
    )
    if not math.isfinite(rate):
        heard = "no message history"
    else:
        recent = f", {opened:.0f} of {sent:.0f} opened recently" if sent > 0 else ""
        heard = f"open rate {_pct(rate)}{recent} (at most {_pct(s.driver_low_open_rate)} counts)"
    strength = gap / t if ignored else 0.0
    return strength, (
        f"forgotten: last order {rec:.0f} days ago, {gap:.1f}x the usual {cycle:.0f}-day cycle "
        f"(threshold {t:.1f}x); {heard}"
    )


_CHECKS = {"price": _price, "unhappy": _unhappy, "need_changed": _need_changed,
           "forgotten": _forgotten}  # fmt: skip
_LEAD = {
    "price": "lead with an exclusive, time-limited discount",
    "unhappy": "lead with service recovery (apologise, fix, then offer)",
    "need_changed": "lead with the related categories of {recent_category}",
    "forgotten": "lead with a brand reminder and new arrivals",
    "unclear": "lead with a win-back message",
}


def recall_action(value_tier: str | None, s: InsightSettings) -> str:
    """The recall action of a value tier (one of :data:`RECALL_ACTIONS`)."""
    if value_tier in s.high_value_tiers:
        return "personal_outreach"
    if value_tier in s.middle_value_tiers:
        return "personalised_coupon"
    return "batch_campaign"


def explain_driver(row: dict[str, Any], s: InsightSettings) -> tuple[str, str]:
    """The driver of one at-risk member and its evidence sentence (see the module doc)."""
    found = {name: check(row, s) for name, check in _CHECKS.items()}
    holding = [(v[0], -i, n) for i, (n, v) in enumerate(found.items()) if v[0] >= 1.0]
    if not holding:
        said = "; ".join(v[1] for v in found.values())
        return "unclear", f"no reason reaches its threshold: {said}"
    _, _, name = max(holding)
    return name, found[name][1]


def churn_drivers(
    tags: pd.DataFrame, behaviour: pd.DataFrame | None, settings: InsightSettings | None = None
) -> pd.DataFrame:
    """member_id and :data:`DRIVER_COLUMNS` for every row of ``tags`` (in its order); all
    None for members below the at-risk threshold or without a churn risk.

    ``tags``: the tag frame with ``churn_risk`` (the columns of :data:`TAG_COLUMNS`);
    ``behaviour``: ``features.behaviour.order_behaviour`` output (None: the unhappy and need
    changed drivers cannot be read and their evidence says so)."""
    s = settings or InsightSettings()
    missing = [c for c in TAG_COLUMNS if c not in tags]
    if missing:
        raise ValueError(f"churn_drivers needs the tag columns {missing}")
    risk = pd.to_numeric(tags["churn_risk"], errors="coerce").to_numpy(np.float64)
    at_risk = np.isfinite(risk) & (risk >= s.at_risk_threshold)
    out = pd.DataFrame({"member_id": tags["member_id"].to_numpy()})
    for c in DRIVER_COLUMNS:
        out[c] = pd.Series([None] * len(out), dtype=object)
    if not at_risk.any():
        return out
    rows = tags.loc[at_risk, list(TAG_COLUMNS)]
    if behaviour is not None:
        b = behaviour.drop_duplicates("member_id").set_index("member_id")
        b.index = b.index.astype(str)
        rows = rows.assign(_k=rows["member_id"].astype(str)).join(b, on="_k")
    drivers, evidence, actions, details = [], [], [], []
    for row in rows.astype(object).where(rows.notna(), None).to_dict("records"):
        name, said = explain_driver(row, s)
        action = recall_action(row.get("value_tier"), s)
        lead = _LEAD[name].format(recent_category=row.get("recent_category") or "recent orders")
        drivers.append(name)
        evidence.append(f"churn risk {_f(row['churn_risk']):.0%}; {said}")
        actions.append(action)
        details.append(
            f"{_ACTION_TEXT[action]} ({row.get('value_tier') or 'no'} value tier): {lead}"
        )
    idx = np.flatnonzero(at_risk)
    for col, values in zip(DRIVER_COLUMNS, (drivers, evidence, actions, details), strict=True):
        out.loc[idx, col] = pd.Series(values, index=idx, dtype=object)
    return out
