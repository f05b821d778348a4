from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import StateDep
from serving.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(state: StateDep):
    """Ready only when every champion model and the feature store are loaded."""
    if state.ready:
        detail = f"as of {state.as_of}; coupon decisions precomputed: {state.coupons_precomputed}"
        return Health(status="ready", detail=detail)
    return JSONResponse(status_code=503, content={"status": "not ready", "detail": state.error})
