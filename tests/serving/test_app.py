"""The OpenAPI contract: an example on every 200 response (valid against its schema),
enums for every closed vocabulary, typed 404/422/503 bodies on every /v1 route, the /v1
prefix applied once; and the health routes."""

from __future__ import annotations

import pytest

from features.rules import load_rules, tag_names
from features.settings import TagConfig
from features.tags import LIFECYCLE_STAGES, RFM_SEGMENTS
from serving import schemas
from serving.state import AppState

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


@pytest.fixture(scope="module")
def spec(app):
    return app.openapi()


def operations(spec):
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            yield path, method, op


def resolve(spec, schema):
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def test_every_200_response_has_an_example_valid_against_its_model(spec):
    import sys

    from pydantic import BaseModel

    modules = [m for n, m in list(sys.modules.items()) if n.startswith("serving")]
    models = {name: m for module in modules for name, m in vars(module).items()
              if isinstance(m, type) and issubclass(m, BaseModel)}  # fmt: skip
    seen = 0
    for path, method, op in operations(spec):
        ok = op["responses"].get("200") or op["responses"].get("201")
        if ok is None:  # answers with no body
            assert "204" in op["responses"], f"{method.upper()} {path} has no success response"
            continue
        if "application/json" not in ok["content"]:  # streamed exports
            assert set(ok["content"]) <= {"text/csv", "application/vnd.apache.parquet"}, path
            continue
        content = ok["content"]["application/json"]
        assert content.get("example"), f"{method.upper()} {path} has no example"
        schema, example = content["schema"], content["example"]
        if schema.get("type") == "array":  # a list of one model
            schema, example = schema["items"], example[0]
        if "$ref" not in schema:  # a free-form object or a scalar: the example has its type
            kinds = {"object": dict, "string": str, "integer": int, "number": (int, float)}
            assert isinstance(example, kinds[schema["type"]]), f"{method.upper()} {path}"
            continue
        name = schema["$ref"].rsplit("/", 1)[-1]
        models[name].model_validate(example)
        seen += 1
    assert seen >= 9  # health, readiness, decision, similar, segments, reload, keys (3), ...


def test_closed_vocabularies_are_enums(spec):
    comp = spec["components"]["schemas"]
    assert comp["Tag"]["enum"] == tag_names(load_rules())
    assert comp["LifecycleStage"]["enum"] == list(LIFECYCLE_STAGES)
    assert comp["RfmSegment"]["enum"] == [s for s, _, _ in RFM_SEGMENTS] + ["no_purchase"]
    assert comp["ValueTier"]["enum"] == list(TagConfig().value_tier_names)
    assert comp["Channel"]["enum"] == ["email", "sms", "push"]
    assert comp["Role"]["enum"] == ["model", "baseline", "rules"]
    assert comp["HealthStatus"]["enum"] == ["ok", "ready", "not ready", "degraded"]
    decision = comp["MemberDecisionPublic"]["properties"]
    assert decision["tags"]["items"] == {"$ref": "#/components/schemas/Tag"}
    params = {
        (path, p["name"]): p["schema"]
        for path, _, op in operations(spec)
        for p in op.get("parameters", [])
    }
    segments = "/v1/segments/members"
    assert "Tag" in str(params[segments, "tag"])
    for name, enum in (("lifecycle_stage", "LifecycleStage"), ("rfm_segment", "RfmSegment"),
                       ("value_tier", "ValueTier")):  # fmt: skip
        assert enum in str(params[segments, name])
    assert "Channel" in str(params["/v1/members/{member_id}/recommendations", "channel"])


def test_every_v1_route_documents_typed_errors(spec):
    v1 = [(path, op) for path, _, op in operations(spec) if path.startswith("/v1/")]
    assert {p for p, _ in v1} >= {"/v1/members/{member_id}/recommendations",
                                  "/v1/products/{product_id}/similar",
                                  "/v1/segments/members", "/v1/admin/reload",
                                  "/v1/admin/keys", "/v1/admin/keys/{key_id}"}  # fmt: skip
    for path, op in v1:
        for code, model in (("404", "ErrorPublic"), ("422", "ValidationErrorPublic"),
                            ("503", "ErrorPublic")):  # fmt: skip
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model}"}, (path, code)
    assert not any("/v1/v1" in p for p in spec["paths"])


def test_health_and_readiness(serve, settings):
    client = serve()
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    not_ready = serve(AppState(settings=settings, error="no models")).get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["detail"] == "no models"
    leaky = AppState(settings=settings, error="OperationalError: /srv/home/mlflow.db at db:5432")
    assert serve(leaky).get("/readyz").json()["detail"] == "OperationalError"


def test_the_storefront_filters_are_documented(spec):
    params = {p["name"]: p for p in
              spec["paths"]["/v1/members/{member_id}/recommendations"]["get"]["parameters"]}  # fmt: skip
    category = params["category"]["schema"]["anyOf"][0]
    assert category["pattern"] == schemas.CATEGORY_PATTERN
    assert category["maxLength"] == schemas.CATEGORY_MAX_LENGTH
    exclude = params["exclude"]["schema"]["anyOf"][0]
    assert exclude["type"] == "array" and exclude["maxItems"] == 100
    assert exclude["items"]["pattern"] == schemas.ID_PATTERN
    assert "basket" in params["exclude"]["description"]
    similar = spec["paths"]["/v1/products/{product_id}/similar"]["get"]
    assert {p["name"] for p in similar["parameters"]} == {"product_id", "n"}
    assert "known_product" in similar["description"]
