"""Campaigns: plan one (``POST /v1/campaigns``), read its plan, send list and report, and
record what happened to each decision (``POST /v1/feedback``). Plans and feedback live
under ``STATE_DIR/campaigns`` (features.campaign_store); the report is written by
``memberwise campaign report`` once the outcomes have arrived."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from features import campaign_store as store
from features.campaign_targets import NoMembers
from features.rules import RuleError
from models.campaign import CampaignSpec
from serving import campaign_plans
from serving.deps import StateDep

router = APIRouter(tags=["campaigns"])

_SUMMARY_EXAMPLE: dict[str, Any] = {
    "campaign": "spring-winback", "members": 1200, "targeted": 1250,
    "by_arm": {"policy": 1080, "explore": 0, "holdout": 120},
    "by_action": {"AMT5": 140, "PCT10": 260, "none": 800}, "sent": 400, "budget": 500.0,
    "expected_cost": 492.0, "expected_incremental_margin": 611.4, "holdout_share": 0.1,
    "seed": 0,
}  # fmt: skip


class CampaignPlanRequest(CampaignSpec):
    """A campaign (docs/campaigns.md) and the seed of its random draws."""

    seed: int = Field(0, ge=0, description="the same spec and seed give the same plan")


class CampaignSummaryPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})
    campaign: str
    members: int = Field(description="members in the send list (eligible, under the cap)")
    targeted: int = Field(description="members of the segment")
    by_arm: dict[str, int]
    by_action: dict[str, int]
    sent: int = Field(description="members sent a message")
    budget: float
    expected_cost: float = Field(description="never above the budget")
    expected_incremental_margin: float
    holdout_share: float
    seed: int


class SendPublic(BaseModel):
    decision_id: str
    member_id: str
    arm: str = Field(description="policy, explore or holdout")
    action: str = Field(description="a coupon id, message or none")
    channel: str | None
    send_at_utc: datetime
    expected_cost: float
    propensity: float = Field(description="probability the randomisation gave this action")


class CampaignPlanPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"summary": _SUMMARY_EXAMPLE, "sends": [{
            "decision_id": "0b7f3c0e5d8a4a2f9c1e6b7d8a9f0c1d", "member_id": "M00042",
            "arm": "policy", "action": "PCT10", "channel": "email",
            "send_at_utc": "2026-01-05T09:00:00Z", "expected_cost": 1.2, "propensity": 0.9}]}]}
    )  # fmt: skip
    summary: CampaignSummaryPublic
    sends: list[SendPublic] = Field(description="the first rows of the send list")


class FeedbackKind(StrEnum):
    impression = "impression"
    click = "click"
    redemption = "redemption"


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: str = Field(
        min_length=1,
        max_length=2_000,
        pattern=r"^([0-9a-f]{32}|api1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$",
        description="a campaign send list's decision id, or the decision_id of a member "
        "decision the API answered",
    )
    kind: FeedbackKind
    ts: datetime


class FeedbackRequest(BaseModel):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=10_000)


class FeedbackPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"recorded": 2}]})
    recorded: int


def _sends(frame: Any, limit: int) -> list[SendPublic]:
    rows = frame.head(limit)
    out = []
    for r in rows.itertuples(index=False):
        p = getattr(r, f"p__{r.action}") if hasattr(r, f"p__{r.action}") else r.p__none
        out.append(SendPublic(decision_id=r.decision_id, member_id=r.member_id, arm=r.arm,
                              action=r.action, channel=r.channel, send_at_utc=r.send_at_utc,
                              expected_cost=float(r.expected_cost), propensity=float(p)))  # fmt: skip
    return out


@router.post("/campaigns", response_model=CampaignPlanPublic, status_code=201,
             responses={201: {"content": {"application/json": {"example":
                        CampaignPlanPublic.model_config["json_schema_extra"]["examples"][0]}}}})  # type: ignore[index]  # fmt: skip
def plan_campaign(body: CampaignPlanRequest, state: StateDep) -> CampaignPlanPublic:
    """Plan a campaign over its segment and save it: members and offers chosen for the
    most expected incremental margin within the budget, a random holdout, every member's
    propensities, send times under the frequency cap and quiet hours."""
    spec = CampaignSpec.model_validate(body.model_dump(exclude={"seed"}))
    try:
        sends, info = campaign_plans.plan_campaign(state.settings, spec, seed=body.seed)
    except NoMembers as exc:
        raise HTTPException(503, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    except RuleError as exc:
        raise HTTPException(422, f"predicate: {exc}") from exc
    return CampaignPlanPublic(summary=CampaignSummaryPublic(**info), sends=_sends(sends, 20))


@router.get("/campaigns", response_model=list[CampaignSummaryPublic],
            responses={200: {"content": {"application/json": {"example": [_SUMMARY_EXAMPLE]}}}})  # fmt: skip
def list_campaigns(state: StateDep) -> list[CampaignSummaryPublic]:
    """Every saved campaign's summary."""
    return [CampaignSummaryPublic(**{k: v for k, v in c.items() if k != "measured"})
            for c in store.list_campaigns(state.settings)]  # fmt: skip


@router.get("/campaigns/{name}", response_model=CampaignPlanPublic,
            responses={200: {"content": {"application/json": {"example":
                       CampaignPlanPublic.model_config["json_schema_extra"]["examples"][0]}}}})  # type: ignore[index]  # fmt: skip
def get_campaign(
    name: str, state: StateDep,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CampaignPlanPublic:  # fmt: skip
    """A saved campaign's summary and a page of its send list."""
    try:
        _, sends, info = store.load_plan(state.settings, name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    return CampaignPlanPublic(summary=CampaignSummaryPublic(**info),
                              sends=_sends(sends.iloc[offset:], limit))  # fmt: skip


@router.get("/campaigns/{name}/report", responses={200: {"content": {"application/json": {
    "example": {"campaign": "spring-winback", "confidence": 0.95, "offers": {"PCT10": {
        "n_treated": 260, "n_control": 30, "converted": {"lift": 0.08, "se": 0.03,
        "low": 0.02, "high": 0.14}}}}}}}})  # fmt: skip
def campaign_report(name: str, state: StateDep) -> dict[str, Any]:
    """The campaign's measured report (treated against holdout, policies' values); 404
    until ``memberwise campaign report NAME`` has measured it."""
    try:
        store.load_plan(state.settings, name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    report = store.load_report(state.settings, name)
    if report is None:
        raise HTTPException(404, f"campaign {name!r} has not been measured yet: run "
                            f"`memberwise campaign report {name} --data SHOP`")  # fmt: skip
    return report


@router.post("/feedback", response_model=FeedbackPublic, status_code=201,
             responses={201: {"content": {"application/json": {"example": {"recorded": 2}}}}})  # fmt: skip
def record_feedback(body: FeedbackRequest, state: StateDep) -> FeedbackPublic:
    """Impressions, clicks and redemptions of decisions, by decision id (all or nothing:
    an unknown id is a 404 and nothing is recorded)."""
    try:
        n = store.record_feedback(state.settings, [e.model_dump(mode="json") for e in body.events])
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    return FeedbackPublic(recorded=n)
