"""Request and response schemas, named for what they are. Every closed vocabulary is an
enum (``serving.vocabulary``) and every response model carries an example, which the
OpenAPI spec shows for each 200 response."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serving.vocabulary import (
    Channel,
    DecisionPart,
    HealthStatus,
    LifecycleStage,
    ProductReason,
    RfmSegment,
    Role,
    SendSource,
    Tag,
    ValueTier,
)

# Real answers from the demo shop (`make demo`: 3,000 members, as of 2025-12-31; floats
# rounded), asked on 2026-11-30.
DECISION_EXAMPLE: dict[str, Any] = {
    "member_id": "M00651",
    "known_member": True,
    "as_of": "2025-12-31",
    "products": [
        {"product_id": "P0021", "score": 1.9342, "reason": "buy_again"},
        {"product_id": "P0166", "score": 1.7005, "reason": "buy_again"},
        {"product_id": "P0093", "score": 1.5626, "reason": "buy_again"},
    ],
    "coupon": {
        "coupon_id": "AMT5",
        "expected_incremental_margin": 1.1781,
        "reason": "AMT5: +1.18 expected incremental margin net of cost (80% lower bound +0.54)",
    },
    "coupon_reason": "AMT5: +1.18 expected incremental margin net of cost (80% lower bound +0.54)",
    "send_time": {
        "channel": "email",
        "at_utc": "2026-12-07T13:00:00Z",
        "at_local": "2026-12-07T08:00:00-05:00",
        "timezone": "America/New_York",
        "hour_of_week": 8,
        "confidence": 0.268,
        "source": "member",
    },
    "churn_risk": 0.1972,
    "tags": ["high_order_value", "dormant", "warn_activity_down", "warn_gap_exceeded"],
    "lifecycle_stage": "dormant",
    "value_tier": "silver",
    "rfm_segment": "at_risk",
    "rfm_scores": {"r_score": 2.0, "f_score": 3.0, "m_score": 3.0},
    "parts": {
        "products": {
            "role": "model",
            "version": "1",
            "reason": "ALS, item-item similarity and buy-again blend (3 buy again)",
        },
        "coupon": {
            "role": "model",
            "version": "1",
            "reason": "AMT5: +1.18 expected incremental margin net of cost (80% lower bound +0.54)",
        },
        "send_time": {
            "role": "model",
            "version": "1",
            "reason": "the member's own engagement hours, outside quiet hours, in America/New_York",
        },
        "churn": {
            "role": "model",
            "version": "1",
            "reason": "20% chance of no purchase within 90 days (calibrated gradient "
            "boosting on the tags and BG/NBD)",
        },
        "tags": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "high_order_value: largest order 164.99; dormant: last purchase "
            "77 days ago; warn_activity_down: orders in the recent window: "
            "1, in the one before: 2; warn_gap_exceeded: 2.7x the usual "
            "purchase cycle since the last order",
        },
        "lifecycle_stage": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "dormant: last purchase 77 days ago, orders in the "
            "recent window: 1, in the one before: 2, member for "
            "1071 days",
        },
        "value_tier": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "silver: 949.57 spent in total; tiers split members by "
            "total spend, top tier first",
        },
        "rfm_segment": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "at_risk: recency score 2, frequency 3, monetary 3 "
            "(quintiles among buyers, 5 = best)",
        },
    },
    "model_versions": {"products": "1", "coupon": "1", "send_time": "1", "churn": "1"},
    "model_roles": {"products": "model", "coupon": "model", "send_time": "model", "churn": "model"},
}

SEGMENT_EXAMPLE: dict[str, Any] = {
    "as_of": "2025-12-31",
    "count": 56,
    "members": [
        {
            "member_id": "M00009",
            "rfm_segment": "cant_lose_them",
            "lifecycle_stage": "churned",
            "value_tier": "gold",
            "tags": ["high_order_value", "dormant", "warn_gap_exceeded"],
            "r_score": 2.0,
            "f_score": 5.0,
            "m_score": 5.0,
        }
    ],
}


class ProductPublic(BaseModel):
    product_id: str
    score: float = Field(description="the blend's score, comparable within one answer")
    reason: ProductReason


class CouponPublic(BaseModel):
    coupon_id: str
    expected_incremental_margin: float = Field(
        description="expected margin gained by offering it, net of the coupon's cost"
    )
    reason: str


class SendTimePublic(BaseModel):
    channel: Channel
    at_utc: datetime
    at_local: datetime
    timezone: str = Field(description="IANA timezone of the member")
    hour_of_week: int = Field(ge=0, le=167, description="local, Monday 00:00 = 0")
    confidence: float = Field(ge=0, le=1)
    source: SendSource


class RfmScoresPublic(BaseModel):
    r_score: float | None = Field(description="1..5, recency quintile among buyers (5 = best)")
    f_score: float | None = Field(description="1..5, frequency quintile among buyers")
    m_score: float | None = Field(description="1..5, monetary quintile among buyers")


class PartPublic(BaseModel):
    role: Role
    version: str | None = Field(
        description="the registered model version, or the tag snapshot's as-of date"
    )
    reason: str


class MemberDecisionPublic(BaseModel):
    """Everything decided for one member, each part with its role, version and reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [DECISION_EXAMPLE]})

    member_id: str
    known_member: bool = Field(description="the store or the products model knows the member")
    as_of: str | None = Field(description="date of the tag snapshot the features come from")
    products: list[ProductPublic] = Field(description="best first")
    coupon: CouponPublic | None = Field(description="null: no coupon is worth its cost")
    coupon_reason: str
    send_time: SendTimePublic
    churn_risk: float | None = Field(
        ge=0, le=1, description="P(no purchase within the horizon); null for an unknown member"
    )
    tags: list[Tag]
    lifecycle_stage: LifecycleStage | None
    value_tier: ValueTier | None
    rfm_segment: RfmSegment | None
    rfm_scores: RfmScoresPublic
    parts: dict[DecisionPart, PartPublic] = Field(
        description="role (model, baseline or rules), version and reason of every part"
    )
    model_versions: dict[str, str]
    model_roles: dict[str, Role] = Field(description="model or baseline, per model")


class MemberTagsPublic(BaseModel):
    member_id: str
    rfm_segment: RfmSegment | None
    lifecycle_stage: LifecycleStage | None
    value_tier: ValueTier | None
    tags: list[Tag]
    r_score: float | None
    f_score: float | None
    m_score: float | None


class SegmentPublic(BaseModel):
    """Members of the latest snapshot matching a selection (one page of them)."""

    model_config = ConfigDict(json_schema_extra={"examples": [SEGMENT_EXAMPLE]})

    as_of: str
    count: int = Field(description="members matching, over all pages")
    members: list[MemberTagsPublic]


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "detail": "as of 2025-12-31; churn and coupon decisions precomputed: 3000",
                }
            ]
        }
    )

    status: HealthStatus
    detail: str | None = None


class ErrorPublic(BaseModel):
    """The body of a 404 or 503."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "models or feature store not loaded: ModelsNotReady: ..."}]
        }
    )

    detail: str


class ValidationIssue(BaseModel):
    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="where: path, query and the parameter's name")
    msg: str = Field(description="what is wrong, listing the allowed values for an enum")
    type: str


class ValidationErrorPublic(BaseModel):
    """The body of a 422: every problem with the request."""

    detail: list[ValidationIssue]


def example_of(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry showing a response model's example for a 200."""
    extra = model.model_config.get("json_schema_extra")
    example = extra["examples"][0] if isinstance(extra, dict) else None  # type: ignore[index]
    return {200: {"content": {"application/json": {"example": example}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "no such resource (the path names none)"},
    422: {
        "model": ValidationErrorPublic,
        "description": "a parameter is malformed or outside its allowed values",
    },
    503: {
        "model": ErrorPublic,
        "description": "models or the feature store are not loaded yet (see /readyz)",
    },
}
