"""Member selection for marketing: predicate queries over the member store with figures and
cursor pages, saved versioned segments, streamed exports and lookalikes; and the older GET
that filters the latest tag snapshot by tags and scores."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import duckdb
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from features import repo
from features.member_store import (
    CURSOR_PATTERN,
    MemberStore,
    Page,
    QueryTimeout,
    SavedSegment,
    SegmentNotFound,
    StoreEmpty,
    rows_for_json,
)
from features.predicates import PredicateError
from features.rules import Expr
from serving.deps import MemberStoreDep, ReadyStateDep, SettingsDep
from serving.logs import audit
from serving.schemas import MemberTagsPublic, SegmentPublic, example_of
from serving.security import KeyDep
from serving.segment_schemas import (
    BreakdownPublic,
    ExportFormat,
    ExportRequest,
    KpisPublic,
    LookalikeMemberPublic,
    LookalikePublic,
    LookalikeRequest,
    SavedSegmentPublic,
    SavedSegmentsPublic,
    SegmentMemberPublic,
    SegmentQuery,
    SegmentResultPublic,
    SegmentSave,
)
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


# --------------------------------------------------------------------------- member store
def store_errors(exc: Exception) -> Exception:
    """The HTTP error for a member-store failure (re-raises what is not one)."""
    if isinstance(exc, PredicateError):
        return RequestValidationError([
            {"type": "value_error", "loc": ("body", "predicate", exc.node), "msg": exc.message,
             "input": None}
        ])  # fmt: skip
    if isinstance(exc, StoreEmpty):
        return HTTPException(503, str(exc))
    if isinstance(exc, QueryTimeout):
        return HTTPException(503, f"{exc}: narrow the segment or raise segments.query_timeout_s")  # fmt: skip
    if isinstance(exc, SegmentNotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, ValueError):
        return RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": str(exc), "input": None}])  # fmt: skip
    return exc


@contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except (PredicateError, StoreEmpty, QueryTimeout, SegmentNotFound, ValueError) as exc:
        raise store_errors(exc) from None


def result_public(store: MemberStore, expr: Expr | None, cursor: str | None, limit: int) -> SegmentResultPublic:  # fmt: skip
    s = store.summary(expr)
    page = store.page(expr, cursor, limit) if limit else Page([], None)
    return SegmentResultPublic(
        count=s.count,
        breakdowns={
            k: [BreakdownPublic(value=v, count=c) for v, c in vs] for k, vs in s.breakdowns.items()
        },  # fmt: skip
        kpis=KpisPublic(**asdict(s.kpis)),
        members=[
            SegmentMemberPublic(
                **{k: v for k, v in m.items() if k in SegmentMemberPublic.model_fields}
            )  # fmt: skip
            for m in rows_for_json(page.members)
        ],
        next_cursor=page.next_cursor,
    )


@router.post("/query", response_model=SegmentResultPublic, responses=example_of(SegmentResultPublic))  # fmt: skip
def query(body: SegmentQuery, store: MemberStoreDep) -> SegmentResultPublic:
    """Count, breakdowns (value tier, lifecycle, level, channel), KPIs and a cursor-paged list
    of the members the predicate holds for. A bad predicate is a 422 naming its node."""
    with http_errors():
        return result_public(store, store.parse(body.predicate), body.cursor, body.limit)


def saved_public(s: SavedSegment) -> SavedSegmentPublic:
    return SavedSegmentPublic(**asdict(s))


SegmentName = Annotated[str, PathParam(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")]  # fmt: skip


@router.get("/saved", response_model=SavedSegmentsPublic, responses=example_of(SavedSegmentsPublic))  # fmt: skip
def list_saved(store: MemberStoreDep) -> SavedSegmentsPublic:
    """The latest version of every saved segment."""
    with http_errors():
        return SavedSegmentsPublic(segments=[saved_public(s) for s in store.segments()])


@router.put("/saved/{name}", response_model=SavedSegmentPublic, responses=example_of(SavedSegmentPublic))  # fmt: skip
def save(name: SegmentName, body: SegmentSave, store: MemberStoreDep) -> SavedSegmentPublic:
    """Save the predicate under ``name``; saving a name again adds a version."""
    with http_errors():
        return saved_public(store.save_segment(name, body.predicate, body.description))


@router.get("/saved/{name}", response_model=SavedSegmentPublic, responses=example_of(SavedSegmentPublic))  # fmt: skip
def get_saved(name: SegmentName, store: MemberStoreDep,
              version: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> SavedSegmentPublic:  # fmt: skip
    """A saved segment, its latest version unless ``version``."""
    with http_errors():
        return saved_public(store.segment(name, version))


@router.get("/saved/{name}/versions", response_model=SavedSegmentsPublic, responses=example_of(SavedSegmentsPublic))  # fmt: skip
def saved_versions(name: SegmentName, store: MemberStoreDep) -> SavedSegmentsPublic:
    """Every version of a saved segment, newest first."""
    with http_errors():
        found = store.versions(name)
        if not found:
            raise SegmentNotFound(f"no saved segment {name!r}")
        return SavedSegmentsPublic(segments=[saved_public(s) for s in found])


@router.delete("/saved/{name}", status_code=204)
def delete_saved(name: SegmentName, store: MemberStoreDep) -> Response:
    """Delete every version of a saved segment."""
    with http_errors():
        store.delete_segment(name)
    return Response(status_code=204)


@router.post("/saved/{name}/query", response_model=SegmentResultPublic, responses=example_of(SegmentResultPublic))  # fmt: skip
def query_saved(name: SegmentName, store: MemberStoreDep,
                cursor: Annotated[str | None, Query(max_length=400, pattern=CURSOR_PATTERN)] = None,
                limit: Annotated[int, Query(ge=0)] = 100) -> SegmentResultPublic:  # fmt: skip
    """The saved segment's figures and members today."""
    with http_errors():
        return result_public(store, store.parse(store.segment(name).predicate), cursor, limit)


MEDIA = {ExportFormat.csv: "text/csv", ExportFormat.parquet: "application/vnd.apache.parquet"}


def _stream(store: MemberStore, expr: Expr | None, fmt: ExportFormat, name: str) -> StreamingResponse:  # fmt: skip
    chunks = store.export(expr, fmt.value)
    with http_errors():
        first = next(chunks, b"")  # errors before the first byte are still HTTP errors
    return StreamingResponse(
        itertools.chain([first], chunks), media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt.value}"'},
    )  # fmt: skip


@router.post("/export", response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})  # fmt: skip
def export(body: ExportRequest, store: MemberStoreDep, key: KeyDep,
           settings: SettingsDep) -> StreamingResponse:  # fmt: skip
    """Every column of the members the predicate holds for, streamed as CSV or Parquet (at
    most segments.export_max_rows, by member id)."""
    with http_errors():
        expr = store.parse(body.predicate)
    audit("export", key.key_id, settings, route="/v1/segments/export", shop=key.shop,
          predicate=body.predicate, format=body.format.value)  # fmt: skip
    return _stream(store, expr, body.format, "segment")


@router.get("/saved/{name}/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})  # fmt: skip
def export_saved(name: SegmentName, store: MemberStoreDep, key: KeyDep, settings: SettingsDep,
                 format: ExportFormat = ExportFormat.csv) -> StreamingResponse:  # fmt: skip
    """A saved segment's members, streamed as CSV or Parquet."""
    with http_errors():
        expr = store.parse(store.segment(name).predicate)
    audit("export", key.key_id, settings, route="/v1/segments/saved/{name}/export",
          shop=key.shop, segment=name, format=format.value)  # fmt: skip
    return _stream(store, expr, format, name.replace(" ", "_"))


@router.post("/lookalike", response_model=LookalikePublic, responses=example_of(LookalikePublic))  # fmt: skip
def lookalike(body: LookalikeRequest, store: MemberStoreDep) -> LookalikePublic:
    """The members most like the seed segment (a predicate or a saved segment), the seed
    excluded, best first: nearest to the seed's centre in standardized feature space."""
    if (body.predicate is None) == (body.segment is None):
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "input": None,
                                       "msg": "give exactly one of predicate and segment"}])  # fmt: skip
    with http_errors():
        tree = body.predicate if body.segment is None else store.segment(body.segment).predicate
        seed = store.parse(tree)
        if seed is None:
            raise RequestValidationError([{"type": "value_error", "input": body.predicate,
                                           "loc": ("body", "predicate"),
                                           "msg": "the seed is every member: give a predicate "
                                           "that selects some"}])  # fmt: skip
        found = store.lookalike(seed, body.size)
        return LookalikePublic(
            seed_count=store.count(seed),
            members=[LookalikeMemberPublic(member_id=m, score=s) for m, s in found],
        )
