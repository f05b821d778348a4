"""The app over a tiny in-memory state: small real models fitted from models/*, features
from a tags frame, no MLflow and no Feast. Routes are reached through
``app.dependency_overrides`` on the state and the clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from features import repo
from features.settings import MemberwiseSettings
from serving.app import create_app
from serving.deps import get_now, get_state
from serving.security import SCOPES, KeyStore
from serving.state import AppState
from tests.serving.world import AS_OF, FrameFeatures, ShopWorld, shop_world

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> ShopWorld:
    return shop_world(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="session")
def settings(tmp_path_factory, world) -> MemberwiseSettings:
    """A home holding only the tag snapshot (read by the segments route)."""
    unlimited = {f"rate_limit_{scope}": "1000000/minute" for scope in SCOPES}  # tests burst
    s = MemberwiseSettings(home=tmp_path_factory.mktemp("home"), security=unlimited)
    path = repo.snapshot_path(s, AS_OF)
    path.parent.mkdir(parents=True)
    world.tags.to_parquet(path, index=False)
    return s


def in_memory_state(settings: MemberwiseSettings, world: ShopWorld, baseline: bool = False):
    return AppState(
        settings=settings,
        decider=world.decider(baseline),
        features=FrameFeatures(world.tags),
        as_of=AS_OF.isoformat(),
    )


@pytest.fixture(scope="session")
def app(settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def api_keys(settings) -> dict[str, str]:
    """One API key of each scope in the test home's key store: scope -> token."""
    store = KeyStore.of(settings)
    return {scope: store.create(scope, label=f"tests {scope}")[1] for scope in SCOPES}


@pytest.fixture
def serve(app, settings, world, api_keys) -> Iterator[Callable[..., TestClient]]:
    """``serve(state=None, baseline=False, key="admin")``: a client of the app over ``state``
    (default: the in-memory world) at the fixed instant NOW, sending the API key of scope
    ``key`` (an admin key reaches every route; None: no key). The lifespan is not run, so
    nothing is loaded from a registry or a feature store."""

    def make(
        state: AppState | None = None, baseline: bool = False, key: str | None = "admin"
    ) -> TestClient:
        chosen = state or in_memory_state(settings, world, baseline)
        app.dependency_overrides[get_state] = lambda: chosen
        app.dependency_overrides[get_now] = lambda: NOW
        headers = {"X-API-Key": api_keys[key]} if key else {}
        return TestClient(app, headers=headers)

    yield make
    # the settings override create_app registered stays
    app.dependency_overrides.pop(get_state, None)
    app.dependency_overrides.pop(get_now, None)
