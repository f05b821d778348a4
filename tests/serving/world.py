"""A tiny shop with small real models fitted in memory (no MLflow, no Feast): the world the
decision core and the API are tested in.

``shop_world()`` generates a 120-member synthetic shop, computes its tags and fits the four
models (and their baselines) from ``models/`` on it in a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import repo
from features.tags import compute_tags
from models.churn import ChurnConfig, build_churn_baseline, build_churn_model
from models.coupon import CouponConfig, CouponPolicy, NoCouponPolicy
from models.decision import Decider
from models.products import HybridConfig, HybridRecommender, PopularityRecommender
from models.registry import MODEL_NAMES, Champions
from models.send_time import GlobalSendTimeModel, SendTimeModel
from pipelines.ingest import load_shop
from pipelines.steps import engagements, member_timezones
from pipelines.synthetic import generate

AS_OF = date(2025, 12, 31)


@dataclass
class ShopWorld:
    tags: pd.DataFrame  # one row per member: member_id and every feature column
    model: Champions  # the trained models as champions (role "model")
    baseline: Champions  # the baselines as champions (role "baseline")

    def decider(self, baseline: bool = False) -> Decider:
        champions = self.baseline if baseline else self.model
        return Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, AS_OF.isoformat())


def online_row(tags: pd.DataFrame, member_id: str) -> dict[str, Any] | None:
    """A member's features as the online store returns them: NaN and NA become None."""
    rows = tags[tags["member_id"] == member_id]
    if rows.empty:
        return None
    row = rows.iloc[0].drop(["member_id", "event_timestamp"]).to_dict()
    return {k: None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
            else v for k, v in row.items()}  # fmt: skip


class FrameFeatures:
    """A feature reader over a tags frame, standing in for the online store."""

    def __init__(self, tags: pd.DataFrame) -> None:
        self.tags = tags

    def member(self, member_id: str) -> dict[str, Any] | None:
        return online_row(self.tags, member_id)


def shop_world(folder: Path, members: int = 120, seed: int = 5) -> ShopWorld:
    generate(folder, members=members, seed=seed)
    shop = load_shop(folder, AS_OF)
    tags = compute_tags(shop.tables, AS_OF)
    ol = shop.tables["order_lines"]
    lines = {
        "member_ids": ol["member_id"].astype(str).to_numpy(),
        "product_ids": ol["product_id"].astype(str).to_numpy(),
        "ts": ol["ts"].to_numpy("datetime64[us]"),
        "quantity": ol["quantity"].to_numpy(float),
        "as_of": np.datetime64(AS_OF.isoformat(), "us"),
    }
    hybrid = HybridRecommender(HybridConfig(factors=4, iterations=3, num_threads=1)).fit(**lines)
    popular = PopularityRecommender().fit(**lines)

    # churn: a noisy label that depends on recency, so both classes are present
    X = tags[repo.CHURN_FEATURES].astype(float)
    rng = np.random.default_rng(seed)
    odds = tags["recency_days"].fillna(400).to_numpy() / 90 - 1
    y = (rng.random(len(tags)) < 1 / (1 + np.exp(-odds))).astype(int)
    churn = build_churn_model(ChurnConfig(cv=2, max_iter=20, min_samples_leaf=5)).fit(X, y)
    churn_baseline = build_churn_baseline().fit(X, y)

    # coupon: a randomized offer where coupon A pays for infrequent buyers only
    Xc = tags[repo.COUPON_FEATURES].to_numpy(float)
    arm = rng.choice(np.array(["", "A", "B"]), len(tags))
    rare = tags["frequency"].to_numpy() <= tags["frequency"].median()
    margin = 10.0 + np.where(arm == "A", np.where(rare, 6.0, -4.0), 0.0) - 3.0 * (arm == "B")
    coupon = CouponPolicy(CouponConfig(min_rows_per_arm=10)).fit(
        Xc, arm, margin + rng.normal(0, 0.5, len(tags)), repo.COUPON_FEATURES
    )
    no_coupon = NoCouponPolicy().fit(Xc, arm, margin, repo.COUPON_FEATURES)

    eng = engagements(shop)
    send_args = (
        eng["member_id"].astype(str).to_numpy(),
        eng["channel"].astype(str).to_numpy(),
        eng["ts"].to_numpy("datetime64[us]"),
        member_timezones(shop),
        dict(zip(tags["member_id"], tags["rfm_segment"], strict=True)),
    )
    send = SendTimeModel().fit(*send_args)
    send_global = GlobalSendTimeModel().fit(*send_args)

    def champions(role: str, *models: Any) -> Champions:
        return Champions(
            *models,
            versions={n: "1" if role == "model" else "2" for n in MODEL_NAMES},
            roles=dict.fromkeys(MODEL_NAMES, role),
        )

    return ShopWorld(
        tags=tags,
        model=champions("model", hybrid, churn, coupon, send),
        baseline=champions("baseline", popular, churn_baseline, no_coupon, send_global),
    )
