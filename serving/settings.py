"""Serving settings: the shared settings plus what only the API needs."""

from __future__ import annotations

from functools import lru_cache

from features.settings import MemberwiseSettings


class ServingSettings(MemberwiseSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    max_products: int = 100  # upper bound of ?n=
    default_products: int = 10
    # coupon decisions precomputed at start-up for snapshots up to this many members
    coupon_precompute_max_members: int = 2_000_000


@lru_cache
def get_settings() -> ServingSettings:
    return ServingSettings()
