"""Degraded answers instead of errors, and hot reload, over the in-memory world: an online
reader that is slow or failing stands in for the store here; the real Redis outage and
the real registry are in test_production_stores.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client import REGISTRY

from features import repo
from features.settings import MemberwiseSettings
from serving.fallback import Breaker, BreakerOpen, GuardedReader, Profiles
from serving.reload import reload_champions
from serving.state import AppState
from serving.vocabulary import DegradedReason
from tests.serving.world import AS_OF, FrameFeatures

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


class Switchable(FrameFeatures):
    """The world's features, with the store's failure modes switched on and off."""

    def __init__(self, tags) -> None:
        super().__init__(tags)
        self.mode = "up"
        self.reads = 0

    def member(self, member_id):
        self.reads += 1
        if self.mode == "down":
            raise ConnectionError("connection refused")
        if self.mode == "hung":
            time.sleep(0.5)
        return super().member(member_id)


def degraded_count(reason: str) -> float:
    return REGISTRY.get_sample_value("memberwise_degraded_answers_total", {"reason": reason}) or 0


@pytest.fixture
def switchable_state(settings, world):
    def make(**serving) -> tuple[AppState, Switchable]:
        s = settings.model_copy(
            update={"serving": settings.serving.model_copy(update=serving)}, deep=True
        )
        reader = Switchable(world.tags)
        state = AppState(
            settings=s, decider=world.decider(), features=reader, as_of=AS_OF.isoformat(),
            profiles=Profiles.from_snapshot(repo.snapshot_path(settings, AS_OF), 10_000),
        )  # fmt: skip
        return state, reader

    return make


def test_breaker_opens_after_failures_and_closes_on_a_good_trial():
    now = [0.0]
    b = Breaker(failures=2, reset_seconds=1.0, clock=lambda: now[0])
    b.before()
    b.failed()
    assert b.state == Breaker.CLOSED
    b.failed()
    assert b.state == Breaker.OPEN
    with pytest.raises(BreakerOpen):
        b.before()
    now[0] = 1.5
    b.before()  # the trial call
    assert b.state == Breaker.HALF_OPEN
    with pytest.raises(BreakerOpen):
        b.before()  # only one trial at a time
    b.failed()
    assert b.state == Breaker.OPEN
    now[0] = 3.0
    b.before()
    b.succeeded()
    assert b.state == Breaker.CLOSED
    b.before()


def test_a_hung_read_costs_at_most_the_budget(world):
    reader = Switchable(world.tags)
    reader.mode = "hung"
    guard = GuardedReader(reader, budget_seconds=0.02, breaker=Breaker(2, 60.0))
    member = world.tags["member_id"].iloc[0]
    took = []
    for _ in range(5):
        start = time.perf_counter()
        read = guard.member(member)
        took.append(time.perf_counter() - start)
        assert read.features is None and read.degraded
    assert [guard.member(member).reason for _ in range(2)] == [DegradedReason.CIRCUIT_OPEN] * 2
    assert max(took) < 0.02 + 0.1  # the budget, plus scheduling on a busy machine
    assert reader.reads == 2  # the open circuit tries no more reads
    guard.close()


def test_store_down_gives_degraded_answers_then_recovers(serve, switchable_state, world):
    state, reader = switchable_state(breaker_failures=2, breaker_reset_seconds=0.2)
    client = serve(state)
    tags = world.tags
    buyer = tags.loc[tags["frequency"] > 0, "member_id"].iloc[0]
    normal = client.get(f"/v1/members/{buyer}/recommendations").json()
    assert normal["degraded"] is False and normal["degraded_reason"] is None
    before = degraded_count("store_error"), degraded_count("circuit_open")

    reader.mode = "down"
    answers = [client.get(f"/v1/members/{buyer}/recommendations") for _ in range(5)]
    assert all(r.status_code == 200 for r in answers)
    bodies = [r.json() for r in answers]
    assert all(b["degraded"] for b in bodies)
    assert [b["degraded_reason"] for b in bodies] == ["store_error"] * 2 + ["circuit_open"] * 3
    assert degraded_count("store_error") - before[0] == 2
    assert degraded_count("circuit_open") - before[1] == 3
    d = bodies[-1]
    assert d["coupon"] is None and d["churn_risk"] is None and d["tags"] == []
    assert d["parts"]["coupon"]["reason"].startswith("degraded (")
    # the member's segment comes from the snapshot's profile, products from the model
    row = tags.set_index("member_id").loc[buyer]
    assert d["rfm_segment"] == row["rfm_segment"]
    assert d["products"] and d["model_versions"] == normal["model_versions"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    # the probe is refused by the open circuit, or is its trial read after the reset time
    assert ready.json()["detail"].split(";")[0] in {"circuit_open", "store_error"}

    reader.mode = "up"
    time.sleep(0.25)  # the breaker's reset time: the next read is the trial
    back = client.get(f"/v1/members/{buyer}/recommendations").json()
    assert back["degraded"] is False
    assert back["coupon_reason"] == normal["coupon_reason"]
    assert client.get("/readyz").json()["status"] == "ready"


def test_a_member_without_purchases_falls_back_to_their_countrys_products(
    serve, switchable_state, world
):
    state, reader = switchable_state()
    tags = world.tags
    newbie = tags.loc[(tags["frequency"] == 0) & tags["country"].notna()].iloc[0]
    client = serve(state)
    url = f"/v1/members/{newbie['member_id']}/recommendations"
    normal = client.get(url).json()
    reader.mode = "down"
    d = client.get(url).json()
    assert d["degraded"] is True and d["known_member"] is True
    assert {p["reason"] for p in d["products"]} <= {"popular_in_segment", "popular"}
    assert f"members in {newbie['country']}" in d["parts"]["products"]["reason"]
    # the same products and send time as with the store: both come from the snapshot's
    # country, segment and time zone and the models' own memory
    assert d["products"] == normal["products"] and d["send_time"] == normal["send_time"]


def test_a_store_not_opened_is_degraded_not_an_error(serve, settings, world):
    state = AppState(settings=settings, decider=world.decider(), as_of=AS_OF.isoformat())
    client = serve(state)
    r = client.get("/v1/members/M00001/recommendations")
    assert r.status_code == 200 and r.json()["degraded_reason"] == "store_not_connected"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"


def test_forget_drops_the_member_from_serving_memory(switchable_state, world):
    state, _ = switchable_state()
    member = world.tags["member_id"].iloc[0]
    assert state.read_member(member).features is not None
    assert state.fallback_profile(member) is not None
    state.forget(member)
    assert state.read_member(member).features is None
    assert state.fallback_profile(member) is None


def test_reload_swaps_moved_champions_without_a_failed_request(serve, tmp_path, world):
    settings = MemberwiseSettings(home=tmp_path)
    snapshot = repo.snapshot_path(settings, AS_OF)
    snapshot.parent.mkdir(parents=True)
    world.tags.to_parquet(snapshot, index=False)
    (tmp_path / "latest_run.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    state = AppState(
        settings=settings, decider=world.decider(), features=FrameFeatures(world.tags),
        as_of=AS_OF.isoformat(),
    )  # fmt: skip
    registry = {"versions": dict(world.model.versions)}
    loaded = []

    def load(_uri):
        loaded.append(1)
        return world.baseline

    def versions(_uri):
        return registry["versions"]

    unchanged = reload_champions(state, load=load, versions=versions)
    assert not unchanged.changed and not loaded

    client = serve(state)
    member = world.tags["member_id"].iloc[3]
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def load_loop():
        while not stop.is_set():
            r = client.get(f"/v1/members/{member}/recommendations")
            seen.append((r.status_code, r.json()["model_versions"]["churn"]))

    t = threading.Thread(target=load_loop)
    t.start()
    time.sleep(0.3)
    registry["versions"] = dict(world.baseline.versions)  # the aliases moved
    result = reload_champions(state, load=load, versions=versions)
    time.sleep(0.3)
    stop.set()
    t.join()
    assert result.changed and result.versions["churn"] == "2" and result.previous["churn"] == "1"
    assert {code for code, _ in seen} == {200}
    assert seen[0][1] == "1" and seen[-1][1] == "2"
    switched = [v for _, v in seen]
    assert switched == sorted(switched)  # never back to the old version
    assert client.get(f"/v1/members/{member}/recommendations").json()["model_roles"]["churn"] == (
        "baseline"
    )
