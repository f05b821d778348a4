"""The Feast feature repo: entity, sources, feature views and one feature service per model.

Definitions are built for a given home (the offline snapshot folder lives there), then
applied with :func:`feature_store`'s ``apply``. Training and serving fetch features by the
service names below, so the two can never disagree.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from features.settings import MemberwiseSettings
from features.tags import BOOL_TAGS, INT_FEATURES, NUMERIC_FEATURES, STRING_FEATURES

ENTITY = "member"
JOIN_KEY = "member_id"
TAGS_VIEW = "member_tags"

# One feature service per model version; bump the suffix when the feature list changes.
CHURN_SERVICE = "churn_v2"
COUPON_SERVICE = "coupon_v2"
SEND_TIME_SERVICE = "send_time_v1"
PROFILE_SERVICE = "member_profile_v1"

# Model inputs (numeric, NaN allowed); the order is the column order the models see.
CHURN_FEATURES: list[str] = [
    "recency_days", "frequency", "monetary", "avg_order_value", "max_order_value",
    "orders_30d", "orders_recent", "orders_previous", "spend_recent", "spend_previous",
    "tenure_days", "usual_cycle_days", "gap_ratio", "distinct_products", "discount_share",
    "events_30d", "events_recent", "messages_recent", "opens_recent", "open_rate",
    "r_score", "f_score", "m_score", "purchase_days", "first_purchase_days",
]  # fmt: skip
COUPON_FEATURES: list[str] = [
    "recency_days", "frequency", "monetary", "avg_order_value", "orders_recent",
    "spend_recent", "tenure_days", "discount_share", "open_rate", "r_score", "f_score",
    "m_score", "coupon_offers", "coupon_redemption_rate",
]  # fmt: skip
SEND_TIME_FEATURES: list[str] = ["timezone", "rfm_segment", "preferred_channel", "active_how"]
PROFILE_FEATURES: list[str] = [
    "rfm_segment", "lifecycle_stage", "value_tier", "tags", "r_score", "f_score", "m_score",
    "top_category", "categories",
]  # fmt: skip


def tags_source_path(settings: MemberwiseSettings) -> Path:
    """Folder of timestamped tag snapshots (one Parquet file per as-of date)."""
    return settings.offline_dir / TAGS_VIEW


def snapshot_path(settings: MemberwiseSettings, as_of: date | str) -> Path:
    """The tag snapshot file of one as-of date (``date`` or ISO string)."""
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return tags_source_path(settings) / f"as_of={day}.parquet"


def definitions(settings: MemberwiseSettings) -> list[Any]:
    """Entity, source, feature view and feature services for this home."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Bool, Float64, Int64, String

    member = Entity(
        name=ENTITY,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="A member of the shop's programme",
    )
    source = FileSource(
        name="member_tags_snapshots",
        path=str(tags_source_path(settings)),
        timestamp_field="event_timestamp",
        description="Member tags, one snapshot per as-of date",
    )
    schema = (
        [Field(name=c, dtype=Float64) for c in NUMERIC_FEATURES]
        + [Field(name=c, dtype=Bool) for c in BOOL_TAGS]
        + [Field(name=c, dtype=String) for c in STRING_FEATURES]
        + [Field(name=c, dtype=Int64) for c in INT_FEATURES]
    )
    view = FeatureView(
        name=TAGS_VIEW,
        entities=[member],
        ttl=timedelta(days=3650),
        schema=schema,
        source=source,
        online=True,
        description="RFM, lifecycle, value tier, rule tags and early warnings as of a date",
    )
    services = [
        FeatureService(name=CHURN_SERVICE, features=[view[CHURN_FEATURES]]),
        FeatureService(name=COUPON_SERVICE, features=[view[COUPON_FEATURES]]),
        FeatureService(name=SEND_TIME_SERVICE, features=[view[SEND_TIME_FEATURES]]),
        FeatureService(name=PROFILE_SERVICE, features=[view[PROFILE_FEATURES]]),
    ]
    return [member, source, view, *services]


def repo_config(settings: MemberwiseSettings) -> Any:
    """Feast RepoConfig for this home: file offline store, SQLite or Redis online store."""
    from feast.repo_config import RepoConfig

    if settings.stores.online_store == "redis":
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": settings.stores.redis_url,
            "key_ttl_seconds": None,
        }
    else:
        online = {"type": "sqlite", "path": str(settings.feast_dir / "online.db")}
    return RepoConfig(
        project=settings.stores.feast_project,
        registry={
            "registry_type": "file",
            "path": str(settings.feast_dir / "registry.db"),
            "cache_ttl_seconds": 0,
        },
        provider="local",
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(settings.feast_dir),
    )


def feature_store(settings: MemberwiseSettings) -> Any:
    """A FeatureStore for this home (also writes feature_store.yaml there for the feast CLI)."""
    from feast import FeatureStore

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(settings)
    yaml_path = settings.feast_dir / "feature_store.yaml"
    if not yaml_path.exists():
        import yaml

        body = config.model_dump(mode="json", by_alias=True, exclude_none=True)
        body.pop("repo_path", None)
        yaml_path.write_text(yaml.safe_dump(body, sort_keys=False))
    return FeatureStore(config=config, repo_path=str(settings.feast_dir))
