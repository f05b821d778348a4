"""Every error answer in one shape, ``{"detail": [{"loc", "msg", "type"}], "request_id"}``;
the request id, the access log and the metrics of every answer, exceptions included; and a
bound on request bodies. An exception's text never reaches the caller (it may hold paths,
SQL or hosts): it is logged with the request id, and the caller gets that id."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.logs import REQUEST_ID, pseudonym

log = logging.getLogger("memberwise.access")

REQUESTS = Counter(
    "memberwise_requests",
    "Answers by route, method and status (exceptions count as 500)",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "memberwise_request_seconds",
    "Request latency by route",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
REQUEST_ID_HEADER = "X-Request-ID"

ERROR_TYPES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "too_large", 429: "rate_limited",
    500: "internal_error", 503: "unavailable",
}  # fmt: skip


def route_template(scope: Scope) -> str:
    """The matched route's full path template (``/v1/members/{member_id}/recommendations``),
    or "unmatched": what metrics and logs show instead of the path, which holds ids. (A
    nested router's route knows only its own part of the template; the prefix is the rest
    of the path.)"""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return "unmatched"
    path = scope.get("path", "")
    try:
        rendered = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return template
    return path[: len(path) - len(rendered)] + template if path.endswith(rendered) else template


def error_body(status: int, detail: Any) -> dict[str, Any]:
    """The body of an error answer; ``detail`` a message or a list of issues."""
    if isinstance(detail, list):
        issues = [
            {"loc": list(i.get("loc", ())), "msg": str(i.get("msg", "")),
             "type": str(i.get("type", ERROR_TYPES.get(status, "error")))}
            for i in detail
        ]  # fmt: skip
    else:
        issues = [{"loc": [], "msg": str(detail), "type": ERROR_TYPES.get(status, "error")}]
    return {"detail": issues, "request_id": REQUEST_ID.get()}


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None):
    return JSONResponse(error_body(status, detail), status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for a request whose body is larger than ``max_bytes`` (by Content-Length, or
    counted as it arrives when chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        msg = f"the request body is larger than {self.max_bytes} bytes"
        await error_response(413, msg)(scope, receive, send)


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not take (``?limt=5`` would otherwise be
    ignored silently), naming the ones it takes."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise RequestValidationError([
            {"loc": ("query", name), "type": "extra_forbidden",
             "msg": f"unknown parameter; this route takes {sorted(known)}"}
            for name in dict.fromkeys(unknown)
        ])  # fmt: skip


def install(app: FastAPI, max_request_bytes: int) -> None:
    """The error handlers, the request-id/access-log/metrics middleware and the body bound."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, list(exc.errors()))

    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)  # inside the request id

    @app.middleware("http")
    async def observe(request: Request, call_next):
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if 8 <= len(given) <= 64 and given.isalnum() else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)
        start = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("unhandled error")
                response = error_response(500, f"internal error; request id {rid}")
            route = route_template(request.scope)
            elapsed = time.perf_counter() - start
            LATENCY.labels(route).observe(elapsed)
            REQUESTS.labels(route, request.method, str(response.status_code)).inc()
            response.headers[REQUEST_ID_HEADER] = rid
            fields: dict[str, Any] = {
                "method": request.method, "route": route, "status": response.status_code,
                "ms": round(elapsed * 1000, 2),
                "key_id": getattr(getattr(request.state, "key", None), "key_id", None),
                "shop": getattr(request.state, "shop", None),
            }  # fmt: skip
            member = request.scope.get("path_params", {}).get("member_id")
            if member:
                fields["member"] = pseudonym(member, app.state.memberwise.settings)
            log.info("%s %s %s", request.method, route, response.status_code, extra=fields)
            return response
        finally:
            REQUEST_ID.reset(token)
