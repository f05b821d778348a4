"""The FastAPI app: models and the feature store are loaded in the lifespan, never at import."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.responses import Response

from features.settings import MemberwiseSettings, get_settings
from serving.console.routes import mount as mount_console
from serving.reload import maintenance
from serving.routes import health, v1
from serving.state import AppState

LATENCY = Histogram(
    "memberwise_request_seconds",
    "Request latency by route",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)


def create_app(settings: MemberwiseSettings | None = None) -> FastAPI:
    """The app for ``settings`` (default: the process-wide ones, from the environment and
    HOME/memberwise.toml); routes read the same object through ``SettingsDep``."""
    given = settings
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.memberwise.load()
        async with maintenance(app.state.memberwise):
            yield

    app = FastAPI(
        title="memberwise",
        summary=(
            "Per-member products, coupon, send time, churn risk, tags and segment for a "
            "membership programme"
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.memberwise = AppState(settings=settings)
    if given is not None:
        app.dependency_overrides[get_settings] = lambda: given
    app.include_router(health.router)
    app.include_router(v1.router)
    mount_console(app)

    @app.middleware("http")
    async def timing(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        LATENCY.labels(getattr(route, "path", "unmatched")).observe(time.perf_counter() - start)
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
