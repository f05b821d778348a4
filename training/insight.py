"""The member-insight columns of the member table, composed in one call.

:func:`member_insight` turns the tag frame (``features.tags``, one row per member, with
``churn_risk`` when the churn model has scored) and the shop's typed tables into::

    member_id, clv_12m, expected_purchases, expected_spend, cycle_days,
    expected_next_order, cluster, abuse_risk, coupon_abuse_risk, churn_driver,
    churn_driver_evidence, recall_action, recall_detail

plus the order-behaviour evidence (``features.behaviour.BEHAVIOUR_COLUMNS``), in the tag
frame's row order, and the fitted pieces and notes (what fell back and why). Settings:
``settings.insight`` (thresholds, k range) and ``settings.training.seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.behaviour import BEHAVIOUR_COLUMNS, order_behaviour
from features.drivers import DRIVER_COLUMNS, churn_drivers
from features.settings import MemberwiseSettings
from models.abuse import AbuseConfig, abuse_risk
from models.churn import _rfm as bgnbd_inputs
from models.clusters import ClusterConfig, Clusters, assign_clusters
from models.clv import CLVConfig, MemberValue, member_value

INSIGHT_COLUMNS: tuple[str, ...] = (
    "clv_12m", "expected_purchases", "expected_spend", "cycle_days", "expected_next_order",
    "cluster", "abuse_risk", "coupon_abuse_risk", *DRIVER_COLUMNS,
)  # fmt: skip


@dataclass(frozen=True)
class Insight:
    """``frame``: member_id, :data:`INSIGHT_COLUMNS` and the behaviour evidence, one row per
    member of the tag frame in its order; ``value`` and ``clusters``: the fitted pieces
    (parameters, silhouettes, centroids); ``notes``: what fell back and why."""

    frame: pd.DataFrame
    value: MemberValue
    clusters: Clusters
    notes: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """Parameters and figures worth logging (JSON-ready)."""
        v, c = self.value, self.clusters
        f = self.frame
        return {
            "bgnbd": v.bgnbd.to_dict() if v.bgnbd else None,
            "gamma_gamma": v.gamma_gamma.to_dict() if v.gamma_gamma else None,
            "clusters_k": c.k,
            "clusters_silhouettes": {str(k): s for k, s in c.silhouettes.items()},
            "cluster_sizes": c.sizes,
            "coupon_abuse_members": int(f["coupon_abuse_risk"].sum()),
            "at_risk_members": int(f["churn_driver"].notna().sum()),
            "churn_drivers": {str(k): int(n) for k, n in f["churn_driver"].value_counts().items()},
            "notes": list(self.notes),
        }


def member_insight(
    tags: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    as_of: date,
    settings: MemberwiseSettings | None = None,
) -> Insight:
    """See the module docstring. ``tables``: ``pipelines.ingest.ShopData.tables``. Without a
    ``churn_risk`` column, the at-risk members are read from BG/NBD's probability of no
    purchase within ``training.horizon_days`` (and a note says so)."""
    s = settings or MemberwiseSettings()
    ins = s.insight
    notes: list[str] = []
    value = member_value(
        tags,
        as_of,
        CLVConfig(ins.clv_horizon_days, ins.clv_penalizer, ins.cycle_prior_gaps),
    )
    notes += value.notes
    cluster_config = ClusterConfig(
        k_min=ins.cluster_k_min,
        k_max=ins.cluster_k_max,
        sample=ins.cluster_sample,
        silhouette_sample=ins.cluster_silhouette_sample,
        seed=s.training.seed,
    )
    clusters = assign_clusters(tags, cluster_config)
    if clusters.note:
        notes.append(clusters.note)
    behaviour = order_behaviour(tables, as_of, ins.abuse_min_spend_margin)
    if behaviour.attrs.get("min_spend_source") != "coupons table":
        notes.append(
            "coupons without a minimum spend: 'just above the minimum' uses the proxy (the 5th "
            "percentile of the value of orders redeeming the coupon)"
        )
    abuse = AbuseConfig(ins.abuse_threshold, ins.abuse_trees, ins.abuse_samples,
                        seed=s.training.seed)  # fmt: skip
    risk = abuse_risk(behaviour, abuse)
    scored = tags
    if "churn_risk" not in tags:
        scored = tags.assign(churn_risk=_bgnbd_churn(tags, value, s.training.horizon_days))
        notes.append(
            "no churn_risk column: at-risk members read from BG/NBD's probability of no "
            f"purchase within {s.training.horizon_days} days"
        )
    drivers = churn_drivers(scored, behaviour, ins)
    ids = tags["member_id"].astype(str).to_numpy()
    frame = value.frame.assign(member_id=ids)
    frame["cluster"] = clusters.frame["cluster"].to_numpy()
    by_member = risk.assign(member_id=risk["member_id"].astype(str)).set_index("member_id")
    frame["abuse_risk"] = by_member["abuse_risk"].reindex(ids).fillna(0.0).to_numpy()
    frame["coupon_abuse_risk"] = (
        by_member["coupon_abuse_risk"].reindex(ids, fill_value=False).astype(bool).to_numpy()
    )
    for c in DRIVER_COLUMNS:
        frame[c] = drivers[c].to_numpy()
    b = behaviour.assign(member_id=behaviour["member_id"].astype(str)).set_index("member_id")
    for c in BEHAVIOUR_COLUMNS:
        frame[c] = b[c].reindex(ids).to_numpy()
    return Insight(frame[["member_id", *INSIGHT_COLUMNS, *BEHAVIOUR_COLUMNS]], value, clusters,
                   tuple(notes))  # fmt: skip


def _bgnbd_churn(tags: pd.DataFrame, value: MemberValue, horizon_days: int) -> np.ndarray:
    """P(no purchase within the horizon) from the BG/NBD fit of ``value`` (NaN without)."""
    out = np.full(len(tags), np.nan)
    if value.bgnbd is None:
        return out
    x, tx, T, known = bgnbd_inputs(tags)
    if known.any():
        out[known] = value.bgnbd.predict_no_purchase_probability(
            float(horizon_days), x[known], tx[known], T[known]
        )
    return out
