"""API keys, scopes and rate limits.

A key is a random token ``mw_<key id>_<secret>`` shown once when made; the store keeps only
its SHA-256 (the token has 256 bits of entropy, so a fast hash is enough) with its scope,
shop and dates, in ``STATE_DIR/keys.sqlite``. Every request looks its key up again, so a
revoked key is refused at once, by every replica sharing the state directory.

Scopes: ``storefront`` (per-member decisions, products), ``marketing`` (segments, profiles,
campaigns, exports), ``admin`` (reload, erasure, keys, and everything else). A router takes
one of the dependency lists below::

    router = APIRouter(prefix="/segments", dependencies=MARKETING)
    parent.include_router(admin_router, dependencies=ADMIN)

and a route reads its caller with ``key: KeyDep``. No key -> 401, a key outside the scope ->
403, over the key's rate limit -> 429 with ``Retry-After``; each with a message saying why.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from features.settings import MemberwiseSettings, SecuritySettings

log = logging.getLogger(__name__)

SCOPES = ("storefront", "marketing", "admin")
HEADER = "X-API-Key"
KEYS_FILE = "keys.sqlite"
TOKEN_PREFIX = "mw_"
MAX_TOKEN_LENGTH = 200

api_key_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="an API key from `memberwise keys create --scope storefront|marketing|admin`",
)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scope: str
    shop: str | None
    label: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """The deployment's API keys (SQLite file; only hashes of the tokens are kept)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, settings: MemberwiseSettings) -> KeyStore:
        return cls(settings.state_dir / KEYS_FILE)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=10)
        con.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, "
            "token_sha256 TEXT UNIQUE NOT NULL, scope TEXT NOT NULL, shop TEXT, "
            "label TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)"
        )
        return con

    def create(self, scope: str, shop: str | None = None, label: str = "") -> tuple[ApiKey, str]:
        """A new key of ``scope`` for ``shop`` (None: the deployment's own home) and its
        token, which is not stored and cannot be shown again."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; one of {list(SCOPES)}")
        key_id = "k" + secrets.token_hex(5)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC).isoformat(timespec="seconds")
        key = ApiKey(key_id, scope, shop, label, now)
        with closing(self._connect()) as con, con:
            con.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key_id, _digest(token), scope, shop, label, now),
            )
        return key, token

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke ``key_id`` (KeyError when there is no such key); revoking twice keeps the
        first date."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with closing(self._connect()) as con, con:
            con.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
                (now, key_id),
            )
        found = [k for k in self.list() if k.key_id == key_id]
        if not found:
            raise KeyError(key_id)
        return found[0]

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as con:
            rows = con.execute(
                "SELECT key_id, scope, shop, label, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, key_id"
            ).fetchall()
        return [ApiKey(*r) for r in rows]

    def lookup(self, token: str) -> ApiKey | None:
        """The active key whose token this is, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        if not self.path.exists():
            return None
        with closing(sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)) as con:
            row = con.execute(
                "SELECT key_id, scope, shop, label, created_at, revoked_at FROM api_keys "
                "WHERE token_sha256 = ? AND revoked_at IS NULL",
                (_digest(token),),
            ).fetchone()
        return ApiKey(*row) if row else None


class RateLimiter:
    """Requests per key in a moving window, by the key's scope (``security.rate_limit_*``);
    counters in memory or in Redis (``security.rate_limit_storage``). When the storage cannot
    be reached the request is let through and a warning logged: a limiter outage must not
    take the storefront down."""

    def __init__(self, config: SecuritySettings, key_prefix: str = "memberwise-rl") -> None:
        options: dict[str, Any] = {}
        if config.rate_limit_storage.startswith(("redis://", "rediss://")):
            options["key_prefix"] = key_prefix
        self.storage = storage_from_string(config.rate_limit_storage, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.limits: dict[str, list[RateLimitItem]] = {
            "storefront": parse_many(config.rate_limit_storefront),
            "marketing": parse_many(config.rate_limit_marketing),
            "admin": parse_many(config.rate_limit_admin),
        }

    def retry_after(self, key: ApiKey) -> int | None:
        """None when ``key`` may make this request (and counts it), else the seconds to wait."""
        try:
            for item in self.limits[key.scope]:
                if not self.limiter.hit(item, key.key_id):
                    reset = self.limiter.get_window_stats(item, key.key_id).reset_time
                    return max(1, int(reset - datetime.now(UTC).timestamp()) + 1)
        except Exception as exc:  # the storage is down: serve rather than refuse
            log.warning("rate limit not checked: %s", type(exc).__name__)
        return None


def _unauthorized(msg: str) -> HTTPException:
    return HTTPException(401, msg, headers={"WWW-Authenticate": HEADER})


def current_key(
    request: Request, token: Annotated[str | None, Security(api_key_header)] = None
) -> ApiKey:
    """The caller's key (401 without a valid one; 403 when its shop is not served here).
    Remembered on ``request.state.key`` and its shop on ``request.state.shop``."""
    cached = getattr(request.state, "key", None)
    if isinstance(cached, ApiKey):
        return cached
    if not token:
        raise _unauthorized(
            f"an API key is required: send it in the {HEADER} header "
            "(an operator makes one with `memberwise keys create`)"
        )
    key = request.app.state.keys.lookup(token.strip())
    if key is None:
        raise _unauthorized("the API key is not valid or has been revoked")
    if key.shop is not None and key.shop not in request.app.state.shops:
        raise HTTPException(403, f"the key's shop {key.shop!r} is not served here")
    request.state.key, request.state.shop = key, key.shop
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]


def require(scope: str) -> Callable[..., ApiKey]:
    """A dependency letting through keys of ``scope`` and admin keys, within their rate."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    allowed = {scope, "admin"}

    def check(request: Request, key: KeyDep) -> ApiKey:
        if key.scope not in allowed:
            need = " or ".join(sorted(allowed))
            raise HTTPException(
                403, f"a {key.scope} key cannot call this route: it needs a {need} key"
            )
        wait = request.app.state.limiter.retry_after(key)
        if wait is not None:
            raise HTTPException(
                429,
                f"rate limit of this key exceeded; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        return key

    check.__name__ = f"require_{scope}"
    return check


STOREFRONT = [Depends(require("storefront"))]
MARKETING = [Depends(require("marketing"))]
ADMIN = [Depends(require("admin"))]


def shop_of(request: Request) -> str | None:
    """The shop a request reads: its key's (API), or the console user's (cookie)."""
    if hasattr(request.state, "shop"):
        return request.state.shop
    from serving.console.auth import COOKIE, authenticate

    user = authenticate(request, request.cookies.get(COOKIE, ""))
    return user.shop if user is not None else None


def console_authenticator(store: KeyStore) -> Callable[[str], Any]:
    """``app.state.authenticate`` for the console: token -> ConsoleUser or None."""
    from serving.console.auth import ConsoleUser

    def check(token: str) -> ConsoleUser | None:
        key = store.lookup(token)
        return None if key is None else ConsoleUser(key.key_id, key.scope, key.shop)

    return check
