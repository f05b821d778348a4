"""Operator routes: erasure of a member (the right to be forgotten)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from features import erasure
from features.member_store import MemberStore
from serving.deps import StateDep
from serving.logs import audit
from serving.routes.members import MemberId  # one definition of the path parameter
from serving.schemas import example_of
from serving.security import KeyDep

router = APIRouter(tags=["admin"])
log = logging.getLogger("memberwise.audit")


class ErasurePublic(BaseModel):
    """The member is suppressed (every later run leaves them out); ``online_removed``: the
    online store held a row for them, now deleted."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"erased": True, "online_removed": True}]}
    )
    erased: bool
    online_removed: bool


def _erase(settings: Any, store: Any, member_id: str) -> tuple[str, bool]:
    digest = erasure.suppress(settings, [member_id])[0]
    removed = bool(store is not None and erasure.delete_online(store, [member_id]))
    MemberStore(settings).forget([member_id])  # segments, exports, the console: at once
    return digest, removed


@router.delete(
    "/members/{member_id}", response_model=ErasurePublic, responses=example_of(ErasurePublic)
)
async def erase_member(member_id: MemberId, state: StateDep, key: KeyDep) -> ErasurePublic:
    """Forget a member: removed from the online store now, and left out of every later
    run's tags, training data, scores, segments and exports. Idempotent."""
    settings = state.settings  # the caller's shop
    store = getattr(state.features, "store", None)
    digest, removed = await run_in_threadpool(_erase, settings, store, member_id)
    state.forget(member_id)  # no fallback profile or cached answer keeps them
    audit("erasure", key.key_id, settings, digest=digest, online_removed=removed, source="api")
    return ErasurePublic(erased=True, online_removed=removed)
