"""Keys and scopes (401, 403, 200 on every route), revocation, rate limits (in memory and
shared through Redis), bounded bodies, CORS, one error body with a request id, the JSON
access log without member ids, the audit trail, metrics by status, and the console's key
check against the real key store."""

from __future__ import annotations

import json
import logging
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from features.settings import MemberwiseSettings
from pipelines.cli import app as cli
from serving.app import create_app
from serving.deps import get_now, get_state
from serving.logs import audit_entries, pseudonym
from serving.security import HEADER, KeyStore
from tests.conftest import require_service
from tests.serving.conftest import NOW, in_memory_state

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")

RECS = "/v1/members/M00001/recommendations"
SIMILAR = "/v1/products/P0001/similar"
SEGMENTS = "/v1/segments/members"
ROUTES = {RECS: "storefront", SIMILAR: "storefront", SEGMENTS: "marketing"}


@pytest.mark.parametrize("url", list(ROUTES))
def test_no_key_is_a_401_saying_how_to_get_one(serve, url):
    r = serve(key=None).get(url)
    assert r.status_code == 401
    body = r.json()
    assert body["detail"][0]["type"] == "unauthorized"
    assert (
        HEADER in body["detail"][0]["msg"] and "memberwise keys create" in body["detail"][0]["msg"]
    )
    assert body["request_id"] == r.headers["X-Request-ID"]
    assert r.headers["WWW-Authenticate"] == HEADER


@pytest.mark.parametrize("url", list(ROUTES))
def test_an_unknown_key_is_a_401(serve, url):
    r = serve(key=None).get(url, headers={HEADER: "mw_k000_not-a-real-key"})
    assert r.status_code == 401
    assert r.json()["detail"][0]["msg"] == "the API key is not valid or has been revoked"


@pytest.mark.parametrize("url,scope", list(ROUTES.items()))
def test_each_scope_reaches_its_routes_and_only_them(serve, url, scope):
    for key in ("storefront", "marketing", "admin"):
        r = serve(key=key).get(url)
        if key in (scope, "admin"):
            assert r.status_code == 200, (key, url, r.text)
        else:
            assert r.status_code == 403, (key, url)
            msg = r.json()["detail"][0]["msg"]
            assert msg == f"a {key} key cannot call this route: it needs a admin or {scope} key"


def test_a_revoked_key_is_refused_at_once(serve, settings):
    store = KeyStore.of(settings)
    key, token = store.create("storefront", label="to revoke")
    client = serve(key=None)
    assert client.get(RECS, headers={HEADER: token}).status_code == 200
    store.revoke(key.key_id)
    assert client.get(RECS, headers={HEADER: token}).status_code == 401
    assert [k.revoked_at is not None for k in store.list() if k.key_id == key.key_id] == [True]


def test_only_hashes_of_tokens_are_stored(settings, api_keys):
    raw = (settings.state_dir / "keys.sqlite").read_bytes()
    for token in api_keys.values():
        assert token.encode() not in raw
        assert token.split("_", 2)[2].encode() not in raw


def test_the_openapi_spec_declares_the_key_scheme(app):
    spec = app.openapi()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": HEADER,
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }  # fmt: skip
    for url in ("/v1/members/{member_id}/recommendations", "/v1/products/{product_id}/similar",
                SEGMENTS):  # fmt: skip
        op = spec["paths"][url]["get"]
        assert op["security"] == [{"ApiKey": []}]
        for code in ("401", "403", "429"):
            assert code in op["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def _app(settings: MemberwiseSettings, world, **security) -> TestClient:
    configured = settings.model_copy(
        update={"security": settings.security.model_copy(update=security)}
    )
    app = create_app(configured)
    state = in_memory_state(configured, world)
    app.dependency_overrides[get_state] = lambda: state
    app.dependency_overrides[get_now] = lambda: NOW
    return TestClient(app)


def test_a_key_over_its_rate_is_a_429_with_retry_after(settings, world, api_keys):
    client = _app(settings, world, rate_limit_storefront="3/minute")
    other = KeyStore.of(settings).create("storefront")[1]
    headers = {HEADER: api_keys["storefront"]}
    assert [client.get(RECS, headers=headers).status_code for _ in range(4)] == [200] * 3 + [429]
    r = client.get(RECS, headers=headers)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 61
    assert r.json()["detail"][0]["type"] == "rate_limited"
    assert client.get(RECS, headers={HEADER: other}).status_code == 200  # per key


@pytest.mark.services
def test_replicas_share_rate_limits_through_redis(settings, world):
    require_service("Redis", "127.0.0.1", 6379)
    redis = {"rate_limit_storage": "redis://127.0.0.1:6379", "rate_limit_marketing": "3/minute"}
    replicas = [_app(settings, world, **redis) for _ in range(2)]
    token = KeyStore.of(settings).create("marketing", label=f"redis {uuid4().hex}")[1]
    codes = [replicas[i % 2].get(SEGMENTS, headers={HEADER: token}).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_body_larger_than_allowed_is_a_413(settings, world):
    client = _app(settings, world, max_request_bytes=1000)
    r = client.post("/console/signin", data={"key": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["detail"][0] == {
        "loc": [], "msg": "the request body is larger than 1000 bytes", "type": "too_large"
    }  # fmt: skip
    assert r.json()["request_id"] == r.headers["X-Request-ID"]


def test_cors_is_a_setting(settings, world, api_keys):
    client = _app(settings, world, cors_origins=("https://shop.example",))
    r = client.options(RECS, headers={"Origin": "https://shop.example",
                                      "Access-Control-Request-Method": "GET",
                                      "Access-Control-Request-Headers": HEADER})  # fmt: skip
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    r = client.get(RECS, headers={"Origin": "https://evil.example", HEADER: api_keys["admin"]})
    assert "access-control-allow-origin" not in r.headers
    default = _app(settings, world).get(RECS, headers={"Origin": "https://shop.example",
                                                       HEADER: api_keys["admin"]})  # fmt: skip
    assert "access-control-allow-origin" not in default.headers


def test_validation_errors_have_the_one_body(serve):
    r = serve().get(SEGMENTS, params={"offset": 2**63})
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"detail", "request_id"}
    assert body["detail"][0]["loc"] == ["query", "offset"]
    assert set(body["detail"][0]) == {"loc", "msg", "type"}


class Broken:
    def member(self, *args, **kwargs):
        raise RuntimeError("could not connect to redis at 10.1.2.3:6379 reading /srv/home/x.db")


def _status_count(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "memberwise_requests_total", {"route": route, "method": "GET", "status": status}
    )
    return value or 0.0


def test_an_exception_is_a_500_without_its_text_and_is_counted(serve, settings, world):
    state = in_memory_state(settings, world)
    state.decider.decide = Broken().member  # type: ignore[method-assign]
    route = "/v1/members/{member_id}/recommendations"
    before, denied = _status_count(route, "500"), _status_count(route, "401")
    r = serve(state).get(RECS)
    assert r.status_code == 500
    assert "redis" not in r.text and "/srv" not in r.text and "10.1.2.3" not in r.text
    assert r.json()["detail"][0]["type"] == "internal_error"
    assert r.json()["request_id"] in r.json()["detail"][0]["msg"]
    serve(key=None).get(RECS)

    assert _status_count(route, "500") == before + 1
    assert _status_count(route, "401") == denied + 1


def test_the_access_log_is_json_with_a_request_id_and_no_member_id(serve, settings, caplog):
    from pythonjsonlogger.json import JsonFormatter

    from serving.logs import RequestIdFilter

    with caplog.at_level(logging.INFO, logger="memberwise.access"):
        r = serve().get(RECS, headers={"X-Request-ID": "abcdef0123456789"})
    assert r.headers["X-Request-ID"] == "abcdef0123456789"
    records = [x for x in caplog.records if x.name == "memberwise.access"]
    assert records
    fmt = JsonFormatter("{message}{request_id}", style="{")
    line = json.loads(fmt.format(records[-1]) if RequestIdFilter().filter(records[-1]) else "")
    assert line["route"] == "/v1/members/{member_id}/recommendations"
    assert line["member"] == pseudonym("M00001", settings) != "M00001"
    assert line["status"] == 200 and line["key_id"].startswith("k")
    assert all("M00001" not in fmt.format(x) for x in records)


def test_segment_exports_are_audited_without_member_ids(serve, settings):
    before = len(audit_entries(settings))
    r = serve(key="marketing").get(SEGMENTS, params={"tag": "dormant", "limit": 5})
    assert r.status_code == 200
    entries = audit_entries(settings)[before:]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["event"] == "export" and entry["route"] == SEGMENTS
    assert entry["members"] == len(r.json()["members"])
    assert entry["filters"]["tag"] == ["dormant"]
    assert entry["request_id"] == r.headers["X-Request-ID"]
    key = KeyStore.of(settings)
    assert entry["key_id"] in {k.key_id for k in key.list() if k.scope == "marketing"}
    assert not any(m["member_id"] in json.dumps(entry) for m in r.json()["members"])


def test_keys_are_made_listed_and_revoked_from_the_command_line_and_audited(tmp_path):
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    made = runner.invoke(cli, ["keys", "create", "--scope", "storefront", "--label", "web", *home])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    settings = MemberwiseSettings(home=tmp_path)
    key = KeyStore.of(settings).lookup(token)
    assert key is not None and key.scope == "storefront" and key.label == "web"
    listed = runner.invoke(cli, ["keys", "list", *home])
    assert key.key_id in listed.stdout and token not in listed.stdout
    assert runner.invoke(cli, ["keys", "revoke", key.key_id, *home]).exit_code == 0
    assert KeyStore.of(settings).lookup(token) is None
    unknown = runner.invoke(cli, ["keys", "revoke", "k-nope", *home])
    assert unknown.exit_code == 2
    bad = runner.invoke(cli, ["keys", "create", "--scope", "root", *home])
    assert bad.exit_code == 2
    no_shop = runner.invoke(cli, ["keys", "create", "--scope", "admin", "--shop", "x", *home])
    assert no_shop.exit_code == 2 and "no shop 'x'" in no_shop.output
    events = [(e["event"], e["subject"]) for e in audit_entries(settings)]
    assert events == [("key.create", key.key_id), ("key.revoke", key.key_id)]
    assert token not in (tmp_path / "var" / "audit.jsonl").read_text()


def test_a_storefront_key_cannot_open_the_console(settings, world, api_keys):
    app = create_app(settings)  # the console checks keys against the app's key store
    state = in_memory_state(settings, world)
    app.dependency_overrides[get_state] = lambda: state
    client = TestClient(app)
    r = client.post("/console/signin", data={"key": api_keys["storefront"]},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and "cannot open the console" in r.text
    r = client.post("/console/signin", data={"key": "mw_kfake_nothing"}, follow_redirects=False)
    assert r.status_code == 401
    for scope in ("marketing", "admin"):
        r = client.post("/console/signin", data={"key": api_keys[scope]}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/overview"
    client.cookies.set("memberwise_console", api_keys["storefront"])
    assert client.get("/console/overview", follow_redirects=False).status_code == 303


def test_admin_keys_make_list_and_revoke_keys_over_the_api_audited(serve, settings):
    admin, marketing = serve(), serve(key="marketing")
    assert marketing.get("/v1/admin/keys").status_code == 403
    assert (
        serve(key="storefront").post("/v1/admin/keys", json={"scope": "admin"}).status_code == 403
    )
    before = len(audit_entries(settings))
    made = admin.post("/v1/admin/keys", json={"scope": "storefront", "label": "kiosk"})
    assert made.status_code == 201
    body = made.json()
    assert body["scope"] == "storefront" and body["label"] == "kiosk" and body["revoked_at"] is None
    token = body["token"]
    assert serve(key=None).get(RECS, headers={HEADER: token}).status_code == 200
    listed = admin.get("/v1/admin/keys").json()["keys"]
    assert body["key_id"] in {k["key_id"] for k in listed}
    assert token not in json.dumps(listed)
    revoked = admin.delete(f"/v1/admin/keys/{body['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert serve(key=None).get(RECS, headers={HEADER: token}).status_code == 401
    assert admin.delete("/v1/admin/keys/k0000000000").status_code == 404
    bad = admin.post("/v1/admin/keys", json={"scope": "marketing", "shop": "nowhere"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "shop"]
    assert admin.post("/v1/admin/keys", json={"scope": "root"}).status_code == 422
    events = [(e["event"], e["subject"]) for e in audit_entries(settings)[before:]]
    assert events == [("key.create", body["key_id"]), ("key.revoke", body["key_id"])]
    assert token not in (settings.state_dir / "audit.jsonl").read_text()


def test_an_unknown_query_parameter_is_a_422_naming_the_known_ones(serve):
    r = serve().get(SEGMENTS, params={"limt": 5})
    assert r.status_code == 422
    issue = r.json()["detail"][0]
    assert issue["loc"] == ["query", "limt"] and "'limit'" in issue["msg"]
