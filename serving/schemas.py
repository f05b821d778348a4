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
    DegradedReason,
    HealthStatus,
    KeyScope,
    LifecycleStage,
    ProductReason,
    RfmSegment,
    Role,
    SendSource,
    Tag,
    ValueTier,
)

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"  # member and product ids
ID_MAX_LENGTH = 128
CATEGORY_PATTERN = r"^[\w][\w &/.,'()+-]*$"  # e.g. "books", "MEAT-PCKGD", "COUP/STR & MFG"
CATEGORY_MAX_LENGTH = 100

# Real answers from a small demo shop (`memberwise generate --members 800 --seed 7`, run
# as of 2025-12-31; floats rounded), asked on 2026-11-30: member M00002 (n=3) and the
# shop's best-selling product P0170 (n=3).
DECISION_EXAMPLE: dict[str, Any] = {
    "member_id": "M00002",
    "known_member": True,
    "as_of": "2025-12-31",
    "products": [
        {"product_id": "P0170", "score": 1.9775, "reason": "buy_again"},
        {"product_id": "P0173", "score": 1.702, "reason": "similar_members"},
        {"product_id": "P0161", "score": 1.6468, "reason": "similar_members"},
    ],
    "coupon": None,
    "coupon_reason": "no coupon: the coupon model has not been promoted (it did not beat giving "
    "no coupon on held-out randomized offers, or there is no such history)",
    "send_time": {
        "channel": "email",
        "at_utc": "2026-12-07T13:00:00Z",
        "at_local": "2026-12-07T08:00:00-05:00",
        "timezone": "America/New_York",
        "hour_of_week": 8,
        "confidence": 0.1463,
        "source": "member",
    },
    "churn_risk": 0.1179,
    "tags": ["high_order_value", "warn_activity_down"],
    "lifecycle_stage": "reactivated",
    "value_tier": "silver",
    "rfm_segment": "potential_loyalists",
    "rfm_scores": {"r_score": 5.0, "f_score": 2.0, "m_score": 3.0},
    "parts": {
        "products": {
            "role": "model",
            "version": "1",
            "reason": "ALS, item-item similarity and buy-again blend (1 buy again, "
            "2 similar members)",
            "policy": "hybrid_tuned(item_weight=1.5)",
            "gate_reason": "hybrid_tuned(item_weight=1.5) beats hybrid by +0.01583 "
            "(lower bound +0.007405, z=1.645)",
        },
        "coupon": {
            "role": "baseline",
            "version": "2",
            "reason": "no coupon: the coupon model has not been promoted (it did not "
            "beat giving no coupon on held-out randomized offers, or there "
            "is no such history)",
            "policy": "no_coupon",
            "gate_reason": "no_coupon: simplest policy that could be evaluated",
        },
        "send_time": {
            "role": "baseline",
            "version": "2",
            "reason": "the member's own engagement hours, outside quiet hours, in America/New_York",
            "policy": "member_most_frequent_hour",
            "gate_reason": "member_most_frequent_hour beats global_hour by "
            "+0.3137 (lower bound +0.2764, z=1.645)",
        },
        "churn": {
            "role": "model",
            "version": "1",
            "reason": "12% chance of no purchase within 90 days (calibrated gradient "
            "boosting on the tags and BG/NBD)",
            "policy": "model",
            "gate_reason": "model beats bg_nbd by +0.02073 (lower bound +0.007267, z=1.645)",
        },
        "tags": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "high_order_value: largest order 157.97; warn_activity_down: "
            "orders in the recent window: 1, in the one before: 2",
            "policy": "tag_rules",
            "gate_reason": None,
        },
        "lifecycle_stage": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "reactivated: last purchase 2 days ago, orders in the "
            "recent window: 1, in the one before: 2, member for "
            "1268 days",
            "policy": "tag_rules",
            "gate_reason": None,
        },
        "value_tier": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "silver: 994.78 spent in total; tiers split members by "
            "total spend, top tier first",
            "policy": "tag_rules",
            "gate_reason": None,
        },
        "rfm_segment": {
            "role": "rules",
            "version": "2025-12-31",
            "reason": "potential_loyalists: recency score 5, frequency 2, "
            "monetary 3 (quintiles among buyers, 5 = best)",
            "policy": "tag_rules",
            "gate_reason": None,
        },
    },
    "model_versions": {"products": "1", "coupon": "2", "send_time": "2", "churn": "1"},
    "model_roles": {
        "products": "model",
        "coupon": "baseline",
        "send_time": "baseline",
        "churn": "model",
    },
}

SIMILAR_EXAMPLE: dict[str, Any] = {
    "product_id": "P0170",
    "known_product": True,
    "as_of": "2025-12-31",
    "bought_together": [
        {"product_id": "P0194", "score": 35.0, "together": 35, "reason": "in 35 orders with it"},
        {"product_id": "P0173", "score": 34.0, "together": 34, "reason": "in 34 orders with it"},
        {"product_id": "P0161", "score": 32.0, "together": 32, "reason": "in 32 orders with it"},
    ],
    "similar": [
        {
            "product_id": "P0194",
            "score": 109.0,
            "together": 109,
            "reason": "bought by 109 of its buyers",
        },
        {
            "product_id": "P0069",
            "score": 96.0,
            "together": 96,
            "reason": "bought by 96 of its buyers",
        },
        {
            "product_id": "P0173",
            "score": 85.0,
            "together": 85,
            "reason": "bought by 85 of its buyers",
        },
    ],
    "reason": "most often in the same orders (bought together) and members' histories (similar), "
    "raw counts",
    "role": "baseline",
    "version": "2",
    "policy": "co_occurrence_counts",
    "gate_reason": "co_occurrence_counts: simplest policy that could be evaluated",
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
    reason: str = Field(description="why this answer for this member")
    policy: str = Field(
        description="the policy serving this part: the registered champion's (e.g. "
        "hybrid_tuned(item_weight=1.5), recency_rule, no_coupon) or tag_rules"
    )
    # defaults only so that the OpenAPI example, whose nulls FastAPI drops, validates
    gate_reason: str | None = Field(
        default=None,
        description="why the promotion gate made this policy the champion; null for the "
        "tag rules, which are not gated",
    )


class MemberDecisionPublic(BaseModel):
    """Everything decided for one member, each part with its role, version and reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [DECISION_EXAMPLE]})

    member_id: str
    known_member: bool = Field(description="the store or the products model knows the member")
    as_of: str | None = Field(description="date of the tag snapshot the features come from")
    products: list[ProductPublic] = Field(description="best first")
    coupon: CouponPublic | None = Field(
        default=None, description="null: no coupon is worth its cost"
    )
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
    model_versions: dict[str, str] = Field(
        description="the registered version of every model that made this answer"
    )
    model_roles: dict[str, Role] = Field(description="model or baseline, per model")
    decision_id: str | None = Field(
        default=None,
        description="names this answer in POST /v1/feedback (impressions, clicks, "
        "redemptions); signed by the deployment, so it needs no lookup",
    )
    degraded: bool = Field(
        default=False,
        description="true: the member's online features could not be read in time; the "
        "answer comes from fallbacks (the member's own products and send hour if the models "
        "know them, else popular in the member's country and the segment's send hour; no "
        "coupon, no churn risk or tags)",
    )
    degraded_reason: DegradedReason | None = Field(
        default=None, description="why the answer is degraded; null when it is not"
    )


class NeighbourPublic(BaseModel):
    product_id: str
    score: float = Field(description="the ranking score, comparable within one list")
    together: int = Field(
        ge=0, description="orders (bought_together) or members (similar) holding both products"
    )
    reason: str


class SimilarProductsPublic(BaseModel):
    """Products to show with a product, with the policy serving them and why."""

    model_config = ConfigDict(json_schema_extra={"examples": [SIMILAR_EXAMPLE]})

    product_id: str
    known_product: bool = Field(
        description="an order before the snapshot holds it; false: both lists are empty"
    )
    as_of: str | None = Field(description="date of the snapshot the models were trained to")
    bought_together: list[NeighbourPublic] = Field(description="in the same orders, best first")
    similar: list[NeighbourPublic] = Field(description="bought by the same members, best first")
    reason: str
    role: Role = Field(description="model, or baseline (raw co-occurrence counts)")
    version: str | None = Field(description="the registered model version")
    policy: str = Field(description="the policy serving the lists, e.g. co_occurrence_counts")
    gate_reason: str | None = Field(
        default=None, description="why the promotion gate made it the champion"
    )


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


class ValidationIssue(BaseModel):
    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="where: path, query and the parameter's name")
    msg: str = Field(description="what is wrong, listing the allowed values for an enum")
    type: str


class ErrorPublic(BaseModel):
    """The body of every error answer (401, 403, 404, 413, 429, 500, 503): FastAPI's
    validation-error shape, and the request id to find the request in the logs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": [{"loc": [], "msg": "the API key is not valid or has been "
                                "revoked", "type": "unauthorized"}],
                    "request_id": "3f2c9a1be4d04b5e",
                }
            ]
        }
    )  # fmt: skip

    detail: list[ValidationIssue]
    request_id: str = Field(description="the request's id, as in the X-Request-ID header and the logs")  # fmt: skip


class ValidationErrorPublic(ErrorPublic):
    """The body of a 422: every problem with the request."""


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
    401: {"model": ErrorPublic, "description": "no API key, or one not valid or revoked"},
    403: {"model": ErrorPublic, "description": "the API key's scope does not reach this route"},
    413: {"model": ErrorPublic, "description": "the request body is larger than allowed"},
    429: {"model": ErrorPublic, "description": "the key's rate limit is used up (see Retry-After)"},
    500: {"model": ErrorPublic, "description": "an internal error, logged with the request id"},
}


KEY_EXAMPLE: dict[str, Any] = {
    "key_id": "k3f9a0c21d7",
    "scope": "storefront",
    "shop": None,
    "label": "web shop",
    "created_at": "2026-11-30T09:12:44+00:00",
    "revoked_at": None,
}


class KeyPublic(BaseModel):
    """An API key as the store holds it (never the token)."""

    model_config = ConfigDict(json_schema_extra={"examples": [KEY_EXAMPLE]})

    key_id: str
    scope: KeyScope
    shop: str | None = Field(None, description="the shop it reads; null: the deployment's own home")
    label: str
    created_at: str = Field(description="ISO 8601, UTC")
    revoked_at: str | None = Field(None, description="ISO 8601, UTC; null while the key is active")


class KeysPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": [KEY_EXAMPLE]}]})

    keys: list[KeyPublic]


class KeyCreatedPublic(KeyPublic):
    """A new key and its token, shown this once (only its hash is kept)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**KEY_EXAMPLE, "token": "mw_k3f9a0c21d7_" + "x" * 43}]}
    )

    token: str


class KeyCreate(BaseModel):
    """What a new key reaches, and for which shop."""

    model_config = ConfigDict(extra="forbid")

    scope: KeyScope
    shop: str | None = Field(None, max_length=64, description="a shop of the shops setting")
    label: str = Field("", max_length=200, description="who or what the key is for")


class ReloadPublic(BaseModel):
    """What a reload of the champion models did."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changed": True,
                    "versions": {"products": "4", "churn": "3", "coupon": "3",
                                 "send_time": "3", "similar": "3"},
                    "previous": {"products": "3", "churn": "3", "coupon": "3",
                                 "send_time": "3", "similar": "3"},
                    "detail": "products 3 -> 4",
                }
            ]
        }
    )  # fmt: skip

    changed: bool = Field(description="true: new champions were loaded and swapped in")
    versions: dict[str, str] = Field(description="the champion versions now served, per model")
    previous: dict[str, str] = Field(description="the versions served before")
    detail: str
