"""Per-member decisions for the storefront: products, coupon, send time, churn risk, tags
and segments, each with its role, version and reason (composed by models.decision)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints

from features import decision_ids
from models.decision import MemberDecision
from serving.deps import NowDep, ReadyStateDep, SettingsDep
from serving.fallback import count_degraded
from serving.schemas import (
    CATEGORY_MAX_LENGTH,
    CATEGORY_PATTERN,
    ID_MAX_LENGTH,
    ID_PATTERN,
    CouponPublic,
    MemberDecisionPublic,
    PartPublic,
    ProductPublic,
    RfmScoresPublic,
    SendTimePublic,
    example_of,
)
from serving.vocabulary import (
    Channel,
    DecisionPart,
    DegradedReason,
    LifecycleStage,
    ProductReason,
    RfmSegment,
    Role,
    SendSource,
    Tag,
    ValueTier,
)

router = APIRouter(prefix="/members", tags=["members"])

MemberId = Annotated[
    str,
    Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN,
         description="the shop's member id", examples=["M00651"]),
]  # fmt: skip
MAX_EXCLUDED = 100  # product ids one request may exclude
ExcludedId = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH,
                                              pattern=ID_PATTERN)]  # fmt: skip


@router.get(
    "/{member_id}/recommendations",
    response_model=MemberDecisionPublic,
    responses=example_of(MemberDecisionPublic),
)
def recommendations(
    member_id: MemberId,
    state: ReadyStateDep,
    settings: SettingsDep,
    now: NowDep,
    n: Annotated[
        int | None,
        Query(
            ge=1,
            description="number of products (default serving.default_products, "
            "at most serving.max_products)",
        ),
    ] = None,
    channel: Annotated[
        Channel | None,
        Query(description="force a message channel (one of send_time.message_channels)"),
    ] = None,
    category: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=CATEGORY_MAX_LENGTH,
            pattern=CATEGORY_PATTERN,
            description="only products of this category (the products table's category, "
            "exact match); a category no product has gives an empty list",
            examples=["books"],
        ),
    ] = None,
    exclude: Annotated[
        list[ExcludedId] | None,
        Query(
            max_length=MAX_EXCLUDED,
            description=f"product ids never to recommend, e.g. what is already in the basket "
            f"(repeat the parameter: exclude=P0021&exclude=P0166; at most {MAX_EXCLUDED})",
        ),
    ] = None,
) -> MemberDecisionPublic:
    """Products (best first), the coupon that moves this member most net of its cost (or
    none, with the reason), the next good moment to message them, their churn risk, rule
    tags, lifecycle stage, value tier and RFM segment; ``parts`` gives each one's role
    (model, baseline or rules), version and reason.

    A member with no purchase yet gets what members of their country buy most (reason
    ``popular_in_segment``); an unknown member gets a cold-start answer (popular products,
    no coupon, a segment or the global send time, no churn risk or tags), not an error.
    ``category`` and ``exclude`` filter the products; a filtered list is filled from the
    member's segment's and the shop's popular products of the same filter.
    """
    n = n if n is not None else settings.serving.default_products
    if n > settings.serving.max_products:
        raise invalid("n", n, f"n={n} is above the maximum of {settings.serving.max_products}")
    channels = settings.send_time.message_channels
    if channel is not None and str(channel) not in channels:
        raise invalid("channel", str(channel), f"unknown channel; one of {list(channels)}")
    decider = state.decider  # taken once: a reload swaps in a new one whole
    assert decider is not None
    read = state.read_member(member_id)
    forced = str(channel) if channel is not None else None
    excluded = tuple(exclude or ())
    if read.reason is None:
        decision = decider.decide(
            member_id, read.features, now, n_products=n, channel=forced, category=category,
            exclude=excluded,
        )  # fmt: skip
    else:
        count_degraded(read.reason)
        decision = decider.decide_fallback(
            member_id, state.fallback_profile(member_id), now, n_products=n, channel=forced,
            category=category, exclude=excluded, why=DEGRADED_WHY[read.reason],
        )  # fmt: skip
    as_of = decider.as_of if decider.as_of is not None else state.as_of
    answer = public(decision, as_of, read.reason)
    answer.decision_id = decision_ids.mint(
        state.settings, member_id, now, decision.coupon.coupon_id, answer.model_versions
    )
    return answer


# what a degraded answer's reasons say about the online store
DEGRADED_WHY: dict[DegradedReason, str] = {
    DegradedReason.STORE_TIMEOUT: "the online store did not answer within the time budget",
    DegradedReason.STORE_ERROR: "the online store failed the read",
    DegradedReason.CIRCUIT_OPEN: "the online store is failing; reads resume by themselves",
    DegradedReason.STORE_NOT_CONNECTED: "the online store is not open yet; retrying",
}


def invalid(name: str, value: object, msg: str) -> RequestValidationError:
    """A 422 with the same typed body as FastAPI's own validation errors."""
    return RequestValidationError([
        {"type": "value_error", "loc": ("query", name), "msg": msg, "input": value}
    ])  # fmt: skip


def public(
    d: MemberDecision, as_of: str | None, degraded: DegradedReason | None = None
) -> MemberDecisionPublic:
    """The API's view of a decision (``degraded``: why it came from fallbacks)."""
    st, c, rfm = d.send_time, d.coupon, d.rfm_segment
    champions = {k: v for k, v in d.parts().items() if v.role != "rules"}
    return MemberDecisionPublic(
        member_id=d.member_id,
        known_member=d.known_member,
        as_of=as_of,
        products=[
            ProductPublic(product_id=p.product_id, score=p.score, reason=ProductReason(p.reason))
            for p in d.products.items
        ],
        coupon=None
        if c.coupon_id is None
        else CouponPublic(
            coupon_id=c.coupon_id,
            expected_incremental_margin=c.expected_incremental_margin,
            reason=c.reason,
        ),  # fmt: skip
        coupon_reason=c.reason,
        send_time=SendTimePublic(
            channel=Channel(st.channel),
            at_utc=st.at_utc,
            at_local=st.at_local,
            timezone=st.timezone,
            hour_of_week=st.hour_of_week,
            confidence=st.confidence,
            source=SendSource(st.source),
        ),  # fmt: skip
        churn_risk=d.churn.risk,
        tags=[Tag(t) for t in d.tags.tags],
        lifecycle_stage=LifecycleStage(stage) if (stage := d.lifecycle_stage.value) else None,
        value_tier=ValueTier(tier) if (tier := d.value_tier.value) else None,
        rfm_segment=RfmSegment(rfm.segment) if rfm.segment else None,
        rfm_scores=RfmScoresPublic(r_score=rfm.r_score, f_score=rfm.f_score, m_score=rfm.m_score),
        parts={
            DecisionPart(name): PartPublic(
                role=Role(p.role),
                version=p.version,
                reason=p.reason,
                policy=p.policy,
                gate_reason=p.gate_reason,
            )
            for name, p in d.parts().items()
        },
        model_versions={k: v.version or "" for k, v in champions.items()},
        model_roles={k: Role(v.role) for k, v in champions.items()},
        degraded=degraded is not None,
        degraded_reason=degraded,
    )
