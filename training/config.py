"""Training configuration: every number a data scientist might tune, with defaults."""

from __future__ import annotations

from pydantic import BaseModel


class TrainConfig(BaseModel):
    """Windows are in days; money in the shop's currency."""

    seed: int = 0
    horizon_days: int = 90  # churn label: no purchase within this many days after the cutoff
    churn_cutoffs: int = 8  # training cutoffs stacked for churn, the latest H days before as-of
    churn_cutoff_step_days: int = 14  # days between those cutoffs
    validation_days: int = 30  # last days before as-of held out to compare model vs baseline
    top_k: int = 10  # list length for ranking metrics
    test_share: float = 0.25  # member share held out for churn and coupon evaluation
    coupon_response_days: int = 14  # an offer's outcome is the net margin in this window
    default_margin_rate: float = 0.3  # margin rate of products without one in `products`
    max_coupon_snapshots: int = 24  # at most this many offer dates get their own tag snapshot
    als_factors: int = 64
    als_regularization: float = 0.05
    als_iterations: int = 15
    als_alpha: float = 5.0
    buy_again_weight: float = 2.0
    recent_days: int = 14  # the "just bought" filter window
