from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import StateDep
from serving.schemas import Health, example_of
from serving.vocabulary import HealthStatus

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=example_of(Health))
def healthz() -> Health:
    """The process is up."""
    return Health(status=HealthStatus.OK)


@router.get(
    "/readyz", response_model=Health, responses={**example_of(Health), 503: {"model": Health}}
)
def readyz(state: StateDep):
    """Ready only when every champion model and the feature store are loaded."""
    if state.ready:
        detail = f"as of {state.as_of}; churn and coupon decisions precomputed: {state.precomputed}"
        return Health(status=HealthStatus.READY, detail=detail)
    # the error's kind only: its text may name paths or hosts (the server log has it all)
    kind = (state.error or "not loaded yet").split(":", 1)[0]
    return JSONResponse(
        status_code=503, content={"status": HealthStatus.NOT_READY.value, "detail": kind}
    )
