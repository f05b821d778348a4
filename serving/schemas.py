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
    LifecycleStage,
    ProductReason,
    RfmSegment,
    Role,
    SendSource,
    Tag,
    ValueTier,
)

# A real answer from the demo shop (`make demo`: 3,000 members, as of 2025-12-31).
DECISION_EXAMPLE: dict[str, Any] = {
    "member_id": "M01466",
    "known_member": True,
    "as_of": "2025-12-31",
    "products": [
        {"product_id": "P0126", "score": 2.104, "reason": "buy_again"},
        {"product_id": "P0099", "score": 1.318, "reason": "similar_members"},
        {"product_id": "P0025", "score": 0.962, "reason": "similar_members"},
    ],
    "coupon": None,
    "coupon_reason": (
        "no coupon: the coupon model has not been promoted (it did not beat giving no coupon "
        "on held-out randomized offers, or there is no such history)"
    ),
    "send_time": {
        "channel": "email",
        "at_utc": "2026-12-05T10:00:00Z",
        "at_local": "2026-12-05T11:00:00+01:00",
        "timezone": "Europe/Berlin",
        "hour_of_week": 131,
        "confidence": 0.31,
        "source": "member",
    },
    "churn_risk": 0.27,
    "tags": ["price_sensitive"],
    "lifecycle_stage": "active",
    "value_tier": "gold",
    "rfm_segment": "loyal_customers",
    "rfm_scores": {"r_score": 4.0, "f_score": 4.0, "m_score": 4.0},
    "parts": {
        "products": {"role": "model", "version": "1",
                     "reason": "ALS, item-item similarity and buy-again blend "
                               "(buy_again 1, similar_members 2)"},
        "coupon": {"role": "baseline", "version": "2",
                   "reason": "no coupon: the coupon model has not been promoted (it did not "
                             "beat giving no coupon on held-out randomized offers, or there "
                             "is no such history)"},
        "send_time": {"role": "model", "version": "1",
                      "reason": "the member's own engagement hours, outside quiet hours, in "
                                "Europe/Berlin"},
        "churn": {"role": "model", "version": "1",
                  "reason": "27% chance of no purchase within 90 days (calibrated gradient "
                            "boosting on the tags and BG/NBD)"},
        "tags": {"role": "rules", "version": "2025-12-31",
                 "reason": "price_sensitive: 34% of spend discounted"},
        "lifecycle_stage": {"role": "rules", "version": "2025-12-31",
                            "reason": "active: last purchase 21 days ago, 3 orders in the "
                                      "recent window and 3 in the one before, member for "
                                      "690 days"},
        "value_tier": {"role": "rules", "version": "2025-12-31",
                       "reason": "gold: 1480.25 spent in total; tiers split members by total "
                                 "spend, top tier first"},
        "rfm_segment": {"role": "rules", "version": "2025-12-31",
                        "reason": "loyal_customers: recency score 4, frequency 4, monetary 4 "
                                  "(quintiles among buyers, 5 = best)"},
    },
    "model_versions": {"products": "1", "churn": "1", "coupon": "2", "send_time": "1"},
    "model_roles": {"products": "model", "churn": "model", "coupon": "baseline",
                    "send_time": "model"},
}  # fmt: skip

SEGMENT_EXAMPLE: dict[str, Any] = {
    "as_of": "2025-12-31",
    "count": 41,
    "members": [
        {"member_id": "M00017", "rfm_segment": "at_risk", "lifecycle_stage": "dormant",
         "value_tier": "gold", "tags": ["dormant", "warn_gap_exceeded"],
         "r_score": 2.0, "f_score": 3.0, "m_score": 4.0},
    ],
}  # fmt: skip


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
            "examples": [{"status": "ready", "detail": "as of 2025-12-31; precomputed: 3000"}]
        }
    )

    status: str
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
