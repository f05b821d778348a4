"""The API's event log in a run: events members sent since the export the run reads.

POST /v1/events appends each event to ``settings.events_log_dir`` (serving.events). A run
adds the logged events up to its as-of day to the shop it read: purchases and returns as
order lines (unless the shop's own order lines already hold that order id), the other
events to the events table. Erased members' events are dropped with their other rows
afterwards (pipelines.erasure).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pandas as pd

from features.events import EventType
from features.settings import MemberwiseSettings
from pipelines.ingest import ShopData

ORDER_EVENTS = {str(EventType.purchase), str(EventType.return_)}


def read_log(settings: MemberwiseSettings) -> pd.DataFrame:
    """Every logged event (one row each; ``ts`` naive UTC); empty when there is none.
    Lines that do not parse (a torn last line) are skipped."""
    rows: list[dict[str, Any]] = []
    for path in sorted(settings.events_log_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not rows:
        return pd.DataFrame(columns=["member_id", "type", "ts", "amount", "order_id",
                                     "product_id", "quantity"])  # fmt: skip
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    return df


def _like(new: pd.DataFrame, old: pd.DataFrame | None) -> pd.DataFrame:
    if old is None:
        return new
    out = new.reindex(columns=old.columns)
    for c in old.columns:
        with contextlib.suppress(TypeError, ValueError):
            out[c] = out[c].astype(old[c].dtype)
    return out


def merge_event_log(shop: ShopData, settings: MemberwiseSettings) -> dict[str, int]:
    """Add the logged events before ``shop.cutoff`` to ``shop`` in place; returns how many
    order lines and events it added."""
    log = read_log(settings)
    log = log[log["ts"] < shop.cutoff] if len(log) else log
    if log.empty:
        return {"order_lines": 0, "events": 0}
    orders = log[log["type"].isin(ORDER_EVENTS)].copy()
    ol = shop.tables["order_lines"]
    if len(orders):
        sign = orders["type"].eq(str(EventType.return_)).map({True: -1.0, False: 1.0})
        qty = orders["quantity"].astype(float).fillna(1.0)
        order_id = orders["order_id"].where(orders["order_id"].notna(),
                                            "event-" + orders.index.astype(str))  # fmt: skip
        lines = pd.DataFrame({
            "order_id": order_id.astype(str), "member_id": orders["member_id"].astype(str),
            "ts": orders["ts"], "product_id": orders["product_id"],
            "quantity": sign * qty, "unit_price": orders["amount"].astype(float) / qty,
        })  # fmt: skip
        known = set(ol["order_id"].astype(str))
        lines = lines[~(lines["quantity"].gt(0) & lines["order_id"].isin(known))]
        if "discount" in ol:
            lines["discount"] = 0.0
        shop.tables["order_lines"] = pd.concat([ol, _like(lines, ol)], ignore_index=True)
    else:
        lines = orders
    other = log[~log["type"].isin(ORDER_EVENTS)]
    if len(other):
        ev = pd.DataFrame({"member_id": other["member_id"].astype(str), "ts": other["ts"],
                           "event_type": other["type"].astype(str),
                           "product_id": other["product_id"]})  # fmt: skip
        old = shop.get("events")
        shop.tables["events"] = (
            pd.concat([old, _like(ev, old)], ignore_index=True) if old is not None else ev
        )
    return {"order_lines": len(lines), "events": len(other)}
