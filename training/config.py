"""The model configurations, built from the settings tree (features/settings.py).

The tree is the one source of every tunable value; the dataclasses in models/ stay
dependency-free and are filled here. ``TrainConfig`` is the tree's ``training`` section.
"""

from __future__ import annotations

from typing import Any

from features.settings import (
    ChurnSettings,
    CouponSettings,
    ProductsSettings,
    SendTimeSettings,
    TrainingSettings,
)
from models.churn import ChurnConfig
from models.coupon import CouponConfig
from models.peers import ALSConfig, BPRConfig, BuyAgainConfig, ItemCosineConfig
from models.products import HybridConfig, PopularityConfig
from models.send_time import SendTimeConfig

TrainConfig = TrainingSettings  # what the trainers call their ``cfg``

# recommender name -> (its config class, its own section of ``products``, seeded?)
RECOMMENDERS: dict[str, tuple[type[PopularityConfig], str | None, bool]] = {
    "popularity": (PopularityConfig, None, False),
    "shipped": (HybridConfig, "hybrid", True),
    "buy_again": (BuyAgainConfig, "buy_again", False),
    "item_cosine": (ItemCosineConfig, "item_cosine", False),
    "als": (ALSConfig, "als", True),
    "bpr": (BPRConfig, "bpr", True),
}


def recommender_config(
    name: str, products: ProductsSettings, seed: int, **overrides: Any
) -> PopularityConfig:
    """The config of recommender ``name`` ("shipped", "popularity" or a peer): the shared
    ``products.popularity`` values, then its own section, ``random_state = seed`` for the
    stochastic ones, then ``overrides`` (a tuning grid's point)."""
    if name not in RECOMMENDERS:
        raise ValueError(f"unknown recommender {name!r}: expected one of {sorted(RECOMMENDERS)}")
    cls, section, seeded = RECOMMENDERS[name]
    values: dict[str, Any] = products.popularity.model_dump()
    if section is not None:
        values |= getattr(products, section).model_dump()
    if seeded:
        values["random_state"] = seed
    return cls(**(values | overrides))


def hybrid_config(products: ProductsSettings, seed: int) -> HybridConfig:
    """The shipped recommender's config."""
    cfg = recommender_config("shipped", products, seed)
    assert isinstance(cfg, HybridConfig)
    return cfg


def churn_config(churn: ChurnSettings, cfg: TrainingSettings) -> ChurnConfig:
    return ChurnConfig(**churn.model_dump(), horizon_days=cfg.horizon_days, random_state=cfg.seed)


def coupon_config(coupon: CouponSettings, cfg: TrainingSettings) -> CouponConfig:
    return CouponConfig(**coupon.model_dump(), seed=cfg.seed)


def send_time_config(send_time: SendTimeSettings, level: str = "member") -> SendTimeConfig:
    """The model's config; ``level`` "segment" builds the segment-hour rule the gate compares."""
    return SendTimeConfig(**send_time.model_dump(), level=level)
