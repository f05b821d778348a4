"""POST /v1/segments/query, saved segments, exports, lookalikes and the member profile over a
member store loaded with a member table derived from the in-memory world's tags."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from features.member_store import MemberStore
from features.settings import MemberwiseSettings, get_settings
from serving.app import create_app
from serving.security import HEADER, KeyStore
from tests.member_fixtures import handmade_members, members_from_tags

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


@pytest.fixture(scope="module")
def table(world) -> pd.DataFrame:
    return members_from_tags(world.tags)


@pytest.fixture(scope="module")
def client(tmp_path_factory, table) -> Iterator[TestClient]:
    settings = MemberwiseSettings(home=tmp_path_factory.mktemp("home"))
    MemberStore(settings).load(table)
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    yield TestClient(app, headers={HEADER: KeyStore.of(settings).create("marketing")[1]})


def q(client: TestClient, predicate=None, **kw):
    return client.post("/v1/segments/query", json={"predicate": predicate, **kw})


def test_query_answers_count_breakdowns_kpis_and_a_page(client, table):
    pred = {"all": [{"feature": "tags", "op": "==", "value": "dormant"},
                    {"feature": "monetary", "op": ">", "value": 50}]}  # fmt: skip
    want = table[table["tags"].map(lambda t: "dormant" in t) & (table["monetary"] > 50)]
    r = q(client, pred, limit=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(want) > 5
    assert body["kpis"]["arpu"] == pytest.approx(want["spend"].sum() / len(want))
    assert sum(b["count"] for b in body["breakdowns"]["value_tier"]) == len(want)
    assert [m["member_id"] for m in body["members"]] == sorted(want["member_id"])[:5]
    seen = [m["member_id"] for m in body["members"]]
    cursor = body["next_cursor"]
    while cursor:
        nxt = q(client, pred, limit=5, cursor=cursor).json()
        seen += [m["member_id"] for m in nxt["members"]]
        cursor = nxt["next_cursor"]
    assert seen == sorted(want["member_id"])


@pytest.mark.parametrize(
    ("predicate", "node"),
    [
        ({"all": ["monetary > 1", {"feature": "no_such", "value": 1}]}, "$.all[1]"),
        ({"any": [{"not": {"feature": "monetary", "op": "=~", "value": 1}}]}, "$.any[0].not"),
        ("monetary > 'x'", "$"),
        ("monetary > 1; DROP TABLE members", "$"),
    ],
)
def test_an_invalid_predicate_is_a_422_naming_the_node(client, predicate, node):
    r = q(client, predicate)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "predicate", node]
    assert detail["msg"]


def test_unknown_fields_and_bad_limits_are_422(client):
    assert client.post("/v1/segments/query", json={"predicate": None, "oops": 1}).status_code == 422  # fmt: skip
    assert client.post("/v1/segments/query", json={"limit": -1}).status_code == 422


def test_saved_segments_crud_with_versions(client):
    pred = {"feature": "tags", "op": "==", "value": "dormant"}
    r1 = client.put("/v1/segments/saved/lapsed", json={"predicate": pred, "description": "v1"})
    assert r1.status_code == 200, r1.text
    r2 = client.put("/v1/segments/saved/lapsed", json={"predicate": "recency_days > 200"})
    assert (r1.json()["version"], r2.json()["version"]) == (1, 2)
    assert client.get("/v1/segments/saved/lapsed").json()["predicate"] == "recency_days > 200"
    assert client.get("/v1/segments/saved/lapsed", params={"version": 1}).json()["predicate"] == pred  # fmt: skip
    assert [s["version"] for s in client.get("/v1/segments/saved/lapsed/versions").json()["segments"]] == [2, 1]  # fmt: skip
    assert "lapsed" in [s["name"] for s in client.get("/v1/segments/saved").json()["segments"]]
    now = client.post("/v1/segments/saved/lapsed/query", params={"limit": 0}).json()
    assert now["count"] == r2.json()["count"] and now["members"] == []
    bad = client.put("/v1/segments/saved/broken", json={"predicate": {"feature": "nope", "value": 1}})  # fmt: skip
    assert bad.status_code == 422
    assert client.delete("/v1/segments/saved/lapsed").status_code == 204
    assert client.get("/v1/segments/saved/lapsed").status_code == 404
    assert client.put("/v1/segments/saved/..%2Fx", json={"predicate": "monetary > 1"}).status_code in (404, 422)  # fmt: skip


def test_export_streams_csv_and_parquet(client, table):
    want = sorted(table.loc[table["monetary"] > 100, "member_id"])
    r = client.post("/v1/segments/export", json={"predicate": "monetary > 100", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert list(pd.read_csv(io.BytesIO(r.content))["member_id"]) == want
    r = client.post("/v1/segments/export", json={"predicate": "monetary > 100", "format": "parquet"})  # fmt: skip
    assert pq.read_table(io.BytesIO(r.content)).column("member_id").to_pylist() == want
    client.put("/v1/segments/saved/big spenders", json={"predicate": "monetary > 100"})
    r = client.get("/v1/segments/saved/big spenders/export", params={"format": "csv"})
    assert r.status_code == 200 and "big_spenders.csv" in r.headers["content-disposition"]
    assert client.post("/v1/segments/export", json={"predicate": {"feature": "x", "value": 1}}).status_code == 422  # fmt: skip


def test_lookalike_excludes_the_seed(client, table):
    seed = {"feature": "value_tier", "op": "==", "value": str(table["value_tier"].iloc[0])}
    r = client.post("/v1/segments/lookalike", json={"predicate": seed, "size": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    in_seed = set(table.loc[table["value_tier"] == seed["value"], "member_id"])
    assert body["seed_count"] == len(in_seed)
    found = [m["member_id"] for m in body["members"]]
    assert len(found) == 7 and not set(found) & in_seed
    scores = [m["score"] for m in body["members"]]
    assert scores == sorted(scores, reverse=True)
    assert client.post("/v1/segments/lookalike", json={"size": 3}).status_code == 422


def test_profile_has_reasons_rfm_and_the_next_order(client, table):
    row = table[table["frequency"] >= 2].iloc[0]
    r = client.get(f"/v1/members/{row['member_id']}/profile")
    assert r.status_code == 200, r.text
    p = r.json()
    assert [t["tag"] for t in p["tags"]] == list(row["tags"])
    assert all(t["reason"] for t in p["tags"])
    assert p["rfm"]["r_score"] == row["r_score"] and p["level"] == row["level"]
    assert p["expected_next_order_date"] is not None
    assert p["expected_next_order_date"] > str(row["last_order_date"])
    assert client.get("/v1/members/NOPE999/profile").status_code == 404
    assert client.get("/v1/members/bad id!/profile").status_code == 422


def test_routes_say_when_no_member_table_is_loaded(tmp_path):
    settings = MemberwiseSettings(home=tmp_path)
    app = create_app(settings)
    app.dependency_overrides[get_settings] = lambda: settings
    c = TestClient(app, headers={HEADER: KeyStore.of(settings).create("marketing")[1]})
    r = c.post("/v1/segments/query", json={})
    assert r.status_code == 503 and "memberwise run" in r.json()["detail"][0]["msg"]
    assert c.get("/v1/members/M1/profile").status_code == 503
    MemberStore(settings).load(handmade_members())
    assert c.post("/v1/segments/query", json={}).json()["count"] == 5


def test_profile_reasons_quote_the_value_and_the_threshold(client, table):
    row = table[table["tags"].map(lambda t: "dormant" in t)].iloc[0]
    tags = {t["tag"]: t["reason"] for t in client.get(f"/v1/members/{row['member_id']}/profile").json()["tags"]}  # fmt: skip
    assert f"{row['recency_days']:.2f}".rstrip("0").rstrip(".") in tags["dormant"]
    assert "60" in tags["dormant"]  # the rule's threshold
