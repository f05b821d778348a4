"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from features.settings import MemberwiseSettings, get_settings
from serving.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.memberwise


def get_ready_state(state: Annotated[AppState, Depends(get_state)]) -> AppState:
    if not state.ready:
        raise HTTPException(
            status_code=503, detail=f"models or feature store not loaded: {state.error}"
        )
    return state


SettingsDep = Annotated[MemberwiseSettings, Depends(get_settings)]
StateDep = Annotated[AppState, Depends(get_state)]
ReadyStateDep = Annotated[AppState, Depends(get_ready_state)]
