"""Members' events as they happen: POST /v1/events updates the member's online features at
once (serving.events), re-evaluates their tags and publishes the changes to the broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from features.events import EventType, MemberEvent
from features.rules import live_rules_path
from serving import events
from serving.deps import SettingsDep, StateDep
from serving.schemas import ID_MAX_LENGTH, ID_PATTERN, example_of
from serving.vocabulary import Channel

router = APIRouter(prefix="/events", tags=["events"])

MAX_AMOUNT = 1e9  # larger amounts are refused as input errors, not stored


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class EventIn(BaseModel):
    """One member event. ``amount`` (the order's value, in the shop's currency) is required
    for a purchase or a return; ``ts`` defaults to the time the event is received."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"member_id": "M00651", "type": "purchase",
                                         "amount": 42.5, "order_id": "O-9001"}]},
    )  # fmt: skip

    member_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    type: EventType
    ts: Annotated[datetime | None, AfterValidator(lambda v: None if v is None else _aware(v))] = (
        None
    )
    amount: float = Field(0.0, ge=0, le=MAX_AMOUNT, description="order value (purchase, return)")
    order_id: str | None = Field(None, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    product_id: str | None = Field(None, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    quantity: float = Field(1.0, gt=0, le=1e6)
    channel: Channel | None = Field(None, description="the message's channel (open, click)")

    @model_validator(mode="after")
    def _amount_for_orders(self) -> EventIn:
        if self.type in (EventType.purchase, EventType.return_) and self.amount <= 0:
            raise ValueError(f"a {self.type} event needs an amount above 0")
        return self


class EventAcceptedPublic(BaseModel):
    """What the event changed. ``visible``: the member's online features were updated (a
    known member); ``added`` / ``removed``: tags the event changed; ``published``: the change
    reached the broker."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "member_id": "M00651", "type": "purchase", "visible": True, "added": [],
            "removed": ["dormant"], "lifecycle_stage": "reactivated", "recency_days": 0.0,
            "dormant": False, "published": True}]},
    )  # fmt: skip

    member_id: str
    type: EventType
    visible: bool
    added: list[str]
    removed: list[str]
    lifecycle_stage: str | None
    recency_days: float | None
    dormant: bool | None
    published: bool


@router.post("", response_model=EventAcceptedPublic, responses=example_of(EventAcceptedPublic))
async def post_event(body: EventIn, state: StateDep, settings: SettingsDep) -> EventAcceptedPublic:
    """Record a member's event: purchase, return, view, cart, login, open or click."""
    ts = body.ts or events.now()
    event = MemberEvent(
        member_id=body.member_id, type=body.type, ts=ts, amount=body.amount,
        order_id=body.order_id, product_id=body.product_id, quantity=body.quantity,
        channel=None if body.channel is None else str(body.channel),
    )  # fmt: skip
    store = getattr(state.features, "store", None)
    rules = live_rules_path(settings)
    out = await run_in_threadpool(events.record, settings, store, event, rules)
    if out.erased:
        raise HTTPException(status_code=410, detail="this member was erased")
    if out.added or out.removed:
        out.published = await events.publish(settings.events, events.change_message(out, ts))
    return EventAcceptedPublic(
        member_id=out.member_id, type=body.type, visible=out.visible, added=out.added,
        removed=out.removed, lifecycle_stage=out.lifecycle_stage,
        recency_days=out.recency_days, dormant=out.dormant, published=out.published,
    )  # fmt: skip
