"""POST /v1/campaigns, GET /v1/campaigns[/NAME[/report]], POST /v1/feedback over a home
holding a member table (the contract's columns the planner reads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features.settings import MemberwiseSettings
from tests.serving.conftest import in_memory_state

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


@pytest.fixture
def home(tmp_path, world) -> MemberwiseSettings:
    s = MemberwiseSettings(home=tmp_path / "home")
    s.members_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    table = world.tags.assign(
        coupon_id=rng.choice(["PCT10", "AMT5", None], len(world.tags)),
        expected_incremental_margin=rng.normal(1.0, 1.0, len(world.tags)),
        abuse_risk=0.1, lifecycle=world.tags["lifecycle_stage"],
    )  # fmt: skip
    table.to_parquet(s.members_dir / "members.parquet", index=False)
    return s


@pytest.fixture
def client(serve, home, world):
    return serve(state=in_memory_state(home, world))


BODY = {"name": "api-1", "predicate": "recency_days >= 0",
        "offers": [{"coupon_id": "PCT10", "cost": 1.0}, {"coupon_id": "AMT5", "cost": 2.0}],
        "budget": 12.0, "start": "2026-03-10", "channels": ["email", "sms"],
        "holdout_share": 0.2, "seed": 3}  # fmt: skip


def test_plan_respects_the_budget_and_is_saved(client, home):
    r = client.post("/v1/campaigns", json=BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    s = body["summary"]
    assert s["expected_cost"] <= 12.0 and s["by_arm"]["holdout"] > 0
    assert all(len(x["decision_id"]) == 32 for x in body["sends"])
    assert all(0 < x["propensity"] <= 1 for x in body["sends"])
    again = client.get("/v1/campaigns/api-1", params={"limit": 5}).json()
    assert again["summary"] == s and len(again["sends"]) == 5
    assert [c["campaign"] for c in client.get("/v1/campaigns").json()] == ["api-1"]
    assert client.post("/v1/campaigns", json=BODY).json()["summary"] == s  # same seed


def test_feedback_by_decision_id(client, home):
    sends = client.post("/v1/campaigns", json=BODY).json()["sends"]
    ev = [{"decision_id": sends[0]["decision_id"], "kind": "click", "ts": "2026-03-11T10:00:00Z"},
          {"decision_id": sends[1]["decision_id"], "kind": "redemption",
           "ts": "2026-03-12T10:00:00Z"}]  # fmt: skip
    r = client.post("/v1/feedback", json={"events": ev})
    assert r.status_code == 201 and r.json() == {"recorded": 2}
    lines = (home.state_dir / "campaigns" / "feedback.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["click", "redemption"]
    bad = [{"decision_id": "0" * 32, "kind": "click", "ts": "2026-03-11T10:00:00Z"}]
    r = client.post("/v1/feedback", json={"events": ev[:1] + bad})
    assert r.status_code == 404 and "unknown decision_id" in r.text
    assert len((home.state_dir / "campaigns" / "feedback.jsonl").read_text().splitlines()) == 2
    r = client.post("/v1/feedback", json={"events": [{**ev[0], "kind": "purchase"}]})
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [({"predicate": "nosuch > 1"}, 422, "nosuch"), ({"segment": "vip", "predicate": None}, 404,
      "vip"), ({"budget": -1}, 422, "budget"), ({"name": "../etc"}, 422, "name"),
     ({"predicate": "recency_days > 'x"}, 422, "predicate")],
)  # fmt: skip
def test_bad_requests_are_4xx_with_the_reason(client, change, status, needle):
    r = client.post("/v1/campaigns", json=BODY | change)
    assert r.status_code == status, r.text
    assert needle in r.text


def test_report_is_404_until_measured_and_unknown_names_404(client, home):
    client.post("/v1/campaigns", json=BODY)
    r = client.get("/v1/campaigns/api-1/report")
    assert r.status_code == 404 and "memberwise campaign report" in r.text
    (home.state_dir / "campaigns" / "api-1" / "report.json").write_text('{"campaign": "api-1"}')
    assert client.get("/v1/campaigns/api-1/report").json() == {"campaign": "api-1"}
    assert client.get("/v1/campaigns/nope").status_code == 404
    assert client.get("/v1/campaigns/..%2F..%2Fx").status_code == 404


def test_every_member_answer_carries_a_decision_id_that_feedback_accepts(client, home, world):
    member = str(world.tags["member_id"].iloc[0])
    answer = client.get(f"/v1/members/{member}/recommendations").json()
    did = answer["decision_id"]
    assert did.startswith("api1.")
    r = client.post("/v1/feedback", json={"events": [
        {"decision_id": did, "kind": "impression", "ts": "2026-03-11T10:00:00Z"}]})  # fmt: skip
    assert r.status_code == 201, r.text
    row = json.loads((home.state_dir / "campaigns" / "feedback.jsonl").read_text().splitlines()[-1])
    assert row["member_id"] == member and row["source"] == "api"
    assert row["versions"] == answer["model_versions"]
    coupon = answer["coupon"]["coupon_id"] if answer["coupon"] else None
    assert row["coupon_id"] == coupon
    # an id the deployment did not sign (one character of the payload changed) is refused
    head, body, sig = did.split(".")
    forged = f"{head}.{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{sig}"
    r = client.post("/v1/feedback", json={"events": [
        {"decision_id": forged, "kind": "click", "ts": "2026-03-11T10:00:00Z"}]})  # fmt: skip
    assert r.status_code == 404 and "unknown decision_id" in r.text
