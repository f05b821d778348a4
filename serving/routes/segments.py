"""Member selection for marketing: filter members by tags and scores."""

from __future__ import annotations

from typing import Annotated

import duckdb
from fastapi import APIRouter, HTTPException, Query

from features import repo
from features.tags import BOOL_TAGS, LIFECYCLE_STAGES
from serving.deps import ReadyStateDep
from serving.schemas import MemberTagsPublic, SegmentPublic

router = APIRouter(prefix="/v1/segments", tags=["segments"])


@router.get("/members", response_model=SegmentPublic)
def select_members(
    state: ReadyStateDep,
    tag: Annotated[list[str] | None, Query(description=f"all of: {', '.join(BOOL_TAGS)}")] = None,
    lifecycle_stage: Annotated[str | None, Query(description=", ".join(LIFECYCLE_STAGES))] = None,
    rfm_segment: Annotated[str | None, Query()] = None,
    value_tier: Annotated[str | None, Query()] = None,
    min_r: Annotated[int, Query(ge=1, le=5)] = 1,
    min_f: Annotated[int, Query(ge=1, le=5)] = 1,
    min_m: Annotated[int, Query(ge=1, le=5)] = 1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SegmentPublic:
    """Members of the latest snapshot matching every filter given (tags are ANDed)."""
    unknown = sorted(set(tag or []) - set(BOOL_TAGS))
    if unknown:
        raise HTTPException(422, f"unknown tag(s) {unknown}; known tags: {list(BOOL_TAGS)}")
    if lifecycle_stage is not None and lifecycle_stage not in LIFECYCLE_STAGES:
        raise HTTPException(422, f"unknown lifecycle_stage; one of {list(LIFECYCLE_STAGES)}")
    as_of = state.as_of
    if as_of is None or not repo.snapshot_path(state.settings, as_of).exists():
        raise HTTPException(503, "no tag snapshot found: run `memberwise run` first")
    path = repo.snapshot_path(state.settings, as_of)
    where = ["COALESCE(r_score, 0) >= ?", "COALESCE(f_score, 0) >= ?", "COALESCE(m_score, 0) >= ?"]
    params: list[object] = [min_r if min_r > 1 else 0, min_f if min_f > 1 else 0,
                            min_m if min_m > 1 else 0]  # fmt: skip
    for t in tag or []:
        where.append(f'"{t}"')  # validated against BOOL_TAGS above
    for col, val in (("lifecycle_stage", lifecycle_stage), ("rfm_segment", rfm_segment),
                     ("value_tier", value_tier)):  # fmt: skip
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    cond = " AND ".join(where)
    con = duckdb.connect()
    src = f"read_parquet('{path}')"
    row = con.execute(f"SELECT COUNT(*) FROM {src} WHERE {cond}", params).fetchone()
    count = row[0] if row else 0
    rows = con.execute(
        f"SELECT member_id, rfm_segment, lifecycle_stage, value_tier, tags, r_score, f_score, "
        f"m_score FROM {src} WHERE {cond} ORDER BY member_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    con.close()
    members = [
        MemberTagsPublic(
            member_id=r[0],
            rfm_segment=r[1],
            lifecycle_stage=r[2],
            value_tier=r[3],
            tags=[t for t in (r[4] or "").split(",") if t],
            r_score=r[5],
            f_score=r[6],
            m_score=r[7],
        )  # fmt: skip
        for r in rows
    ]
    return SegmentPublic(as_of=as_of, count=int(count), members=members)
