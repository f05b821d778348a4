"""The member 360: everything the member store knows about one member, with the reason each
tag holds, read from the member table the last run published."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import Any

import duckdb
from fastapi import APIRouter, HTTPException

from features.member_store import StoreEmpty
from features.settings import MemberwiseSettings
from serving.deps import MemberStoreDep, SettingsDep
from serving.routes.members import MemberId  # one definition of the path parameter
from serving.schemas import example_of
from serving.segment_schemas import (
    ChurnPublic,
    LevelPointPublic,
    OrderPublic,
    ProfilePublic,
    RfmPublic,
    TagReasonPublic,
)

router = APIRouter(prefix="/members", tags=["members"])

PERSONAL = ("email", "phone", "name", "first_name", "last_name", "address", "postcode", "birthday")  # fmt: skip
"""Member-table columns holding personal data: shown masked, never in clear."""


@router.get("/{member_id}/profile", response_model=ProfilePublic, responses=example_of(ProfilePublic))  # fmt: skip
def profile(member_id: MemberId, store: MemberStoreDep, settings: SettingsDep) -> ProfilePublic:
    """Every tag with its reason, level and growth value with their history, RFM, lifecycle,
    churn risk with its main driver, expected value over 12 months, the expected next order
    date, preferred channel and active hours, recent orders; personal fields masked."""
    try:
        row = store.member(member_id)
    except StoreEmpty as exc:
        raise HTTPException(503, str(exc)) from None
    if row is None:
        raise HTTPException(404, f"member {member_id!r} is not in the member table")
    return build_profile(row, level_history(settings, member_id))


def build_profile(row: dict[str, Any], history: list[LevelPointPublic]) -> ProfilePublic:
    """The profile of one member-table row (``history``: the level at each run)."""
    reasons = _json(row.get("tag_reasons"))
    tags = [str(t) for t in (row.get("tags") or [])]
    return ProfilePublic(
        member_id=str(row["member_id"]),
        as_of=_str(row.get("as_of")),
        tag_version=_str(row.get("tag_version")),
        tags=[
            TagReasonPublic(tag=t, reason=str(reasons.get(t, "")).removeprefix(f"{t}: "))
            for t in tags
        ],  # fmt: skip
        level=_str(row.get("level")),
        growth_value=_float(row.get("growth_value")),
        level_history=history,
        rfm=RfmPublic(
            segment=_str(row.get("rfm_segment")),
            r_score=_int(row.get("r_score")),
            f_score=_int(row.get("f_score")),
            m_score=_int(row.get("m_score")),
            recency_days=_float(row.get("recency_days")),
            frequency=_float(row.get("frequency")),
            monetary=_float(row.get("monetary")),
        ),
        lifecycle=_str(row.get("lifecycle")),
        value_tier=_str(row.get("value_tier")),
        churn=ChurnPublic(
            risk=_float(row.get("churn_risk")),
            driver=_str(row.get("churn_driver")),
            recall_action=_str(row.get("recall_action")),
        ),  # fmt: skip
        clv_12m=_float(row.get("clv_12m")),
        expected_next_order_date=next_order_date(row),
        preferred_channel=_str(row.get("preferred_channel")),
        active_hours=active_hours(row),
        recent_orders=[OrderPublic(**o) for o in _orders(row.get("recent_orders"))],
        personal={c: mask(str(row[c])) for c in PERSONAL if row.get(c) not in (None, "")},
    )


def next_order_date(row: dict[str, Any]) -> date | None:
    """The last order plus the member's own cycle: ``expected_next_order_date`` when the table
    carries it, else the usual gap (``usual_cycle_days``), else (last - first) / (orders - 1);
    None with fewer than two orders."""
    given = row.get("expected_next_order_date")
    if isinstance(given, date):
        return given
    if isinstance(given, str) and given:
        return date.fromisoformat(given[:10])
    last, first, orders = row.get("last_order_date"), row.get("first_order_date"), _int(row.get("orders"))  # fmt: skip
    if not isinstance(last, date) or not orders or orders < 2:
        return None
    cycle = _float(row.get("usual_cycle_days"))
    if cycle is None and isinstance(first, date):
        cycle = (last - first).days / (orders - 1)
    return None if cycle is None else last + timedelta(days=round(cycle))


def active_hours(row: dict[str, Any], top: int = 3) -> list[int]:
    """Hours of day the member engages most: from ``engagement_how`` (JSON hour-of-week ->
    count) when present, else the single ``active_hour``."""
    how = _json(row.get("engagement_how"))
    if how:
        by_hour: dict[int, float] = {}
        for k, c in how.items():
            by_hour[int(k) % 24] = by_hour.get(int(k) % 24, 0.0) + float(c)
        return [h for h, _ in sorted(by_hour.items(), key=lambda hc: (-hc[1], hc[0]))[:top]]
    hour = _int(row.get("active_hour"))
    return [] if hour is None else [hour]


def mask(value: str) -> str:
    """``jane@example.com`` -> ``j***@***``; anything else keeps its first character."""
    if "@" in value:
        return value[:1] + "***@***"
    return value[:1] + "***" if value else ""


def level_history(settings: MemberwiseSettings, member_id: str) -> list[LevelPointPublic]:
    """The member's level and growth value at each run, oldest first ([] when not kept)."""
    from features.levels import history_dir

    folder = history_dir(settings)  # one snapshot per run, written by features.levels
    if not folder.exists() or not any(folder.glob("as_of=*.parquet")):
        return []
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT CAST(CAST(event_timestamp AS DATE) AS VARCHAR), level, growth_value "
            "FROM read_parquet(?) WHERE member_id = ? ORDER BY event_timestamp",
            [str(folder / "as_of=*.parquet"), member_id],
        ).fetchall()
    return [LevelPointPublic(as_of=a, level=lv, growth_value=_float(g)) for a, lv, g in rows]


def _orders(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else _json(value) or []
    out = []
    for o in items if isinstance(items, list) else []:
        if isinstance(o, dict) and "order_id" in o:
            out.append({"order_id": str(o["order_id"]), "date": str(o.get("date", ""))[:10],
                        "amount": _float(o.get("amount"))})  # fmt: skip
    return out


def _json(value: Any) -> Any:
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, (dict, list)) else {}


def _str(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _int(v: Any) -> int | None:
    f = _float(v)
    return None if f is None else int(f)
