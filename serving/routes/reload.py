"""Operator actions on the serving process: swap in the registry's champions now."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from serving.deps import StateDep
from serving.reload import reload_champions
from serving.schemas import ReloadPublic, example_of

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadPublic, responses=example_of(ReloadPublic))
def reload(state: StateDep) -> ReloadPublic:
    """Read the registry's ``champion`` aliases and, when one has moved (or the home has a
    new run), load the new models beside the serving ones and swap them in; requests go
    on being answered throughout. The registry is also polled every
    ``serving.reload_interval_seconds``."""
    try:
        result = reload_champions(state)
    except Exception as exc:
        log.exception("reload failed")
        raise HTTPException(
            status_code=503,
            detail=f"reload failed ({type(exc).__name__}); the serving models are unchanged",
        ) from exc
    return ReloadPublic(
        changed=result.changed,
        versions=result.versions,
        previous=result.previous,
        detail=result.detail,
    )
