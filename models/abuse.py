"""Coupon-abuse risk: an isolation forest over members' coupon habits.

:func:`abuse_risk` scores every member of a frame of order-behaviour features
(``features.behaviour.order_behaviour``: one row per member) on :data:`ABUSE_FEATURES`:

- ``coupon_order_share``: share of purchase orders placed with a coupon;
- ``return_rate``: share of bought value returned or cancelled;
- ``just_above_min_share``: share of coupon orders just above the coupon's minimum spend;
- ``order_discount_share``: discount / value before discount.

Abuse is excess, never restraint, so each feature is clipped below at its median before
the forest sees it: a member who uses fewer coupons than most cannot look anomalous. The
score is the isolation forest's anomaly score of Liu, Ting & Zhou (2008), ``s = 2 **
(-E[h(x)] / c(n))`` in (0, 1] (``-score_samples``): near 1 a member isolated in very few
splits, about 0.5 or below nothing unusual. It is absolute, not ranked within the shop, so
a shop without abusers does not get one flagged. Members who never placed a coupon order
cannot abuse coupons and score 0. ``coupon_abuse_risk`` is ``abuse_risk >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ABUSE_FEATURES: tuple[str, ...] = (
    "coupon_order_share", "return_rate", "just_above_min_share", "order_discount_share",
)  # fmt: skip

# the count each share is a share of (how much evidence it rests on)
_DENOMINATOR = {
    "coupon_order_share": "purchase_orders", "return_rate": "purchase_orders",
    "just_above_min_share": "coupon_orders", "order_discount_share": "purchase_orders",
}  # fmt: skip


@dataclass(frozen=True)
class AbuseConfig:
    """``threshold``: abuse_risk at or above it -> kept out of coupon offers; ``trees``:
    isolation forest size; ``samples``: members drawn per tree (small subsamples
    isolate a small group of alike abusers in few splits, where large ones let them mask
    each other; Liu et al. use 256, 64 keeps planted groups of 5 to 10 abusers clear);
    ``prior_orders``: each share is shrunk towards the shop's median
    as if this many more orders had been seen at it (one coupon order just above the
    minimum is not yet a habit); ``seed``: the forest's random state."""

    threshold: float = 0.78
    trees: int = 200
    samples: int = 64
    prior_orders: float = 2.0
    seed: int = 0


def abuse_risk(behaviour: pd.DataFrame, config: AbuseConfig | None = None) -> pd.DataFrame:
    """``member_id``, ``abuse_risk`` (0..1) and ``coupon_abuse_risk`` (bool) per row of
    ``behaviour`` (``member_id``, ``purchase_orders``, ``coupon_orders`` and :data:`ABUSE_FEATURES`), in its
    order. Fewer than two coupon users: every score is 0 (nothing to compare with)."""
    from sklearn.ensemble import IsolationForest

    cfg = config or AbuseConfig()
    need = ("member_id", "purchase_orders", "coupon_orders", *ABUSE_FEATURES)
    missing = [c for c in need if c not in behaviour]
    if missing:
        raise ValueError(f"abuse_risk needs the behaviour columns {missing}")
    X = behaviour[list(ABUSE_FEATURES)].astype(np.float64).fillna(0.0).to_numpy()
    if len(X):
        med = np.median(X, axis=0)
        n = np.column_stack([behaviour[_DENOMINATOR[f]].fillna(0).to_numpy(np.float64)
                             for f in ABUSE_FEATURES])  # fmt: skip
        k = cfg.prior_orders
        X = (n * X + k * med) / np.maximum(n + k, 1e-12)
        X = np.maximum(X, med)
    users = behaviour["coupon_orders"].fillna(0).to_numpy(np.float64) > 0
    risk = np.zeros(len(behaviour), dtype=np.float64)
    if users.sum() >= 2:
        forest = IsolationForest(
            n_estimators=cfg.trees, max_samples=min(cfg.samples, len(X)), random_state=cfg.seed
        ).fit(X)
        risk = np.where(users, -forest.score_samples(X), 0.0)
    return pd.DataFrame({
        "member_id": behaviour["member_id"].to_numpy(),
        "abuse_risk": np.clip(risk, 0.0, 1.0),
        "coupon_abuse_risk": risk >= cfg.threshold,
    })  # fmt: skip
