"""GET /v1/products/{product_id}/similar over the in-memory world (a small SimilarProducts
fitted on the tiny shop's orders)."""

from __future__ import annotations

import dataclasses

import pytest

from models.decision import Decider
from serving.routes.products import public
from serving.schemas import SimilarProductsPublic
from serving.state import AppState
from tests.serving.conftest import in_memory_state

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


def url(product: str) -> str:
    return f"/v1/products/{product}/similar"


@pytest.fixture(scope="module")
def bought(world) -> str:
    """A product some order holds with another product."""
    together = world.model.similar.bought_together
    return next(p for p in ("P0001", "P0002", "P0003") if together.neighbours(p, 1))


def test_a_known_product_gets_both_lists_with_the_serving_policy(serve, world, bought):
    body = serve().get(url(bought), params={"n": 3}).json()
    expected = world.decider().similar_products(bought, 3)
    assert body == public(expected, "2025-12-31").model_dump(mode="json")
    assert body["known_product"] is True and body["as_of"] == "2025-12-31"
    assert 1 <= len(body["bought_together"]) <= 3 and 1 <= len(body["similar"]) <= 3
    top = world.model.similar.bought_together.neighbours(bought, 1)[0]
    assert body["bought_together"][0] == {
        "product_id": top.product_id, "score": pytest.approx(top.score),
        "together": top.together, "reason": f"in {top.together} orders with it",
    }  # fmt: skip
    assert all(x["together"] >= 1 and x["product_id"] != bought
               for x in body["bought_together"] + body["similar"])  # fmt: skip
    assert (body["role"], body["version"]) == ("model", "1")
    assert body["policy"] == "discounted_counts(power=0.5)"
    assert body["gate_reason"] == world.model.reasons["similar"]
    SimilarProductsPublic.model_validate(body)


def test_the_list_length_defaults_to_the_settings(serve, settings, world, bought):
    body = serve().get(url(bought)).json()
    n = settings.serving.default_products
    similar = world.model.similar.similar
    assert len(similar.neighbours(bought, 100)) > n  # the default is what cuts the list
    assert [x["product_id"] for x in body["similar"]] == similar.neighbour_ids(bought, n)


def test_an_unknown_product_is_an_empty_answer_saying_why(serve):
    r = serve().get(url("P-new-in-store"))
    assert r.status_code == 200
    body = r.json()
    assert body["known_product"] is False
    assert body["bought_together"] == [] and body["similar"] == []
    assert body["reason"] == "no order up to 2025-12-31 holds P-new-in-store: no neighbours yet"
    assert body["policy"] == "discounted_counts(power=0.5)"


def test_the_baseline_says_it_serves_raw_counts(serve, bought):
    body = serve(baseline=True).get(url(bought), params={"n": 2}).json()
    assert (body["role"], body["version"], body["policy"]) == ("baseline", "2",
                                                               "co_occurrence_counts")  # fmt: skip
    assert "raw counts" in body["reason"]
    assert [x["score"] for x in body["bought_together"]] == [
        float(x["together"]) for x in body["bought_together"]
    ]


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        (url("P0001"), {"n": 0}, "n"),
        (url("P0001"), {"n": 101}, "n"),
        (url("P0001"), {"n": "many"}, "n"),
        (url("bad id!"), {}, "product_id"),
        (url("P" * 129), {}, "product_id"),
    ],
)
def test_bad_parameters_are_a_422_saying_which(serve, path, params, where):
    r = serve().get(path, params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == where


def test_without_a_similar_model_it_is_a_503_saying_so(serve, settings, world, bought):
    champions = dataclasses.replace(world.model, similar=None)
    state = in_memory_state(settings, world)
    state.decider = Decider(champions, state.decider.churn_features,
                            state.decider.coupon_features, state.as_of)  # fmt: skip
    r = serve(state).get(url(bought))
    assert r.status_code == 503
    assert r.json()["detail"][0]["msg"] == "no similar-products model loaded: run `memberwise run`"


def test_not_ready_is_a_503_with_the_reason(serve, settings):
    state = AppState(settings=settings, error="ModelsNotReady: no 'champion' version")
    r = serve(state).get(url("P0001"))
    assert r.status_code == 503 and r.json()["detail"][0]["msg"].startswith("models or feature")
