"""Member selection for marketing: filter the latest snapshot's members by tags and scores."""

from __future__ import annotations

from typing import Annotated

import duckdb
from fastapi import APIRouter, HTTPException, Query

from features import repo
from serving.deps import ReadyStateDep, SettingsDep
from serving.logs import audit
from serving.schemas import MemberTagsPublic, SegmentPublic, example_of
from serving.security import KeyDep
from serving.vocabulary import LifecycleStage, RfmSegment, Tag, ValueTier

router = APIRouter(prefix="/segments", tags=["segments"])

Score = Annotated[int, Query(ge=1, le=5)]
MAX_OFFSET = 2**62  # past any member count; DuckDB's OFFSET is a signed 64-bit integer


@router.get("/members", response_model=SegmentPublic, responses=example_of(SegmentPublic))
def select_members(
    state: ReadyStateDep,
    key: KeyDep,
    settings: SettingsDep,
    tag: Annotated[list[Tag] | None, Query(description="rule tags, all must hold")] = None,
    lifecycle_stage: Annotated[LifecycleStage | None, Query()] = None,
    rfm_segment: Annotated[RfmSegment | None, Query()] = None,
    value_tier: Annotated[ValueTier | None, Query()] = None,
    min_r: Score = 1,
    min_f: Score = 1,
    min_m: Score = 1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SegmentPublic:
    """Members of the latest snapshot matching every filter given (tags are ANDed; a
    minimum score above 1 leaves out members without a purchase)."""
    as_of = state.as_of
    if as_of is None or not repo.snapshot_path(state.settings, as_of).exists():
        raise HTTPException(503, "no tag snapshot found: run `memberwise run` first")
    path = str(repo.snapshot_path(state.settings, as_of))
    where = ["COALESCE(r_score, 0) >= ?", "COALESCE(f_score, 0) >= ?", "COALESCE(m_score, 0) >= ?"]
    params: list[object] = [min_r if min_r > 1 else 0, min_f if min_f > 1 else 0,
                            min_m if min_m > 1 else 0]  # fmt: skip
    # tag columns are named by the enum's values, never by the request's text
    where += [f'"{Tag(t).value}"' for t in dict.fromkeys(tag or [])]
    for col, val in (("lifecycle_stage", lifecycle_stage), ("rfm_segment", rfm_segment),
                     ("value_tier", value_tier)):  # fmt: skip
        if val is not None:
            where.append(f"{col} = ?")
            params.append(str(val))
    cond = " AND ".join(where)
    with duckdb.connect() as con:
        row = con.execute(
            f"SELECT COUNT(*) FROM read_parquet(?) WHERE {cond}", [path, *params]
        ).fetchone()
        rows = con.execute(
            "SELECT member_id, rfm_segment, lifecycle_stage, value_tier, tags, r_score, "
            f"f_score, m_score FROM read_parquet(?) WHERE {cond} "
            "ORDER BY member_id LIMIT ? OFFSET ?",
            [path, *params, limit, offset],
        ).fetchall()
    members = [
        MemberTagsPublic(
            member_id=r[0],
            rfm_segment=RfmSegment(r[1]) if r[1] else None,
            lifecycle_stage=LifecycleStage(r[2]) if r[2] else None,
            value_tier=ValueTier(r[3]) if r[3] else None,
            tags=[Tag(t) for t in (r[4] or "").split(",") if t],
            r_score=r[5],
            f_score=r[6],
            m_score=r[7],
        )
        for r in rows
    ]
    filters = {"tag": [str(t) for t in tag or []], "lifecycle_stage": lifecycle_stage,
               "rfm_segment": rfm_segment, "value_tier": value_tier, "min_r": min_r,
               "min_f": min_f, "min_m": min_m, "limit": limit, "offset": offset}  # fmt: skip
    audit("export", key.key_id, settings, route="/v1/segments/members",
          shop=key.shop, members=len(members), filters=filters)  # fmt: skip
    return SegmentPublic(as_of=as_of, count=int(row[0]) if row else 0, members=members)
