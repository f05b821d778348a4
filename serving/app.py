"""The FastAPI app: models and the feature store are loaded in the lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from features.settings import MemberwiseSettings, get_settings
from serving import errors
from serving.console.routes import mount as mount_console
from serving.reload import maintenance
from serving.routes import health, v1
from serving.security import KeyStore, RateLimiter, console_authenticator
from serving.state import AppState

log = logging.getLogger(__name__)
LATENCY = errors.LATENCY


def create_app(settings: MemberwiseSettings | None = None) -> FastAPI:
    """The app for ``settings`` (default: the process-wide ones, from the environment and
    HOME/memberwise.toml); routes read the same object through ``SettingsDep``."""
    given = settings
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name, state in {None: app.state.memberwise, **app.state.shops}.items():
            state.load()
            if state.error is not None:  # the caller sees a 503 without it; the log has it
                log.error("shop %s not ready: %s", name or "(default)", state.error)
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
    secure(app, settings)
    if given is not None:
        app.dependency_overrides[get_settings] = lambda: given
    app.include_router(health.router)
    app.include_router(v1.router)
    mount_console(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def secure(app: FastAPI, settings: MemberwiseSettings) -> None:
    """Keys, rate limits, one error shape, request ids and metrics, body bound, CORS, and
    one state per shop (``settings.shops``: name -> home; a key of a shop reads only it)."""
    app.state.shops = {
        name: AppState(settings=MemberwiseSettings(home=home))
        for name, home in settings.shops.items()
    }
    app.state.keys = KeyStore.of(settings)
    app.state.limiter = RateLimiter(settings.security)
    app.state.authenticate = console_authenticator(app.state.keys)
    errors.install(app, settings.security.max_request_bytes)
    _configured_bounds_in_spec(app, settings)
    if settings.security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.security.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type", errors.REQUEST_ID_HEADER],
            expose_headers=[errors.REQUEST_ID_HEADER, "Retry-After"],
        )


def _configured_bounds_in_spec(app: FastAPI, settings: MemberwiseSettings) -> None:
    """The spec states the bounds that come from settings (``?n=`` at most
    ``serving.max_products``), so a client, or a fuzzer, knows every value the API accepts."""
    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = plain()
        for methods in spec.get("paths", {}).values():
            for op in methods.values():
                for param in op.get("parameters", []) if isinstance(op, dict) else []:
                    if param.get("name") == "n" and param.get("in") == "query":
                        for option in param["schema"].get("anyOf", [param["schema"]]):
                            if option.get("type") == "integer":
                                option["maximum"] = settings.serving.max_products
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
