"""What one member event does to the member's tag row, between runs.

A run recomputes every tag from the whole history; an event (POST /v1/events) moves only
the features it clearly changes, so the next call sees it: a purchase sets
``recency_days`` to 0 and ``last_gap_days`` to the gap it closes, adds to frequency and
spend; a return takes its amount off spend; browsing and message events count as activity.
The rule tags (features.rules, rules on model scores left out as in the snapshots) are then
evaluated again on the row (:func:`retag`): a dormant member who buys is no longer
``dormant`` and their lifecycle stage follows the rules (``reactivated``). Scores that rank
members against each other (RFM, value tier) wait for the next run; :func:`tag_changes`
says which tags the event added or removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any


class EventType(StrEnum):
    purchase = "purchase"
    return_ = "return"
    view = "view"
    cart = "cart"
    login = "login"
    open = "open"
    click = "click"


# events that are browsing or session activity (the events table's event_type)
ACTIVITY = {EventType.view, EventType.cart, EventType.login}
# events about a message (the messages table)
MESSAGE = {EventType.open, EventType.click}


@dataclass(frozen=True)
class MemberEvent:
    """One event: ``amount`` in the shop's currency (purchase, return), ``ts`` aware UTC."""

    member_id: str
    type: EventType
    ts: datetime
    amount: float = 0.0
    order_id: str | None = None
    product_id: str | None = None
    quantity: float = 1.0
    channel: str | None = None


def _num(v: Any) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def apply_event(
    row: Mapping[str, Any], event: MemberEvent, rules_file: Path | None = None
) -> dict[str, Any]:
    """The member's tag row after ``event`` (a new dict; ``row`` is left as it was), its
    rule tags re-evaluated (:func:`retag`)."""
    out = dict(row)
    if event.type == EventType.purchase:
        freq = _num(out.get("frequency"))
        monetary = _num(out.get("monetary")) + event.amount
        out["recency_days"] = 0.0
        out["frequency"] = freq + 1
        out["monetary"] = monetary
        out["avg_order_value"] = monetary / (freq + 1)
        out["max_order_value"] = max(_num(out.get("max_order_value")), event.amount)
        out["orders_30d"] = _num(out.get("orders_30d")) + 1
        out["orders_recent"] = _num(out.get("orders_recent")) + 1
        out["spend_recent"] = _num(out.get("spend_recent")) + event.amount
        out["purchase_days"] = _num(out.get("purchase_days")) + 1
        if freq == 0:
            out["first_purchase_days"] = 0.0
        if freq > 0:  # the gap this purchase closes
            out["last_gap_days"] = _num(row.get("recency_days"))
    elif event.type == EventType.return_:
        out["monetary"] = max(_num(out.get("monetary")) - event.amount, 0.0)
        out["spend_recent"] = max(_num(out.get("spend_recent")) - event.amount, 0.0)
    elif event.type in ACTIVITY or event.type == EventType.click:
        out["events_30d"] = _num(out.get("events_30d")) + 1
        out["events_recent"] = _num(out.get("events_recent")) + 1
    elif event.type == EventType.open:
        out["opens_recent"] = _num(out.get("opens_recent")) + 1
    return retag(out, rules_file)


def _score_free_rules(rules_file: Path | None) -> Any:
    from features.rules import DEFAULT_RULES, without_scores

    path = Path(rules_file or DEFAULT_RULES)
    return without_scores(_rules(str(path), path.stat().st_mtime_ns))


def rule_tags(row: Mapping[str, Any], rules_file: Path | None = None) -> set[str]:
    """The tags the rules file (default: features/default_tags.yaml; rules on model scores
    left out, as in the tag snapshots) gives ``row``: plain tags by name, group tags as
    ``group.tag`` (the first that holds, else the default), as
    features.rules.evaluate_tags decides them, on one dict without a frame."""
    from features.rules import _holds

    rules = _score_free_rules(rules_file)
    held = {t.name for t in rules.tags if _holds(t.rule, row)}
    for g in rules.groups:
        winner = next((t.name for t in g.tags if _holds(t.rule, row)), g.default)
        if winner:
            held.add(g.column(winner))
    return held


def retag(row: dict[str, Any], rules_file: Path | None = None) -> dict[str, Any]:
    """Set ``row``'s rule tag columns from its features, as compute_tags does: one bool
    per plain tag, each group's winner in the group's column (``lifecycle_stage``), and
    ``tags``, the holding plain tags joined by commas. Returns ``row``."""
    rules = _score_free_rules(rules_file)
    held = rule_tags(row, rules_file)
    for t in rules.tags:
        row[t.name] = t.name in held
    for g in rules.groups:
        row[g.name] = next((n for n in g.names if g.column(n) in held), None)
    row["tags"] = ",".join(t.name for t in rules.tags if t.name in held)
    return row


@lru_cache(maxsize=8)
def _rules(path: str, mtime_ns: int) -> Any:
    """The parsed rules file, cached until it changes (``mtime_ns`` is the cache key)."""
    from features.rules import load_rules

    return load_rules(path)


def tag_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], rules_file: Path | None = None
) -> tuple[list[str], list[str]]:
    """(added, removed): the rule tags that ``after`` has and ``before``
    has not, and the other way round, sorted."""
    held_b = rule_tags(before, rules_file)
    held_a = rule_tags(after, rules_file)
    return sorted(held_a - held_b), sorted(held_b - held_a)
