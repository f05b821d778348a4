"""Request and response bodies of segment queries, saved segments, lookalikes and the member
profile (the member store, features/member_store.py)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features.member_store import CURSOR_PATTERN

PREDICATE_EXAMPLE: dict[str, Any] = {
    "all": [
        {"feature": "value_tier", "op": "in", "value": ["high"]},
        {"feature": "churn_risk", "op": ">=", "value": 0.6},
        {"not": {"feature": "tags", "op": "==", "value": "dormant"}},
    ]
}
PREDICATE_DOC = (
    "a predicate tree in the tag rules' language: {all: [...]}, {any: [...]}, {not: ...}, "
    "{feature, op, value} or a compact string ('churn_risk >= 0.6'); the list column tags "
    "takes == (contains), != , in (any of), not in. Omitted: every member"
)


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


class SegmentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"predicate": PREDICATE_EXAMPLE, "limit": 100}]})  # fmt: skip

    predicate: dict[str, Any] | str | None = Field(None, description=PREDICATE_DOC)
    cursor: str | None = Field(None, max_length=400, pattern=CURSOR_PATTERN, description="next_cursor of the previous page")  # fmt: skip
    limit: int = Field(100, ge=0, description="members in the page (0: figures only; capped by segments.max_page_size)")  # fmt: skip


class BreakdownPublic(BaseModel):
    value: str | None = Field(description="the column's value (null: not known)")
    count: int


class KpisPublic(BaseModel):
    members: int
    arpu: float | None = Field(description="spend per member")
    aov: float | None = Field(description="spend per order")
    repurchase_rate: float | None = Field(description="share of buyers with two orders or more")  # fmt: skip
    active_30d_share: float | None = Field(description="share that ordered in the last 30 days")  # fmt: skip
    retention_7d: float | None = Field(description="share of new members ordering again within 7 days of the first order")  # fmt: skip
    retention_30d: float | None
    retention_90d: float | None
    mean_clv_12m: float | None = Field(description="mean expected value over the next 12 months")  # fmt: skip


class SegmentMemberPublic(BaseModel):
    member_id: str
    level: str | None = None
    value_tier: str | None = None
    lifecycle: str | None = None
    rfm_segment: str | None = None
    churn_risk: float | None = None
    clv_12m: float | None = None
    preferred_channel: str | None = None
    tags: list[str] = []


SEGMENT_RESULT_EXAMPLE: dict[str, Any] = {
    "count": 2,
    "breakdowns": {"value_tier": [{"value": "high", "count": 2}]},
    "kpis": {"members": 2, "arpu": 425.0, "aov": 106.25, "repurchase_rate": 1.0,
             "active_30d_share": 1.0, "retention_7d": 1.0, "retention_30d": 1.0,
             "retention_90d": 1.0, "mean_clv_12m": 600.0},
    "members": [{"member_id": "M2", "level": "gold", "value_tier": "high",
                 "lifecycle": "active", "rfm_segment": "champions", "churn_risk": 0.1,
                 "clv_12m": 400.0, "preferred_channel": "sms", "tags": ["vip"]}],
    "next_cursor": None,
}  # fmt: skip


class SegmentResultPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SEGMENT_RESULT_EXAMPLE]})

    count: int
    breakdowns: dict[str, list[BreakdownPublic]]
    kpis: KpisPublic
    members: list[SegmentMemberPublic]
    next_cursor: str | None = Field(None, description="pass as cursor for the next page; null: last page")  # fmt: skip


class SegmentSave(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"predicate": PREDICATE_EXAMPLE, "description": "high value at risk"}]})  # fmt: skip

    predicate: dict[str, Any] | str = Field(description=PREDICATE_DOC)
    description: str = Field("", max_length=500)


SAVED_EXAMPLE: dict[str, Any] = {"name": "vip_at_risk", "version": 2, "predicate": PREDICATE_EXAMPLE,
                 "description": "high value at risk", "created_at": "2026-01-01T09:00:00+00:00",
                 "count": 41}  # fmt: skip


class SavedSegmentPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SAVED_EXAMPLE]})

    name: str
    version: int
    predicate: Any
    description: str
    created_at: str
    count: int = Field(description="members when saved")


class SavedSegmentsPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"segments": [SAVED_EXAMPLE]}]})
    segments: list[SavedSegmentPublic]


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"predicate": PREDICATE_EXAMPLE, "format": "csv"}]})  # fmt: skip

    predicate: dict[str, Any] | str | None = Field(None, description=PREDICATE_DOC)
    format: ExportFormat = ExportFormat.csv


class LookalikeRequest(BaseModel):
    """The seed is either an inline predicate or a saved segment's name: exactly one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"predicate": PREDICATE_EXAMPLE, "size": 100}],
        "oneOf": [
            {"required": ["predicate"], "properties": {"predicate": {"not": {"type": "null"}}}},
            {"required": ["segment"], "properties": {"segment": {"type": "string"}}},
        ],
    })  # fmt: skip

    predicate: dict[str, Any] | str | None = Field(None, description="the seed segment; " + PREDICATE_DOC)  # fmt: skip
    segment: str | None = Field(None, max_length=80, description="or a saved segment's name as the seed")  # fmt: skip
    size: int = Field(100, ge=1, description="members to return (capped by segments.lookalike_max)")  # fmt: skip


class LookalikeMemberPublic(BaseModel):
    member_id: str
    score: float = Field(description="similarity to the seed, 0..1, higher is closer")


class LookalikePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"seed_count": 2, "members": [{"member_id": "M4", "score": 0.37}]}]})  # fmt: skip

    seed_count: int
    members: list[LookalikeMemberPublic]


# --------------------------------------------------------------------------- profile
class TagReasonPublic(BaseModel):
    tag: str
    reason: str = Field(description="why the tag holds, quoting the member's value and the threshold")  # fmt: skip


class LevelPointPublic(BaseModel):
    as_of: str
    level: str | None
    growth_value: float | None


class RfmPublic(BaseModel):
    segment: str | None
    r_score: int | None
    f_score: int | None
    m_score: int | None
    recency_days: float | None
    frequency: float | None
    monetary: float | None


class ChurnPublic(BaseModel):
    risk: float | None
    driver: str | None = Field(description="likely reason for at-risk members, else null")
    recall_action: str | None


class OrderPublic(BaseModel):
    order_id: str
    date: str
    amount: float | None


PROFILE_EXAMPLE: dict[str, Any] = {
    "member_id": "M2", "as_of": "2025-12-31", "tag_version": "3f2a9c",
    "tags": [{"tag": "dormant", "reason": "74 days since the last order, threshold 60"}],
    "level": "gold", "growth_value": 300.0,
    "level_history": [{"as_of": "2025-11-30", "level": "silver", "growth_value": 180.0}],
    "rfm": {"segment": "loyal", "r_score": 3, "f_score": 4, "m_score": 4, "recency_days": 74.0,
            "frequency": 6.0, "monetary": 612.5},
    "lifecycle": "at_risk", "value_tier": "high",
    "churn": {"risk": 0.71, "driver": "forgotten", "recall_action": "personal outreach"},
    "clv_12m": 240.0, "expected_next_order_date": "2026-01-12", "preferred_channel": "email",
    "active_hours": [19, 20], "recent_orders": [], "personal": {"email": "j***@***"},
}  # fmt: skip


class ProfilePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PROFILE_EXAMPLE]})

    member_id: str
    as_of: str | None
    tag_version: str | None
    tags: list[TagReasonPublic]
    level: str | None
    growth_value: float | None
    level_history: list[LevelPointPublic]
    rfm: RfmPublic
    lifecycle: str | None
    value_tier: str | None
    churn: ChurnPublic
    clv_12m: float | None = Field(description="expected value over the next 12 months")
    expected_next_order_date: date | None = Field(description="from the member's own purchase cycle; null: fewer than two orders")  # fmt: skip
    preferred_channel: str | None
    active_hours: list[int] = Field(description="hours of day (member's local time) the member engages most")  # fmt: skip
    recent_orders: list[OrderPublic]
    personal: dict[str, str] = Field(description="personal fields the table holds, masked")
