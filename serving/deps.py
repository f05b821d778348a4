"""Typed dependencies shared by the routers (tests override ``get_state`` and ``get_now``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from features.member_store import MemberStore
from features.settings import MemberwiseSettings, get_settings
from serving.security import shop_of
from serving.state import AppState


def get_state(request: Request) -> AppState:
    """The state of the shop the caller's key belongs to (the deployment's own home for a
    key without a shop, and for routes that need no key)."""
    shop = shop_of(request)
    if shop is None:
        return request.app.state.memberwise
    shops = getattr(request.app.state, "shops", {})
    if shop not in shops:
        raise HTTPException(403, f"the key's shop {shop!r} is not served here")
    return shops[shop]


def get_ready_state(state: Annotated[AppState, Depends(get_state)]) -> AppState:
    if not state.ready:
        raise HTTPException(
            status_code=503,
            detail="models or feature store not loaded (the server log says why; see /readyz)",
        )
    return state


def get_now() -> datetime:
    """The instant a send time is chosen after (aware, UTC)."""
    return datetime.now(UTC)


SettingsDep = Annotated[MemberwiseSettings, Depends(get_settings)]
StateDep = Annotated[AppState, Depends(get_state)]
ReadyStateDep = Annotated[AppState, Depends(get_ready_state)]
NowDep = Annotated[datetime, Depends(get_now)]


_member_stores: dict[int, MemberStore] = {}


def get_member_store(settings: Annotated[MemberwiseSettings, Depends(get_settings)]) -> MemberStore:  # fmt: skip
    """The member store the settings point to (one per settings object)."""
    store = _member_stores.get(id(settings))
    if store is None or store.settings is not settings:
        store = _member_stores[id(settings)] = MemberStore(settings)
    return store


MemberStoreDep = Annotated[MemberStore, Depends(get_member_store)]
