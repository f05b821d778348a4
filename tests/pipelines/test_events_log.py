"""A run sees the events the API logged, and erased members' rows are left out."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from features.events import EventType, MemberEvent
from features.settings import MemberwiseSettings
from pipelines.erasure import drop_erased
from pipelines.events import merge_event_log
from pipelines.ingest import ShopData, TableReport
from serving.events import append_log


def _shop() -> ShopData:
    ol = pd.DataFrame({
        "order_id": ["O1", "O2"], "member_id": ["M1", "M2"],
        "ts": pd.to_datetime(["2026-01-01", "2026-01-02"]).astype("datetime64[us]"),
        "product_id": ["P1", "P2"], "quantity": [1.0, 2.0], "unit_price": [10.0, 5.0],
    })  # fmt: skip
    return ShopData(date(2026, 1, 10), {"order_lines": ol},
                    {"order_lines": TableReport(read=2, kept=2)}, {})  # fmt: skip


def test_logged_events_join_the_next_run(tmp_path):
    s = MemberwiseSettings(home=tmp_path)
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    for e in (
        MemberEvent("M1", EventType.purchase, at, amount=30.0, order_id="O9", quantity=3),
        MemberEvent("M2", EventType.purchase, at, amount=10.0, order_id="O2"),  # in the export
        MemberEvent("M1", EventType.view, at, product_id="P1"),
        MemberEvent("M1", EventType.view, datetime(2026, 2, 1, tzinfo=UTC)),  # after as-of
    ):
        append_log(s, e)
    shop = _shop()
    assert merge_event_log(shop, s) == {"order_lines": 1, "events": 1}
    ol = shop.tables["order_lines"]
    new = ol[ol["order_id"] == "O9"].iloc[0]
    assert (new["member_id"], new["quantity"], new["unit_price"]) == ("M1", 3.0, 10.0)
    assert shop.tables["events"]["event_type"].tolist() == ["view"]


def test_erased_members_rows_are_dropped_and_counted(tmp_path):
    from features.erasure import suppress

    s = MemberwiseSettings(home=tmp_path)
    suppress(s, ["M2"])
    shop = _shop()
    out = drop_erased(shop, s)
    assert out == {"members": 1, "rows": {"order_lines": 1}}
    assert shop.tables["order_lines"]["member_id"].tolist() == ["M1"]
    assert shop.report["order_lines"].kept == 1
