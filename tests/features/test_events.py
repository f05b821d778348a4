"""What one event does to a member's tag row."""

from __future__ import annotations

from datetime import UTC, datetime

from features.events import EventType, MemberEvent, apply_event, retag, tag_changes

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
DORMANT = retag({
    "recency_days": 120.0, "frequency": 3.0, "monetary": 90.0, "avg_order_value": 30.0,
    "max_order_value": 40.0, "orders_30d": 0.0, "orders_recent": 0.0, "orders_previous": 1.0,
    "spend_recent": 0.0, "tenure_days": 400.0, "last_gap_days": 20.0, "events_30d": 0.0,
    "first_purchase_days": 300.0,
})  # fmt: skip


def test_a_purchase_wakes_a_dormant_member():
    assert DORMANT["dormant"] is True and DORMANT["lifecycle_stage"] == "dormant"
    after = apply_event(DORMANT, MemberEvent("M1", EventType.purchase, NOW, amount=60.0))
    assert after["recency_days"] == 0 and after["dormant"] is False
    assert after["frequency"] == 4 and after["monetary"] == 150 and after["max_order_value"] == 60
    assert after["lifecycle_stage"] == "reactivated" and "dormant" not in after["tags"]
    assert DORMANT["dormant"] is True  # the input row is left as it was
    added, removed = tag_changes(DORMANT, after)
    assert "dormant" in removed and "dormant" not in added


def test_a_first_purchase_makes_a_new_buyer():
    row = retag({**DORMANT, "frequency": 0.0, "monetary": 0.0, "recency_days": None})
    after = apply_event(row, MemberEvent("M1", EventType.purchase, NOW, amount=10.0))
    assert after["first_purchase_days"] == 0 and after["lifecycle_stage"] == "new"


def test_returns_and_browsing():
    ret = apply_event(DORMANT, MemberEvent("M1", EventType.return_, NOW, amount=100.0))
    assert ret["monetary"] == 0 and ret["recency_days"] == 120  # never below zero
    view = apply_event(DORMANT, MemberEvent("M1", EventType.view, NOW))
    assert view["events_30d"] == 1 and view["dormant"] is True
    assert tag_changes(DORMANT, view) == ([], [])


def test_rule_tags_of_one_row_agree_with_the_frame_evaluation():
    import pandas as pd

    from features.events import rule_tags
    from features.rules import DEFAULT_RULES, evaluate_tags, features_of, load_rules

    rules = load_rules(DEFAULT_RULES)
    every = [*rules.tags, *(t for g in rules.groups for t in g.tags)]
    needed = {f for t in every for f, _ in features_of(t.rule)}
    base = retag({**{f: 1.0 for f in needed}, **DORMANT})
    bought = apply_event(base, MemberEvent("M1", EventType.purchase, NOW, 60.0))
    seen = []
    for row in (base, bought):
        ev = evaluate_tags(pd.DataFrame([dict(row)]), rules)
        expected = {c for c in rules.columns() if bool(ev[c].iloc[0])}
        assert rule_tags(row) == expected
        seen.append(expected)
    assert seen[0] != seen[1]  # the purchase changed the member's rule tags
