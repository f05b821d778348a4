"""The console over the in-memory shop world: a home holding its tag snapshot and a
latest-run pointer and a member store loaded with a member table derived from its tags, and a
key check that knows one key of each scope."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from features.member_store import MemberStore
from serving.console.auth import ConsoleUser
from serving.deps import get_state
from tests.member_fixtures import members_from_tags
from tests.serving.conftest import in_memory_state
from tests.serving.world import AS_OF

KEYS = {
    "mk-marketing": ConsoleUser("k1", "marketing"),
    "mk-admin": ConsoleUser("k2", "admin"),
    "mk-storefront": ConsoleUser("k3", "storefront"),
}


@pytest.fixture(scope="session")
def console_settings(settings, world):
    """The shared home, with a member table derived from the world's tags in its member store
    (the console reads the store; before a run has loaded it, the tag snapshot)."""
    (settings.home_dir / "latest_run.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    MemberStore(settings).load(members_from_tags(world.tags))
    return settings


@pytest.fixture
def console(app, console_settings, world) -> Iterator[TestClient]:
    state = in_memory_state(console_settings, world)
    app.dependency_overrides[get_state] = lambda: state
    app.state.authenticate = KEYS.get
    yield TestClient(app, base_url="http://testserver")
    app.dependency_overrides.pop(get_state, None)


def sign_in(client: TestClient, key: str = "mk-marketing"):
    return client.post("/console/signin", data={"key": key}, follow_redirects=False)
