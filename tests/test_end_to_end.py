"""Generate a small shop, run the whole pipeline into a temporary home, score, serve."""

from datetime import UTC, date, datetime

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.settings import MemberwiseSettings, get_settings
from pipelines.run import run_pipeline
from pipelines.score import score_members
from pipelines.synthetic import generate
from serving.app import create_app
from serving.deps import get_now
from serving.security import HEADER, KeyStore

pytestmark = pytest.mark.slow
FAST = {"hybrid": {"iterations": 5, "factors": 16}}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    data = tmp_path_factory.mktemp("shop")
    generate(data, members=400, seed=3)
    home = tmp_path_factory.mktemp("home")
    report = run_pipeline(
        data, date(2025, 12, 31), MemberwiseSettings(home=home, products=FAST),
        progress=lambda _: None,
    )  # fmt: skip
    return home, report


def test_run_registers_every_model_and_writes_reports(home):
    path, report = home
    assert set(report["models"]) == {"products", "churn", "coupon", "send_time", "similar"}
    for name, reg in report["models"].items():
        assert reg["champion_version"] is not None, name
        assert reg["champion_role"] in {"model", "baseline"}
    assert report["ingest"]["order_lines"]["quarantined"] == 0
    assert (path / "reports" / "2025-12-31" / "run.json").exists()
    assert (path / "feast" / "online.db").exists() and (path / "mlflow" / "mlflow.db").exists()


def test_score_writes_one_row_per_member(home):
    path, report = home
    scores = score_members(MemberwiseSettings(home=path), progress=lambda _: None)
    for part in ("products", "coupon", "send_time", "churn"):
        assert scores[f"{part}_policy"].map(bool).all(), part
        assert scores[f"{part}_gate_reason"].map(bool).all(), part
    assert scores["tags_policy"].eq("tag_rules").all()
    bought_nothing = scores[scores["rfm_segment"].eq("no_purchase")]
    assert len(bought_nothing) > 0
    assert (
        bought_nothing["product_reasons"]
        .map(lambda r: set(r) <= {"popular_in_segment", "popular"} and "popular_in_segment" in r)
        .all()
    )
    assert len(scores) == report["members"] and scores["member_id"].is_unique
    assert scores["churn_risk"].between(0, 1).all()
    assert scores["products"].map(len).gt(0).all()
    assert (scores["send_at"] > pd.Timestamp.now(tz="UTC")).all()


def key(home, scope: str) -> str:
    """A new API key of ``scope`` in the home's key store."""
    return KeyStore.of(MemberwiseSettings(home=home)).create(scope)[1]


def test_api_answers_known_and_unknown_members(home):
    path, _ = home
    scores = score_members(MemberwiseSettings(home=path), progress=lambda _: None)
    member = scores.sort_values("member_id")["member_id"].iloc[0]
    with TestClient(create_app(MemberwiseSettings(home=path))) as client:
        client.headers[HEADER] = key(path, "admin")
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/readyz").status_code == 200
        body = client.get(f"/v1/members/{member}/recommendations", params={"n": 5}).json()
        assert body["known_member"] is True
        assert 1 <= len(body["products"]) <= 5
        assert body["send_time"]["channel"] in {"email", "sms", "push"}
        # the models deciding for a member; similar products answer on their own route
        assert set(body["model_versions"]) == {"products", "churn", "coupon", "send_time"}
        assert body["coupon"] is None or body["coupon"]["coupon_id"]
        assert body["coupon_reason"]
        cold = client.get("/v1/members/nobody-here/recommendations").json()
        assert cold["known_member"] is False and cold["coupon"] is None
        assert all(p["reason"] == "popular" for p in cold["products"])
        product = body["products"][0]["product_id"]
        similar = client.get(f"/v1/products/{product}/similar", params={"n": 3}).json()
        assert similar["known_product"] is True and similar["bought_together"]
        assert len(similar["bought_together"]) <= 3 and len(similar["similar"]) <= 3
        assert similar["policy"] and similar["gate_reason"] and similar["version"]
        new = client.get("/v1/products/not-a-product/similar").json()
        assert new["known_product"] is False and new["bought_together"] == new["similar"] == []
        filtered = client.get(
            f"/v1/members/{member}/recommendations",
            params=[("n", 5), ("category", "books"), ("exclude", product)],
        ).json()
        assert product not in {p["product_id"] for p in filtered["products"]}
        assert "category 'books'" in filtered["parts"]["products"]["reason"]
        bad = client.get(f"/v1/members/{member}/recommendations", params={"n": 0})
        assert bad.status_code == 422
        seg = client.get("/v1/segments/members", params={"tag": "dormant", "limit": 3}).json()
        assert seg["count"] >= len(seg["members"])
        assert client.get("/v1/segments/members", params={"tag": "nope"}).status_code == 422
        assert client.get("/metrics").status_code == 200


def test_api_and_score_decide_the_same_for_every_member(home):
    """Both go through the decision core, the API on online features, score on the
    snapshot's historical features: the same products, coupon, churn risk, send time and
    segment for every member."""
    path, report = home
    now = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    scores = score_members(MemberwiseSettings(home=path), now=now, progress=lambda _: None)
    assert len(scores) == report["members"]
    app = create_app(MemberwiseSettings(home=path))
    app.dependency_overrides[get_now] = lambda: now
    with TestClient(app, headers={HEADER: key(path, "storefront")}) as client:
        for row in scores.itertuples():
            body = client.get(f"/v1/members/{row.member_id}/recommendations").json()
            assert body["known_member"], row.member_id
            assert [p["product_id"] for p in body["products"]] == list(row.products)
            assert (body["coupon"] or {}).get("coupon_id") == row.coupon_id
            assert body["coupon_reason"] == row.coupon_reason
            assert body["churn_risk"] == pytest.approx(row.churn_risk, abs=1e-9)
            send = body["send_time"]
            assert send["channel"] == row.send_channel
            assert pd.Timestamp(send["at_utc"]) == row.send_at
            assert send["hour_of_week"] == row.send_hour_of_week
            assert body["tags"] == list(row.tags)
            assert (body["lifecycle_stage"], body["value_tier"], body["rfm_segment"]) == (
                row.lifecycle_stage, row.value_tier, row.rfm_segment,
            )  # fmt: skip
            for name, part in body["parts"].items():
                assert (part["role"], part["version"], part["reason"], part["policy"],
                        part["gate_reason"]) == tuple(
                    getattr(row, f"{name}_{a}")
                    for a in ("role", "version", "reason", "policy", "gate_reason")
                ), (row.member_id, name)  # fmt: skip
            assert [p["reason"] for p in body["products"]] == list(row.product_reasons)


def test_the_api_takes_its_product_list_lengths_from_the_settings(home, monkeypatch):
    path, _ = home
    monkeypatch.setenv("MEMBERWISE_HOME", str(path))
    monkeypatch.setenv("MEMBERWISE_SERVING__DEFAULT_PRODUCTS", "3")
    monkeypatch.setenv("MEMBERWISE_SERVING__MAX_PRODUCTS", "4")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), headers={HEADER: key(path, "storefront")}) as client:
            url = "/v1/members/nobody-here/recommendations"
            assert len(client.get(url).json()["products"]) == 3
            assert len(client.get(url, params={"n": 4}).json()["products"]) == 4
            too_many = client.get(url, params={"n": 5})
            assert too_many.status_code == 422
            assert "maximum of 4" in too_many.json()["detail"][0]["msg"]
            bad = client.get(url, params={"channel": "fax"})
            assert bad.status_code == 422 and "email" in bad.json()["detail"][0]["msg"]
    finally:
        get_settings.cache_clear()
