"""Serving settings: the shared settings plus what only the API needs."""

from __future__ import annotations

from functools import lru_cache

from features.settings import MemberwiseSettings


class ServingSettings(MemberwiseSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    max_products: int = 100  # upper bound of ?n=
    default_products: int = 10


@lru_cache
def get_settings() -> ServingSettings:
    return ServingSettings()
