"""POST /v1/events and DELETE /v1/members/{id} over the in-memory world, and the brokers
tag changes go to, against the machine's real Redis and NATS."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from features import erasure
from features.settings import EventSettings
from serving import events
from tests.conftest import require_service


def test_an_event_is_validated_and_logged_for_the_next_run(serve, settings):
    client = serve()
    member = f"EV-{uuid.uuid4().hex[:8]}"
    r = client.post("/v1/events", json={"member_id": member, "type": "view"})
    assert r.status_code == 200, r.text
    assert r.json()["visible"] is False  # the in-memory world has no online store to update
    logged = [json.loads(line) for p in settings.events_log_dir.glob("*.jsonl")
              for line in p.read_text().splitlines()]  # fmt: skip
    assert [e["type"] for e in logged if e["member_id"] == member] == ["view"]


@pytest.mark.parametrize(
    "body",
    [
        {"member_id": "M1", "type": "purchase"},  # no amount
        {"member_id": "M1", "type": "teleport"},
        {"member_id": "M1 OR 1=1", "type": "view"},
        {"member_id": "M1", "type": "purchase", "amount": -3},
        {"member_id": "M1", "type": "view", "extra": 1},
        {"member_id": "M1", "type": "open", "channel": "pigeon"},
    ],
)
def test_bad_events_get_422(serve, body):
    assert serve().post("/v1/events", json=body).status_code == 422


def test_erasure_through_the_api_records_a_digest_and_refuses_later_events(serve, settings):
    client = serve()
    member = f"ER-{uuid.uuid4().hex[:8]}"
    r = client.delete(f"/v1/members/{member}")
    assert r.status_code == 200 and r.json()["erased"] is True
    assert member not in settings.suppression_file.read_text()
    salt = erasure.salt(settings)
    assert salt is not None
    assert erasure.member_hash(salt, member) in erasure.suppressed(settings)
    assert client.post("/v1/events", json={"member_id": member, "type": "view"}).status_code == 410
    assert client.delete("/v1/members/bad%20id").status_code == 422


def _message() -> dict[str, str]:
    return {"member_id": "M1", "event": "purchase", "ts": "2026-01-05T12:00:00+00:00",
            "added": "", "removed": "dormant", "lifecycle_stage": "reactivated"}  # fmt: skip


def test_tag_changes_go_to_a_redis_stream():
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    cfg = EventSettings(broker="redis", stream=f"memberwise-test:{uuid.uuid4().hex}")

    async def go() -> bool:
        ok = await events.publish(cfg, _message())
        await events.broker_for(cfg).close()
        return ok

    assert asyncio.run(go())
    client = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
    try:
        entries = client.xrange(cfg.stream)
        assert [e[1] for e in entries] == [_message()]
    finally:
        client.delete(cfg.stream)


def test_tag_changes_go_to_nats():
    require_service("NATS", "127.0.0.1", 4222)
    import nats

    cfg = EventSettings(broker="nats", subject=f"memberwise.test.{uuid.uuid4().hex}")

    async def go() -> list[dict[str, str]]:
        nc = await nats.connect(cfg.nats_url)
        sub = await nc.subscribe(cfg.subject)
        assert await events.publish(cfg, _message())
        msg = await sub.next_msg(timeout=5)
        await nc.close()
        await events.broker_for(cfg).close()
        return [json.loads(msg.data)]

    assert asyncio.run(go()) == [_message()]


def test_an_unreachable_broker_does_not_fail_the_event():
    cfg = EventSettings(broker="redis", redis_url="redis://127.0.0.1:1/0",
                        publish_timeout_seconds=0.5)  # fmt: skip

    async def go() -> bool:
        return await events.publish(cfg, _message())

    assert asyncio.run(go()) is False
