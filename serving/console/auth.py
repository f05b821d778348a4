"""Who is using the console: the API key given on the sign-in page, checked on every request
by the app's key check (``app.state.authenticate``: token -> ConsoleUser or None)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

COOKIE = "memberwise_console"
CONSOLE_SCOPES = ("marketing", "admin")


@dataclass(frozen=True)
class ConsoleUser:
    key_id: str
    scope: str  # "storefront", "marketing" or "admin"
    shop: str | None = None


class SignInRequired(Exception):
    """No valid marketing or admin key on this request: the console sends it to sign in."""


def authenticate(request: Request, token: str) -> ConsoleUser | None:
    """The key's owner, or None for an unknown or revoked key (or an app without keys)."""
    check = getattr(request.app.state, "authenticate", None)
    if not token or check is None:
        return None
    return check(token)


def console_user(request: Request) -> ConsoleUser:
    """The signed-in user of a console page; SignInRequired without a console key."""
    user = authenticate(request, request.cookies.get(COOKIE, ""))
    if user is None or user.scope not in CONSOLE_SCOPES:
        raise SignInRequired
    return user
