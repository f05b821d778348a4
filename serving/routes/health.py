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
    """Ready when every champion model is loaded (503 otherwise). While the online store
    is not open, failing or slow, the status is ``degraded`` (still 200: member answers
    come from fallbacks, flagged ``degraded``), with the reason in ``detail``."""
    if state.ready:
        versions = state.champions.versions if state.champions is not None else {}
        shown = ", ".join(f"{k} {v}" for k, v in versions.items())
        detail = (
            f"as of {state.as_of}; churn and coupon decisions precomputed: {state.precomputed}"
            + (f"; model versions: {shown}" if shown else "")
        )
        reason = state.probe_store()
        if reason is not None:
            return Health(status=HealthStatus.DEGRADED, detail=f"{reason.value}; {detail}")
        return Health(status=HealthStatus.READY, detail=detail)
    # the error's kind only: its text may name paths or hosts (the server log has it all)
    kind = (state.error or "not loaded yet").split(":", 1)[0]
    return JSONResponse(
        status_code=503, content={"status": HealthStatus.NOT_READY.value, "detail": kind}
    )
