"""Several shops in one deployment: a key belongs to one shop and every request it makes is
served from that shop's home; no key can read another shop's members."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from features import repo
from features.settings import MemberwiseSettings
from serving.app import create_app
from serving.deps import get_now
from serving.security import HEADER, KeyStore
from serving.state import AppState
from tests.serving.conftest import NOW, in_memory_state
from tests.serving.world import AS_OF, FrameFeatures

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


@pytest.fixture
def two_shops(tmp_path, world):
    """The deployment's own home (members M...) and the shop "north" (members N...)."""
    main = MemberwiseSettings(home=tmp_path / "main")
    north_home = tmp_path / "north"
    north_tags = world.tags.assign(member_id=world.tags["member_id"].str.replace("M", "N"))
    for settings, tags in ((main, world.tags), (MemberwiseSettings(home=north_home), north_tags)):
        path = repo.snapshot_path(settings, AS_OF)
        path.parent.mkdir(parents=True)
        tags.to_parquet(path, index=False)
    deployment = main.model_copy(update={"shops": {"north": north_home}})
    app = create_app(deployment)
    north = app.state.shops["north"]
    assert north.settings.home_dir == north_home.resolve()
    app.state.memberwise = in_memory_state(main, world)
    app.state.shops["north"] = AppState(
        settings=north.settings,
        decider=world.decider(),
        features=FrameFeatures(north_tags),
        as_of=AS_OF.isoformat(),
    )
    app.dependency_overrides[get_now] = lambda: NOW
    store = KeyStore.of(deployment)
    keys = {
        (shop, scope): store.create(scope, shop=shop)[1]
        for shop in (None, "north")
        for scope in ("storefront", "marketing", "admin")
    }
    return TestClient(app), keys, north_tags


def _segment_ids(client, token) -> list[str]:
    r = client.get("/v1/segments/members", params={"limit": 10_000}, headers={HEADER: token})
    assert r.status_code == 200, r.text
    return [m["member_id"] for m in r.json()["members"]]


def test_each_key_lists_only_its_shops_members(two_shops, world):
    client, keys, north_tags = two_shops
    for scope in ("marketing", "admin"):
        north = _segment_ids(client, keys["north", scope])
        assert north == sorted(north_tags["member_id"]) and all(m[0] == "N" for m in north)
        own = _segment_ids(client, keys[None, scope])
        assert own == sorted(world.tags["member_id"]) and all(m[0] == "M" for m in own)


def test_a_shops_key_reads_no_other_shops_member(two_shops, world):
    client, keys, _ = two_shops
    member = world.tags.loc[world.tags["tags"].str.len() > 0, "member_id"].iloc[0]
    twin = member.replace("M", "N")

    def decide(token, member_id):
        r = client.get(f"/v1/members/{member_id}/recommendations", headers={HEADER: token})
        assert r.status_code == 200, r.text
        return r.json()

    own = decide(keys[None, "storefront"], member)
    assert own["tags"] and own["churn_risk"] is not None
    for scope in ("storefront", "admin"):
        other = decide(keys["north", scope], member)  # the main shop's member, asked by north
        assert other["tags"] == [] and other["churn_risk"] is None
        assert other["lifecycle_stage"] is None and other["value_tier"] is None
        assert decide(keys["north", scope], twin)["tags"] == own["tags"]
    assert decide(keys[None, "storefront"], twin)["tags"] == []


def test_a_key_of_a_shop_no_longer_served_is_refused(two_shops):
    client, keys, _ = two_shops
    client.app.state.shops.pop("north")
    r = client.get("/v1/segments/members", headers={HEADER: keys["north", "marketing"]})
    assert r.status_code == 403
    assert r.json()["detail"][0]["msg"] == "the key's shop 'north' is not served here"
