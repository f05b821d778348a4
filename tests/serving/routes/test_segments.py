"""GET /v1/segments/members over the tag snapshot of the in-memory world."""

from __future__ import annotations

import pytest

from serving.state import AppState

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")

URL = "/v1/segments/members"


def test_filters_select_what_the_snapshot_says(serve, world):
    tags = world.tags
    tier = tags["value_tier"].iloc[0]
    want = tags[tags["dormant"] & tags["warn_gap_exceeded"] & (tags["value_tier"] == tier)]
    body = serve().get(URL, params={"tag": ["dormant", "warn_gap_exceeded"], "value_tier": tier,
                                    "limit": 10_000}).json()  # fmt: skip
    assert body["as_of"] == "2025-12-31"
    assert body["count"] == len(want) > 0
    assert [m["member_id"] for m in body["members"]] == sorted(want["member_id"])
    assert all({"dormant", "warn_gap_exceeded"} <= set(m["tags"]) for m in body["members"])


def test_stage_segment_and_scores_filter_too(serve, world):
    tags = world.tags
    stage, seg = tags["lifecycle_stage"].iloc[0], tags["rfm_segment"].iloc[0]
    want = tags[(tags["lifecycle_stage"] == stage) & (tags["rfm_segment"] == seg)
                & (tags["r_score"] >= 2)]  # fmt: skip
    body = (
        serve()
        .get(URL, params={"lifecycle_stage": stage, "rfm_segment": seg, "min_r": 2, "limit": 2})
        .json()
    )
    assert body["count"] == len(want)
    assert len(body["members"]) == min(2, len(want))


@pytest.mark.parametrize(
    ("param", "value", "allowed"),
    [
        ("value_tier", "diamond", ["platinum", "gold", "silver", "bronze", "basic"]),
        ("tag", "vip", ["dormant", "price_sensitive"]),
        ("lifecycle_stage", "asleep", ["new", "churned", "reactivated"]),
        ("rfm_segment", "whales", ["champions", "hibernating", "no_purchase"]),
    ],
)
def test_an_unknown_value_is_a_422_listing_the_allowed_ones(serve, param, value, allowed):
    r = serve().get(URL, params={param: value})
    assert r.status_code == 422
    issue = r.json()["detail"][0]
    assert issue["loc"][:2] == ["query", param]
    assert all(f"'{a}'" in issue["msg"] for a in allowed), issue["msg"]


def test_no_snapshot_is_a_503(serve, settings, world):
    state = AppState(settings=settings, decider=world.decider(), features=object(),  # type: ignore[arg-type]
                     as_of="1999-01-01")  # fmt: skip
    r = serve(state).get(URL)
    assert r.status_code == 503 and "run `memberwise run` first" in r.json()["detail"][0]["msg"]
