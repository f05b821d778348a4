"""GET /v1/members/{member_id}/recommendations over the in-memory world."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.deps import get_now, get_state
from serving.routes.members import public
from serving.schemas import MemberDecisionPublic
from serving.state import AppState
from tests.serving.conftest import NOW, in_memory_state
from tests.serving.world import online_row

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


def url(member: str) -> str:
    return f"/v1/members/{member}/recommendations"


def test_a_known_member_gets_the_decision_cores_answer(serve, world):
    member = world.tags["member_id"].iloc[7]
    body = serve().get(url(member), params={"n": 4}).json()
    expected = world.decider().decide(member, online_row(world.tags, member), NOW, 4)
    assert body["decision_id"].startswith("api1.")  # signed, for feedback
    assert {**body, "decision_id": None} == public(expected, "2025-12-31").model_dump(mode="json")
    assert body["known_member"] is True and len(body["products"]) == 4
    assert 0 <= body["churn_risk"] <= 1
    assert body["lifecycle_stage"] and body["value_tier"] and body["rfm_segment"]
    assert set(body["parts"]) == {"products", "coupon", "send_time", "churn", "tags",
                                  "lifecycle_stage", "value_tier", "rfm_segment"}  # fmt: skip
    assert body["parts"]["churn"] == {
        "role": "model", "version": "1", "reason": expected.churn.reason,
        "policy": world.model.policies["churn"], "gate_reason": world.model.reasons["churn"],
    }  # fmt: skip
    assert body["parts"]["tags"]["role"] == "rules"
    assert body["parts"]["tags"]["version"] == "2025-12-31"
    assert body["model_versions"] == dict.fromkeys(
        ["products", "coupon", "send_time", "churn"], "1"
    )
    assert body["coupon_reason"] == body["parts"]["coupon"]["reason"]


def test_every_part_names_its_policy_and_the_gates_reason(serve, world):
    member = world.tags["member_id"].iloc[7]
    parts = serve().get(url(member)).json()["parts"]
    for name in ("products", "coupon", "send_time", "churn"):
        assert parts[name]["policy"] == world.model.policies[name]
        assert parts[name]["gate_reason"] == world.model.reasons[name]
    for name in ("tags", "lifecycle_stage", "value_tier", "rfm_segment"):
        assert (parts[name]["policy"], parts[name]["gate_reason"]) == ("tag_rules", None)


def categories(world) -> dict[str, str]:
    rec = world.model.products
    return dict(zip(rec._product_ids.tolist(), rec._categories.tolist(), strict=True))


def test_category_keeps_only_that_categorys_products(serve, world):
    member = world.tags["member_id"].iloc[7]
    body = serve().get(url(member), params={"n": 4, "category": "books"}).json()
    assert len(body["products"]) == 4
    assert {categories(world)[p["product_id"]] for p in body["products"]} == {"books"}
    assert "category 'books'" in body["parts"]["products"]["reason"]
    none = serve().get(url(member), params={"category": "garden gnomes"}).json()
    assert none["products"] == []


def test_excluded_products_are_never_recommended(serve, world):
    member = world.tags["member_id"].iloc[7]
    client = serve()
    top = [p["product_id"] for p in client.get(url(member), params={"n": 5}).json()["products"]]
    body = client.get(url(member), params=[("n", 5), ("exclude", top[0]), ("exclude", top[1])])
    ids = [p["product_id"] for p in body.json()["products"]]
    assert len(ids) == 5 and not set(ids) & set(top[:2]) and ids[:3] == top[2:]
    assert "2 product ids excluded" in body.json()["parts"]["products"]["reason"]


def test_a_member_without_purchases_gets_what_their_country_buys(serve, world):
    tags = world.tags
    row = tags[tags["frequency"].eq(0) & tags["country"].notna()].iloc[0]
    body = serve().get(url(row["member_id"]), params={"n": 3}).json()
    assert body["known_member"] is True
    assert [p["reason"] for p in body["products"]] == ["popular_in_segment"] * 3
    expected = world.model.products.recommend(row["member_id"], 3, segment=row["country"])
    assert [p["product_id"] for p in body["products"]] == [p for p, _, _ in expected]
    assert f"members in {row['country']}" in body["parts"]["products"]["reason"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ([("category", "")], "category"),
        ([("category", "<script>")], "category"),
        ([("category", "x" * 101)], "category"),
        ([("exclude", "bad id!")], "exclude"),
        ([("exclude", "")], "exclude"),
        ([("exclude", f"P{i:04d}") for i in range(101)], "exclude"),
    ],
    ids=[
        "empty-category",
        "category-pattern",
        "long-category",
        "exclude-pattern",
        "empty-exclude",
        "too-many-excluded",
    ],  # fmt: skip
)
def test_bad_filters_are_a_422_saying_which(serve, params, where):
    r = serve().get(url("M00001"), params=params)
    assert r.status_code == 422
    assert where in r.json()["detail"][0]["loc"]


def test_the_answer_validates_against_its_schema(serve, world):
    for member in world.tags["member_id"].iloc[:20]:
        MemberDecisionPublic.model_validate(serve().get(url(member)).json())


def test_coupons_are_offered_to_some_members_and_not_others(serve, world):
    client = serve()
    coupons = [client.get(url(m)).json()["coupon"] for m in world.tags["member_id"]]
    offered = [c for c in coupons if c is not None]
    assert offered and len(offered) < len(coupons)
    assert all(c["expected_incremental_margin"] > 0 and c["reason"] for c in offered)


def test_an_unknown_member_gets_a_cold_start_answer(serve):
    body = serve().get(url("someone-new"), params={"n": 3}).json()
    assert body["known_member"] is False
    assert [p["reason"] for p in body["products"]] == ["popular"] * 3
    assert body["coupon"] is None and "unknown member" in body["coupon_reason"]
    assert body["churn_risk"] is None and body["tags"] == []
    assert body["lifecycle_stage"] is None and body["rfm_segment"] is None
    assert body["send_time"]["source"] in {"segment", "global"}


def test_baseline_champions_say_so(serve, world):
    member = world.tags["member_id"].iloc[0]
    body = serve(baseline=True).get(url(member)).json()
    assert body["coupon"] is None
    assert "not been promoted" in body["coupon_reason"]
    assert body["model_roles"] == dict.fromkeys(["products", "coupon", "send_time", "churn"],
                                                "baseline")  # fmt: skip
    assert body["parts"]["products"]["role"] == "baseline"
    assert body["send_time"]["source"] == "global"


def test_a_channel_can_be_forced(serve, world):
    member = world.tags["member_id"].iloc[0]
    body = serve().get(url(member), params={"channel": "push"}).json()
    assert body["send_time"]["channel"] == "push"
    assert "set by the request" in body["parts"]["send_time"]["reason"]


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        (url("M00001"), {"n": 0}, "n"),
        (url("M00001"), {"n": 101}, "n"),
        (url("M00001"), {"channel": "fax"}, "channel"),
        (url("bad id!"), {}, "member_id"),
    ],
)
def test_bad_parameters_are_a_422_saying_which(serve, path, params, where):
    r = serve().get(path, params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == where


def test_product_list_lengths_and_channels_come_from_the_settings(settings, world, api_keys):
    configured = settings.model_copy(update={
        "serving": settings.serving.model_copy(update={"default_products": 3, "max_products": 4}),
        "send_time": settings.send_time.model_copy(update={"message_channels": ("email", "sms")}),
    })  # fmt: skip
    app = create_app(configured)
    state = in_memory_state(configured, world)
    app.dependency_overrides[get_state] = lambda: state
    app.dependency_overrides[get_now] = lambda: NOW
    client = TestClient(app, headers={"X-API-Key": api_keys["storefront"]})
    member = world.tags["member_id"].iloc[7]
    assert len(client.get(url(member)).json()["products"]) == 3
    assert len(client.get(url(member), params={"n": 4}).json()["products"]) == 4
    for params, where, said in (({"n": 5}, "n", "maximum of 4"),
                                ({"channel": "push"}, "channel", "'sms'")):  # fmt: skip
        r = client.get(url(member), params=params)
        assert r.status_code == 422
        issue = r.json()["detail"][0]
        assert issue["loc"] == ["query", where] and said in issue["msg"]


def test_an_unknown_channel_lists_the_allowed_ones(serve):
    msg = serve().get(url("M00001"), params={"channel": "fax"}).json()["detail"][0]["msg"]
    assert all(c in msg for c in ("'email'", "'sms'", "'push'"))


def test_an_empty_member_id_is_a_404(serve):
    r = serve().get("/v1/members//recommendations")
    assert r.status_code == 404 and r.json()["detail"][0]["msg"] == "Not Found"


def test_not_ready_is_a_503_with_the_reason(serve, settings):
    state = AppState(settings=settings, error="ModelsNotReady: no 'champion' version")
    r = serve(state).get(url("M00001"))
    assert r.status_code == 503
    assert r.json()["detail"][0]["msg"].startswith("models or feature store not loaded")
    assert "champion" not in r.text  # the reason is logged, not echoed
