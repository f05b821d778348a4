"""The member table: one row per member, everything the marketers' side reads.

A run writes it at the end (``pipelines/members.py``) to ``HOME/members/members.parquet``;
the member store (segment queries, profiles, exports, the console) loads it from there. This
module is the contract between the two: the columns below are always present, with these
types; a run may add more (every numeric feature of the tag frame is carried along), and
readers ignore what they do not know.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILE_NAME = "members.parquet"

# name -> (pandas dtype family, meaning). "list" is a list of strings; "json" a JSON object
# serialised as a string.
COLUMNS: dict[str, tuple[str, str]] = {
    "member_id": ("string", "the member"),
    "as_of": ("string", "ISO date of the run that wrote the row"),
    "tags": ("list", "every tag that holds, rule tags and model-score tags alike"),
    "tag_reasons": ("json", "{tag: reason quoting the member's value and the rule's threshold}"),
    "tag_version": ("string", "content hash of the tag rules file that made the tags"),
    "level": ("string", "member level (programme levels, e.g. bronze..platinum)"),
    "growth_value": ("float", "growth value (points) behind the level"),
    "value_tier": ("string", "value tier"),
    "lifecycle": ("string", "lifecycle stage"),
    "rfm_segment": ("string", "RFM segment"),
    "r_score": ("int", "recency score 1..5"),
    "f_score": ("int", "frequency score 1..5"),
    "m_score": ("int", "monetary score 1..5"),
    "recency_days": ("float", "days since the last order"),
    "frequency": ("float", "orders"),
    "monetary": ("float", "spend"),
    "avg_order_value": ("float", "mean order value"),
    "tenure_days": ("float", "days since the first order or signup"),
    "churn_risk": ("float", "probability of no order within the horizon"),
    "clv_12m": ("float", "expected value over the next 12 months"),
    "cluster": ("string", "behavioural cluster name"),
    "abuse_risk": ("float", "coupon-abuse anomaly score 0..1"),
    "churn_driver": ("string", "likely churn reason for at-risk members (else null)"),
    "recall_action": ("string", "tiered recall action for at-risk members (else null)"),
    "preferred_channel": ("string", "channel the member responds to most"),
    "coupon_id": ("string", "the coupon the decision core offers (null: none)"),
    "expected_incremental_margin": ("float", "of that coupon, net of cost"),
    # KPI inputs: segment KPIs (ARPU, AOV, repurchase rate, active share, new-member retention)
    # are sums and means of these over the segment's rows.
    "orders": ("int", "orders up to the as-of date"),
    "spend": ("float", "spend up to the as-of date"),
    "first_order_date": ("date", "first order (null: never ordered)"),
    "last_order_date": ("date", "last order (null: never ordered)"),
    "joined_date": ("date", "signup, else the first order"),
    "active_30d": ("bool", "ordered in the 30 days up to the as-of date"),
    "retained_7d": (
        "bool",
        "ordered again within 7 days of the first order; null when the "
        "first order is less than 7 days old or there is none",
    ),
    "retained_30d": ("bool", "as retained_7d, over 30 days"),
    "retained_90d": ("bool", "as retained_7d, over 90 days"),
}


def path(members_dir: Path) -> Path:
    return Path(members_dir) / FILE_NAME


def missing_columns(frame: pd.DataFrame) -> list[str]:
    """Contract columns absent from ``frame`` (empty: the frame honours the contract)."""
    return [c for c in COLUMNS if c not in frame.columns]
