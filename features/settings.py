"""One visible configuration for everything a user might tune.

Values come from (highest first) keyword arguments, environment variables prefixed
``MEMBERWISE_`` (nested with ``__``, e.g. ``MEMBERWISE_TAGS__DORMANT_DAYS=45``) and the
defaults below, which are the numbers the programme's seed documents use.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TagConfig(BaseModel):
    """Thresholds of the member tags (days are calendar days, money in the shop's currency)."""

    dormant_days: int = 60  # no purchase for this long -> dormant
    churned_days: int = 180  # no purchase for this long -> churned
    new_member_days: int = 30  # first purchase / signup this recent -> new
    high_frequency_orders: int = 3  # at least this many orders ...
    high_frequency_window_days: int = 30  # ... within this many days -> high_frequency
    high_order_value: float | None = None  # a single order above this -> high_order_value;
    high_order_value_quantile: float = 0.9  # None: this quantile of all order values
    value_tier_shares: tuple[float, ...] = (0.05, 0.15, 0.30, 0.30, 0.20)  # top tier first
    value_tier_names: tuple[str, ...] = ("platinum", "gold", "silver", "bronze", "basic")
    activity_window_days: int = 90  # "recent" vs "previous" activity windows
    activity_drop_ratio: float = 0.5  # recent <= ratio * previous -> activity_down warning
    growth_ratio: float = 1.5  # recent >= ratio * previous -> growing
    gap_cycle_multiplier: float = 1.5  # gap since last order > x * usual cycle -> warning
    mature_tenure_days: int = 365
    price_sensitive_share: float = 0.3  # share of spend on discounted lines -> price_sensitive
    top_categories: int = 3


class IngestConfig(BaseModel):
    """How ingest treats rows that are valid but suspicious."""

    # exact duplicate order lines (every column equal): "drop" quarantines all but the
    # first with the reason, "keep" keeps them; either way the ingest report counts them
    duplicate_lines: Literal["drop", "keep"] = "drop"


class MemberwiseSettings(BaseSettings):
    """Where state lives and how the stores are reached."""

    model_config = SettingsConfigDict(
        env_prefix="MEMBERWISE_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default=Path("~/.memberwise"), description="all state lives here")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "127.0.0.1:6379"
    mlflow_tracking_uri: str | None = None  # default: sqlite file under home
    feast_project: str = "memberwise"
    tags: TagConfig = TagConfig()
    ingest: IngestConfig = IngestConfig()  # MEMBERWISE_INGEST__DUPLICATE_LINES=keep

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def feast_dir(self) -> Path:
        return self.home_dir / "feast"

    @property
    def offline_dir(self) -> Path:
        return self.feast_dir / "offline"

    @property
    def mlflow_dir(self) -> Path:
        return self.home_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def quarantine_dir(self) -> Path:
        return self.home_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"


@lru_cache
def get_settings() -> MemberwiseSettings:
    """The process-wide settings (tests override by building their own)."""
    return MemberwiseSettings()
