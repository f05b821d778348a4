"""Members' events between runs: update the online row, log for the next run, publish.

:func:`record` is the whole path of one event (POST /v1/events): read the member's row of
the tags view from the online store, apply the event (features.events), push the new row
through the Feast push source ``member_tags_push``, append the event to the offline log
(``settings.events_log_dir``, JSON lines per UTC day, which the next run ingests), and
return the tag changes for :class:`Broker` to publish (Redis Streams by default, NATS as a
setting, ``events.broker``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from features import erasure, repo
from features.events import MemberEvent, apply_event, tag_changes
from features.settings import EventSettings, MemberwiseSettings

log = logging.getLogger(__name__)


def view_fields(store: Any) -> dict[str, str]:
    """The tags view's features and their Feast types by name ("Float64", "Bool", ...):
    numeric features, the rule tags of the home's rules, strings, integers."""
    view = store.get_feature_view(repo.TAGS_VIEW)
    return {f.name: str(f.dtype) for f in view.features}


@dataclass
class EventOutcome:
    """What one event did: ``visible`` when the member's online row was updated (known
    member), ``erased`` when the member is erased (the event is dropped)."""

    member_id: str
    type: str
    visible: bool = False
    erased: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    lifecycle_stage: str | None = None
    recency_days: float | None = None
    dormant: bool | None = None
    published: bool = False


def read_row(store: Any, member_id: str) -> dict[str, Any] | None:
    """Every feature of the member's tags-view row, or None when the store has none."""
    refs = [f"{repo.TAGS_VIEW}:{f}" for f in view_fields(store)]
    resp = store.get_online_features(features=refs, entity_rows=[{repo.JOIN_KEY: member_id}])
    values = {k: v[0] for k, v in resp.to_dict().items() if k != repo.JOIN_KEY}
    return None if all(v is None for v in values.values()) else values


def push_row(store: Any, member_id: str, row: dict[str, Any], ts: datetime) -> None:
    """Write ``row`` as the member's online row through the push source."""
    from feast.data_source import PushMode

    data: dict[str, Any] = {repo.JOIN_KEY: [member_id], "event_timestamp": [ts]}
    for f, dtype in view_fields(store).items():
        v = row.get(f)
        if "Bool" in dtype:
            data[f] = [bool(v)]
        elif "Float" in dtype:
            data[f] = [float("nan") if v is None else float(v)]
        elif "Int" in dtype:
            data[f] = pd.array([None if v is None else int(v)], dtype="Int64")
        else:
            data[f] = [None if v is None else str(v)]
    store.push(repo.TAGS_PUSH, pd.DataFrame(data), to=PushMode.ONLINE)


def append_log(settings: MemberwiseSettings, event: MemberEvent) -> Path:
    """Append the event to the offline log (one JSON line, one ``write``); returns the file."""
    folder = settings.events_log_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{event.ts.astimezone(UTC).date().isoformat()}.jsonl"
    rec = {**asdict(event), "type": str(event.type), "ts": event.ts.astimezone(UTC).isoformat()}
    line = (json.dumps(rec, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def record(
    settings: MemberwiseSettings, store: Any, event: MemberEvent, rules_file: Path | None = None
) -> EventOutcome:
    """Apply one event (see the module docstring). An erased member's event is dropped:
    neither logged nor applied."""
    out = EventOutcome(event.member_id, str(event.type))
    if erasure.erased_mask(settings, pd.Series([event.member_id])).iloc[0]:
        out.erased = True
        return out
    append_log(settings, event)
    if store is None:
        return out
    before = read_row(store, event.member_id)
    if before is None:
        return out
    after = apply_event(before, event, rules_file)
    push_row(store, event.member_id, after, event.ts)
    out.added, out.removed = tag_changes(before, after, rules_file)
    out.visible = True
    out.lifecycle_stage = after.get("lifecycle_stage")
    out.recency_days = after.get("recency_days")
    out.dormant = bool(after.get("dormant"))
    return out


def change_message(out: EventOutcome, ts: datetime) -> dict[str, str]:
    """The broker message of a tag change (flat strings, as Redis stream fields)."""
    return {
        "member_id": out.member_id,
        "event": out.type,
        "ts": ts.astimezone(UTC).isoformat(),
        "added": ",".join(out.added),
        "removed": ",".join(out.removed),
        "lifecycle_stage": out.lifecycle_stage or "",
    }


class Broker(Protocol):
    async def publish(self, message: dict[str, str]) -> None: ...

    async def close(self) -> None: ...


class RedisStreamBroker:
    """XADD to a Redis stream (capped near ``stream_max_len`` entries)."""

    def __init__(self, cfg: EventSettings) -> None:
        import redis.asyncio as aioredis

        self.cfg = cfg
        self.client = aioredis.from_url(cfg.redis_url, socket_timeout=cfg.publish_timeout_seconds)

    async def publish(self, message: dict[str, str]) -> None:
        await self.client.xadd(
            self.cfg.stream,
            message,  # type: ignore[arg-type]
            maxlen=self.cfg.stream_max_len,
            approximate=True,
        )

    async def close(self) -> None:
        await self.client.aclose()


class NatsBroker:
    """Publish to a NATS subject (connected on first use)."""

    def __init__(self, cfg: EventSettings) -> None:
        self.cfg = cfg
        self.nc: Any = None

    async def publish(self, message: dict[str, str]) -> None:
        import nats

        if self.nc is None or self.nc.is_closed:
            self.nc = await nats.connect(
                self.cfg.nats_url,
                connect_timeout=self.cfg.publish_timeout_seconds,
                max_reconnect_attempts=1,
                allow_reconnect=False,
            )
        await self.nc.publish(self.cfg.subject, json.dumps(message).encode())
        await self.nc.flush(timeout=self.cfg.publish_timeout_seconds)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


class NullBroker:
    async def publish(self, message: dict[str, str]) -> None:
        return None

    async def close(self) -> None:
        return None


def make_broker(cfg: EventSettings) -> Broker:
    if cfg.broker == "redis":
        return RedisStreamBroker(cfg)
    if cfg.broker == "nats":
        return NatsBroker(cfg)
    return NullBroker()


# one broker per event loop and configuration (clients are bound to the loop they start in)
_BROKERS: dict[tuple[int, str], Broker] = {}


def broker_for(cfg: EventSettings) -> Broker:
    key = (id(asyncio.get_running_loop()), cfg.model_dump_json())
    if key not in _BROKERS:
        _BROKERS[key] = make_broker(cfg)
    return _BROKERS[key]


async def publish(cfg: EventSettings, message: dict[str, str]) -> bool:
    """Publish a tag change; False (and a log line without the member id) on failure or
    timeout, so an event is answered even when the broker is away."""
    try:
        broker = broker_for(cfg)
        await asyncio.wait_for(broker.publish(message), cfg.publish_timeout_seconds)
        return True
    except Exception as exc:  # the broker is optional for the event's own effect
        log.warning("tag change not published to %s: %s", cfg.broker, type(exc).__name__)
        return False


def now() -> datetime:
    return datetime.now(UTC)
