"""A campaign's plan: whom to send which offer (or nothing), on which channel and when.

:class:`CampaignSpec` is what a marketer writes (a YAML file or the API's body):
the target segment, the offers and their expected cost, the budget, eligibility, channels,
the send window, the frequency cap, quiet hours, the holdout and exploration shares.
:func:`plan` turns the spec and the target members into a send list, one row per target
member, deterministic for a given seed:

1. every target member draws an arm at random: ``holdout`` with probability ``h`` (sent
   nothing, measures the campaign), ``explore`` with probability ``e`` (an offer drawn
   uniformly from the campaign's offers, so the next coupon model keeps learning), else
   ``policy``;
2. the policy picks each member's offer that maximises expected incremental margin net of
   cost (only positive ones) and fills the budget greedily by margin per unit of cost (the
   knapsack's classic ratio rule); the budget counts the offers actually made (policy and
   exploration), so the send list never spends more than the budget. Members of the other
   arms are walked in the same order, so ``intended`` says what the policy would have
   given them (the measure of lift compares like with like);
3. every row logs the propensity of each action (``p__none``, ``p__<coupon>`` or
   ``p__message``): the probability the randomisation gave it that action, given its
   intended one. Off-policy estimates of other policies are weighted by these;
4. the channel is the member's preferred one when the campaign uses it, else the
   campaign's first; the send time is the member's send hour (``send_hour`` column, local)
   or the default, moved out of quiet hours, on one of the window's days, converted to UTC
   with the member's ``timezone`` (UTC when unknown). Members who already have
   ``frequency_cap`` messages within 7 days of the window from other campaigns are left
   out, so no member is sent more than the cap in any 7 days.

Pure logic over frames: no files, no settings, no web framework here.

Input frame columns (``targets``): ``member_id``; optional ``coupon_id`` and
``expected_incremental_margin`` (the decision core's best coupon and its margin, net of
cost), ``margin__<coupon>`` / ``cost__<coupon>`` (per-offer margins and costs, preferred
when present), ``preferred_channel``, ``send_hour`` (0..23 local), ``timezone`` (IANA),
``level``, ``value_tier``, ``abuse_risk``, ``lifecycle`` (the report's segment).
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

NONE, MESSAGE = "none", "message"
HOLDOUT, EXPLORE, POLICY = "holdout", "explore", "policy"
CAP_DAYS = 7
_NAMESPACE = uuid.UUID("6f1c2a52-6a55-4df4-9a53-6d656d626572")
SEND_COLUMNS = (
    "decision_id", "campaign", "member_id", "arm", "action", "coupon_id", "intended",
    "champion", "channel", "send_at_utc", "window_days", "expected_cost",
    "expected_incremental_margin", "segment",
)  # fmt: skip


Hour = Annotated[int, Field(ge=0, le=23)]


class CampaignChannel(StrEnum):
    """A channel a campaign sends through."""

    email = "email"
    sms = "sms"
    push = "push"


class Offer(BaseModel):
    """A coupon the campaign may give and its expected cost per member offered (currency:
    the discount expected to be redeemed; the budget counts these)."""

    model_config = ConfigDict(extra="forbid")
    coupon_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    cost: float = Field(ge=0, description="expected cost per member offered, currency")


class Eligibility(BaseModel):
    model_config = ConfigDict(extra="forbid")
    levels: list[str] | None = Field(None, description="member levels allowed (None: all)")
    tiers: list[str] | None = Field(None, description="value tiers allowed (None: all)")
    exclude_abuse_risk: bool = Field(True, description="leave out members at coupon-abuse risk")


class CampaignSpec(BaseModel):
    """A campaign as a marketer writes it (docs/campaigns.md). Unset numbers take the
    settings' ``campaigns`` defaults."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="unique name")
    description: str = Field("", max_length=500)
    segment: str | None = Field(None, max_length=100, description="a saved segment's name")
    predicate: str | None = Field(
        None, max_length=2000, description="inline segment in the tag-rule language"
    )
    offers: list[Offer] = Field(default_factory=list, description="empty: messages only")
    budget: float = Field(0.0, ge=0, description="total expected coupon cost, currency")
    eligibility: Eligibility = Field(default_factory=lambda: Eligibility.model_validate({}))
    channels: list[CampaignChannel] = Field(
        default_factory=lambda: [CampaignChannel.email], min_length=1
    )
    start: date = Field(
        ge=date(1970, 1, 1), le=date(2200, 12, 31), description="first day of the send window"
    )
    send_days: int = Field(1, ge=1, le=31, description="days the sends are spread over")
    frequency_cap: int | None = Field(None, ge=1, description="messages per member per 7 days")
    quiet_hours: tuple[Hour, Hour] | None = Field(
        None, description="[start, end) local hours with no message, e.g. [21, 8]"
    )
    holdout_share: float | None = Field(None, ge=0, lt=1)
    exploration_share: float | None = Field(None, ge=0, lt=1)
    window_days: int | None = Field(None, ge=1, le=90, description="outcome window")

    @model_validator(mode="after")
    def _check(self) -> CampaignSpec:
        ids = [o.coupon_id for o in self.offers]
        if len(set(ids)) != len(ids):
            raise ValueError("an offer is listed twice")
        if NONE in ids or MESSAGE in ids:
            raise ValueError(f"'{NONE}' and '{MESSAGE}' are reserved, not coupon ids")
        if self.segment and self.predicate:
            raise ValueError("give a saved segment or a predicate, not both")
        if self.quiet_hours is not None and not all(0 <= h <= 23 for h in self.quiet_hours):
            raise ValueError("quiet hours are local hours 0..23")
        h, e = self.holdout_share or 0.0, self.exploration_share or 0.0
        if h + e >= 1:
            raise ValueError("holdout_share + exploration_share must be below 1")
        return self


@dataclass(frozen=True)
class Defaults:
    """The settings' campaign defaults (features.settings.CampaignSettings)."""

    holdout_share: float = 0.10
    exploration_share: float = 0.0
    frequency_cap: int = 3
    quiet_hours: tuple[int, int] = (21, 8)
    send_hour: int = 10
    window_days: int = 14
    abuse_threshold: float | None = 0.78


@dataclass(frozen=True)
class Resolved:
    holdout: float
    explore: float
    cap: int
    quiet: tuple[int, int]
    send_hour: int
    window_days: int
    abuse_threshold: float | None


def resolve(spec: CampaignSpec, d: Defaults) -> Resolved:
    r = Resolved(
        holdout=d.holdout_share if spec.holdout_share is None else spec.holdout_share,
        explore=d.exploration_share if spec.exploration_share is None else spec.exploration_share,
        cap=spec.frequency_cap or d.frequency_cap,
        quiet=spec.quiet_hours or d.quiet_hours,
        send_hour=d.send_hour,
        window_days=spec.window_days or d.window_days,
        abuse_threshold=d.abuse_threshold if spec.eligibility.exclude_abuse_risk else None,
    )
    if r.holdout + r.explore >= 1:
        raise ValueError("holdout share + exploration share must be below 1")
    return r


def in_quiet(hour: np.ndarray | int, quiet: tuple[int, int]) -> np.ndarray:
    """Whether local ``hour`` falls in quiet hours ``[start, end)`` (wrapping past midnight
    when start > end; start == end: no quiet hours)."""
    h = np.asarray(hour)
    start, end = quiet
    if start == end:
        return np.zeros(h.shape, dtype=bool)
    if start < end:
        return (h >= start) & (h < end)
    return (h >= start) | (h < end)


def actions(spec: CampaignSpec) -> list[str]:
    """The campaign's actions besides ``none``: its coupons, or ``message`` for a
    messages-only campaign."""
    return [o.coupon_id for o in spec.offers] or [MESSAGE]


def decision_id(campaign: str, seed: int, member_id: str) -> str:
    """Stable id of one member's decision in one plan (the same plan gives the same ids)."""
    return uuid.uuid5(_NAMESPACE, f"{campaign}|{seed}|{member_id}").hex


# ---------------------------------------------------------------------------- selection
def eligible(targets: pd.DataFrame, spec: CampaignSpec, r: Resolved) -> np.ndarray:
    """(n,) bool: members the eligibility rules allow."""
    ok = np.ones(len(targets), dtype=bool)
    el = spec.eligibility
    if el.levels is not None and "level" in targets:
        ok &= targets["level"].isin(el.levels).to_numpy()
    if el.tiers is not None and "value_tier" in targets:
        ok &= targets["value_tier"].isin(el.tiers).to_numpy()
    if r.abuse_threshold is not None and spec.offers and "abuse_risk" in targets:
        risk = pd.to_numeric(targets["abuse_risk"], errors="coerce").fillna(0.0).to_numpy()
        ok &= risk < r.abuse_threshold
    return ok


def capped(
    member_ids: pd.Series, start: date, send_days: int, prior: pd.DataFrame | None, cap: int
) -> np.ndarray:
    """(n,) bool: members who already have ``cap`` messages from other campaigns within
    ``CAP_DAYS`` of this send window (``prior``: member_id, send_at_utc of sent rows)."""
    if prior is None or prior.empty:
        return np.zeros(len(member_ids), dtype=bool)
    lo = pd.Timestamp(start) - pd.Timedelta(days=CAP_DAYS)
    hi = pd.Timestamp(start) + pd.Timedelta(days=send_days + CAP_DAYS)
    t = pd.to_datetime(prior["send_at_utc"])
    near = prior.loc[(t > lo) & (t < hi)]
    counts = near.groupby("member_id").size()
    return member_ids.map(counts).fillna(0).to_numpy() >= cap


def _margins(targets: pd.DataFrame, spec: CampaignSpec) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) expected incremental margin (NaN: unknown) and (n, K) cost per offer."""
    n, k = len(targets), len(spec.offers)
    margin = np.full((n, k), np.nan)
    cost = np.zeros((n, k))
    for j, o in enumerate(spec.offers):
        col = f"margin__{o.coupon_id}"
        if col in targets:
            margin[:, j] = pd.to_numeric(targets[col], errors="coerce").to_numpy(float)
        elif "coupon_id" in targets and "expected_incremental_margin" in targets:
            hit = (targets["coupon_id"] == o.coupon_id).fillna(False).to_numpy(bool)
            m = pd.to_numeric(targets["expected_incremental_margin"], errors="coerce")
            margin[hit, j] = m.to_numpy(float)[hit]
        ccol = f"cost__{o.coupon_id}"
        cost[:, j] = (
            pd.to_numeric(targets[ccol], errors="coerce").fillna(o.cost).to_numpy(float)
            if ccol in targets
            else o.cost
        )
    return margin, cost


def _send_times(
    targets: pd.DataFrame, spec: CampaignSpec, r: Resolved
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) UTC send instants (datetime64[us]) and (n,) local hours, outside quiet hours."""
    n = len(targets)
    hour = np.full(n, r.send_hour, dtype=np.int64)
    if "send_hour" in targets:
        given = pd.to_numeric(targets["send_hour"], errors="coerce").to_numpy(float)
        ok = np.isfinite(given)
        hour[ok] = np.clip(given[ok], 0, 23).astype(np.int64)
    quiet = in_quiet(hour, r.quiet)
    hour[quiet] = r.quiet[1]
    day = np.arange(n) % spec.send_days
    zones = (
        targets["timezone"].fillna("UTC").astype(str).to_numpy()
        if "timezone" in targets
        else np.full(n, "UTC", dtype=object)
    )
    out = np.empty(n, dtype="datetime64[us]")
    for zone in pd.unique(zones):
        try:
            tz = ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo("UTC")
        for i in np.flatnonzero(zones == zone):
            d = spec.start + timedelta(days=int(day[i]))
            local = datetime(d.year, d.month, d.day, int(hour[i]), tzinfo=tz)
            out[i] = np.datetime64(local.astimezone(UTC).replace(tzinfo=None), "us")
    return out, hour


# ---------------------------------------------------------------------------- the plan
def plan(
    targets: pd.DataFrame,
    spec: CampaignSpec,
    defaults: Defaults,
    seed: int = 0,
    prior: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The send list: one row per eligible, uncapped target member, sorted by member id.

    Columns: :data:`SEND_COLUMNS` plus ``p__none`` and ``p__<action>`` for every action
    (probabilities, summing to 1 per row). ``action``: ``none`` (holdout, or the policy
    gave nothing), a coupon id or ``message``; ``coupon_id``: the coupon sent (null for
    none and messages); ``intended``: the policy's choice for the member; ``champion``: the
    decision core's coupon when it is one of the offers, else ``none``; ``channel`` is null
    for members sent nothing; ``send_at_utc`` is set for every row (for members sent
    nothing, when they would have been sent: their outcome window starts there).
    """
    r = resolve(spec, defaults)
    t = targets.drop_duplicates("member_id").sort_values("member_id", kind="stable")
    t = t.reset_index(drop=True)
    keep = eligible(t, spec, r) & ~capped(t["member_id"], spec.start, spec.send_days, prior, r.cap)
    t = t.loc[keep].reset_index(drop=True)
    n = len(t)
    acts = actions(spec)
    k = len(acts)
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    u = rng.random(n)
    explore_pick = rng.integers(0, k, size=n)
    arm = np.where(u < r.holdout, HOLDOUT, np.where(u < r.holdout + r.explore, EXPLORE, POLICY))

    intended = np.full(n, NONE, dtype=object)
    cost_of = np.zeros(n)
    margin_of = np.zeros(n)
    action = np.full(n, NONE, dtype=object)
    if spec.offers:
        margin, cost = _margins(t, spec)
        remaining = spec.budget
        # exploration first: its offers are made whatever the policy does
        for i in np.flatnonzero(arm == EXPLORE):
            j = explore_pick[i]
            if cost[i, j] <= remaining + 1e-9:
                remaining -= cost[i, j]
                action[i] = acts[j]
                cost_of[i] = cost[i, j]
                margin_of[i] = np.nan_to_num(margin[i, j])
        best = np.argmax(np.where(np.isfinite(margin), margin, -np.inf), axis=1)
        best_margin = margin[np.arange(n), best] if n else np.zeros(0)
        best_cost = cost[np.arange(n), best] if n else np.zeros(0)
        cand = np.flatnonzero(np.isfinite(best_margin) & (best_margin > 0))
        ratio = best_margin[cand] / np.maximum(best_cost[cand], 1e-12)
        order = cand[np.lexsort((t["member_id"].to_numpy()[cand], -ratio))]
        for i in order:
            c = best_cost[i]
            if c > remaining + 1e-9:
                continue
            intended[i] = acts[best[i]]
            if arm[i] == POLICY:
                remaining -= c
                action[i] = acts[best[i]]
                cost_of[i] = c
                margin_of[i] = best_margin[i]
    else:
        intended[:] = MESSAGE
        action[arm != HOLDOUT] = MESSAGE

    out = pd.DataFrame({"member_id": t["member_id"].astype(str).to_numpy()})
    out.insert(0, "decision_id", [decision_id(spec.name, seed, m) for m in out["member_id"]])
    out.insert(1, "campaign", spec.name)
    out["arm"] = arm
    out["action"] = action
    out["coupon_id"] = pd.Series(action, dtype=object).where(
        ~pd.Series(action).isin([NONE, MESSAGE]), None
    )
    out["intended"] = intended
    champ = t["coupon_id"] if "coupon_id" in t else pd.Series([None] * n)
    out["champion"] = champ.where(champ.isin(acts), NONE).fillna(NONE).astype(str).to_numpy()
    pref = t["preferred_channel"] if "preferred_channel" in t else pd.Series([None] * n)
    chans = [c.value for c in spec.channels]
    channel = pref.where(pref.isin(chans), chans[0]).to_numpy(object)
    channel[action == NONE] = None
    out["channel"] = channel
    send_at, _ = _send_times(t, spec, r)
    out["send_at_utc"] = pd.to_datetime(send_at)
    out["window_days"] = r.window_days
    out["expected_cost"] = cost_of
    out["expected_incremental_margin"] = margin_of
    seg = t["lifecycle"] if "lifecycle" in t else pd.Series(["all"] * n)
    out["segment"] = seg.fillna("unknown").astype(str).to_numpy()
    # propensities: P(action | intended) under the randomisation
    rest = 1.0 - r.holdout - r.explore
    out["p__none"] = r.holdout + rest * (intended == NONE)
    for a in acts:
        out[f"p__{a}"] = r.explore / k * bool(spec.offers) + rest * (intended == a)
    return out


def summary(sends: pd.DataFrame, spec: CampaignSpec, targeted: int | None = None) -> dict:
    """Counts and money of a send list: members by arm and action, expected cost against
    the budget, expected incremental margin, the realised holdout share."""
    n = len(sends)
    by_action = sends["action"].value_counts().to_dict()
    return {
        "campaign": spec.name,
        "members": n,
        "targeted": targeted if targeted is not None else n,
        "by_arm": {a: int(sends["arm"].eq(a).sum()) for a in (POLICY, EXPLORE, HOLDOUT)},
        "by_action": {str(k): int(v) for k, v in sorted(by_action.items())},
        "sent": int(sends["channel"].notna().sum()),
        "budget": float(spec.budget),
        "expected_cost": round(float(sends["expected_cost"].sum()), 2),
        "expected_incremental_margin": round(float(sends["expected_incremental_margin"].sum()), 2),
        "holdout_share": float(sends["arm"].eq(HOLDOUT).mean()) if n else 0.0,
    }
