"""Response schemas, named for what they are."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ProductPublic(BaseModel):
    product_id: str
    score: float
    reason: str = Field(description="buy_again, similar_members or popular")


class CouponPublic(BaseModel):
    coupon_id: str
    expected_incremental_margin: float = Field(
        description="expected margin gained by offering it, net of the coupon's cost"
    )
    reason: str


class SendTimePublic(BaseModel):
    channel: str
    at_utc: datetime
    at_local: datetime
    timezone: str
    hour_of_week: int = Field(description="0..167 in the member's timezone, Monday 00:00 = 0")
    confidence: float = Field(ge=0, le=1)
    source: str = Field(description="member, segment or global")


class RecommendationsPublic(BaseModel):
    member_id: str
    known_member: bool
    products: list[ProductPublic]
    coupon: CouponPublic | None
    coupon_reason: str
    send_time: SendTimePublic
    model_versions: dict[str, str]
    model_roles: dict[str, str] = Field(description="model or baseline, per model")


class MemberTagsPublic(BaseModel):
    member_id: str
    rfm_segment: str | None
    lifecycle_stage: str | None
    value_tier: str | None
    tags: list[str]
    r_score: float | None
    f_score: float | None
    m_score: float | None


class SegmentPublic(BaseModel):
    as_of: str
    count: int
    members: list[MemberTagsPublic]


class Health(BaseModel):
    status: str
    detail: str | None = None
