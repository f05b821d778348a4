"""Per-member decisions for the storefront: products, coupon, send time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query

from features import repo
from serving.deps import ReadyStateDep, SettingsDep
from serving.schemas import CouponPublic, ProductPublic, RecommendationsPublic, SendTimePublic
from serving.state import as_float

router = APIRouter(prefix="/v1/members", tags=["members"])

MemberId = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$",
         description="the shop's member id"),
]  # fmt: skip


@router.get("/{member_id}/recommendations", response_model=RecommendationsPublic)
def recommendations(
    member_id: MemberId,
    state: ReadyStateDep,
    settings: SettingsDep,
    n: Annotated[
        int | None,
        Query(
            ge=1,
            description="number of products (default serving.default_products, "
            "at most serving.max_products)",
        ),
    ] = None,
    channel: Annotated[
        str | None, Query(description="force a channel, one of send_time.message_channels")
    ] = None,
) -> RecommendationsPublic:
    """Products (best first), the coupon that moves this member most net of its cost (or
    none, with the reason) and the next good moment to message them.

    An unknown member gets a cold-start answer (popular products, no coupon, the global
    send time), not an error.
    """
    n = n if n is not None else settings.serving.default_products
    if n > settings.serving.max_products:
        raise HTTPException(422, f"n={n} is above the maximum of {settings.serving.max_products}")
    channels = settings.send_time.message_channels
    if channel is not None and channel not in channels:
        raise HTTPException(422, f"unknown channel {channel!r}; one of {list(channels)}")
    champions = state.champions
    assert champions is not None
    feats = state.member_features(member_id)
    known = feats is not None or champions.products.known_member(member_id)

    products = [
        ProductPublic(product_id=p, score=float(s), reason=r)
        for p, s, r in champions.products.recommend(member_id, n=n)
    ]

    coupon: CouponPublic | None = None
    if feats is None:
        coupon_reason = "unknown member: no coupon until the member has history"
    else:
        x = np.array([as_float(feats.get(f)) for f in repo.COUPON_FEATURES], dtype=float)
        coupon_id, margin, coupon_reason = champions.coupon.decide(x)
        if champions.roles.get("coupon") == "baseline":
            coupon_reason = (
                "no coupon: the coupon model has not been promoted (it did not beat giving "
                "no coupon on held-out randomized offers, or there is no such history)"
            )
        if coupon_id:
            coupon = CouponPublic(
                coupon_id=coupon_id, expected_incremental_margin=float(margin), reason=coupon_reason
            )

    f = feats or {}
    st = champions.send_time.next_send(
        member_id,
        datetime.now(UTC),
        channel=channel,
        segment=f.get("rfm_segment"),
        timezone=f.get("timezone"),
    )
    send = SendTimePublic(
        channel=st.channel,
        at_utc=st.at_utc,
        at_local=st.at_local,
        timezone=st.timezone,
        hour_of_week=int(st.hour_of_week),
        confidence=float(st.confidence),
        source=st.source,
    )
    return RecommendationsPublic(
        member_id=member_id,
        known_member=known,
        products=products,
        coupon=coupon,
        coupon_reason=coupon_reason,
        send_time=send,
        model_versions=champions.versions,
        model_roles=champions.roles,
    )
