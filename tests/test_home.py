"""A home that survives failure, forgets members and sees events, end to end on a small
shop: one real run, a real event, a real erasure, a run that fails late, a run after it."""

from __future__ import annotations

import json
import shutil
from datetime import date

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from features import repo
from features.settings import MemberwiseSettings
from models.registry import CHAMPION, registered_name
from pipelines import home as home_mod
from pipelines import steps
from pipelines.cli import app as cli
from pipelines.run import run_pipeline
from pipelines.score import score_members
from pipelines.synthetic import generate
from serving.app import create_app
from serving.events import read_row
from serving.security import HEADER, KeyStore

pytestmark = pytest.mark.slow
AS_OF = date(2025, 12, 31)
FAST = {"hybrid": {"iterations": 3, "factors": 8}}


def _settings(path, **kw) -> MemberwiseSettings:
    return MemberwiseSettings(home=path, products=FAST, events={"broker": "none"}, **kw)


def _client(s: MemberwiseSettings) -> TestClient:
    """A client of the app on ``s``'s home with a new admin API key of its key store."""
    client = TestClient(create_app(s))
    client.headers[HEADER] = KeyStore.of(s).create("admin", label="tests")[1]
    return client


def _champions(s: MemberwiseSettings) -> dict[str, str]:
    from mlflow import MlflowClient

    from models.registry import MODEL_NAMES, _point_at

    _point_at(s.tracking_uri)
    client = MlflowClient()
    return {
        n: str(client.get_model_version_by_alias(registered_name(n), CHAMPION).version)
        for n in MODEL_NAMES
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    data = tmp_path_factory.mktemp("shop")
    generate(data, members=150, seed=5)
    return data


@pytest.fixture(scope="module")
def home(tmp_path_factory, shop):
    path = tmp_path_factory.mktemp("home")
    run_pipeline(shop, AS_OF, _settings(path), progress=lambda _: None)
    return path


def _tags(s: MemberwiseSettings) -> pd.DataFrame:
    return pd.read_parquet(repo.snapshot_path(s, AS_OF))


def test_a_second_run_refuses_while_one_holds_the_home(home, shop):
    s = _settings(home)
    with home_mod.run_lock(s):
        with pytest.raises(home_mod.RunInProgress, match="one at a time"):
            run_pipeline(shop, AS_OF, s)
        res = CliRunner().invoke(cli, ["run", "--data", str(shop), "--as-of", "2025-12-31",
                                       "--home", str(home)])  # fmt: skip
        assert res.exit_code == 2 and "another `memberwise run`" in res.output


def test_a_purchase_makes_a_dormant_member_active_in_the_next_call(home):
    s = _settings(home)
    tags = _tags(s)
    member = tags.loc[tags["dormant"] & (tags["frequency"] > 0), "member_id"].iloc[0]
    with _client(s) as client:
        before = client.get(f"/v1/members/{member}/recommendations").json()
        assert "dormant" in before["tags"]
        r = client.post("/v1/events", json={"member_id": member, "type": "purchase",
                                            "amount": 25.0})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["visible"] and body["recency_days"] == 0 and body["dormant"] is False
        assert "dormant" in body["removed"]
        after = client.get(f"/v1/members/{member}/recommendations").json()
        assert "dormant" not in after["tags"]
        bad = client.post("/v1/events", json={"member_id": member, "type": "purchase"})
        assert bad.status_code == 422
    logged = list(s.events_log_dir.glob("*.jsonl"))
    lines = [json.loads(x) for p in logged for x in p.read_text().splitlines()]
    assert [ln["member_id"] for ln in lines] == [member]


@pytest.fixture(scope="module")
def erased(home):
    """A member erased through the API, and the API's answers right after."""
    s = _settings(home)
    tags = _tags(s)
    member = str(tags.loc[tags["frequency"] > 1, "member_id"].iloc[-1])
    with _client(s) as client:
        assert client.get(f"/v1/members/{member}/recommendations").json()["known_member"]
        r = client.delete(f"/v1/members/{member}")
        after = client.get(f"/v1/members/{member}/recommendations").json()
        event = client.post("/v1/events", json={"member_id": member, "type": "view"})
    return member, r, after, event, read_row(repo.feature_store(s), member)


def test_erasure_removes_the_member_from_the_online_store_at_once(erased, home):
    member, r, after, event, online = erased
    assert r.status_code == 200 and r.json() == {"erased": True, "online_removed": True}
    assert online is None  # no row left in the online store
    # the products model trained before the erasure still knows the id until the next run
    assert after["tags"] == [] and after["churn_risk"] is None
    assert event.status_code == 410
    s = _settings(home)
    text = s.suppression_file.read_text()
    assert member not in text and len(text.split()) == 1  # a digest, not the id


def test_a_run_failing_late_leaves_the_previous_run_serving(erased, home, shop, monkeypatch):
    s = _settings(home)
    before_champions = _champions(s)
    before_latest = (home / "latest_run.json").read_text()
    before_gen = home_mod.current(home)
    before_snapshot = _tags(s)

    def boom(*a, **k):
        raise RuntimeError("injected failure after training and registration")

    monkeypatch.setattr(steps, "materialize", boom)
    with pytest.raises(RuntimeError, match="injected"):
        run_pipeline(shop, date(2026, 1, 15), s, progress=lambda _: None)
    monkeypatch.undo()
    assert home_mod.current(home) == before_gen
    assert (home / "latest_run.json").read_text() == before_latest
    assert _champions(s) == before_champions  # versions were added, aliases did not move
    pd.testing.assert_frame_equal(_tags(s), before_snapshot)
    assert sorted(p.name for p in (home / "generations").iterdir()) == [before_gen.name]
    with _client(s) as client:
        assert client.get("/readyz").status_code == 200


def test_the_next_run_leaves_the_erased_member_out_everywhere(erased, home, shop):
    member = erased[0]
    s = _settings(home)
    report = run_pipeline(shop, AS_OF, s, progress=lambda _: None)
    assert report["ingest"]["erased"]["members"] == 1
    assert report["ingest"]["erased"]["rows"]["order_lines"] > 0
    assert member not in set(_tags(s)["member_id"])
    for p in repo.tags_source_path(s).glob("*.parquet"):
        assert member not in set(pd.read_parquet(p)["member_id"]), p.name
    scores = score_members(s, progress=lambda _: None)
    assert member not in set(scores["member_id"]) and len(scores) > 0
    with _client(s) as client:
        got = client.get(f"/v1/members/{member}/recommendations").json()
        assert got["known_member"] is False


def test_a_copied_home_serves_and_runs_on_its_own(home, shop, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(home, copy, symlinks=True)
    s = _settings(copy)
    moved = home_mod.rebase_mlflow(s)  # what the next run into the copy does first
    assert moved > 0
    original = tmp_path / "gone"
    shutil.move(str(home), original)  # the original is no longer where MLflow recorded it
    try:
        with _client(s) as client:
            assert client.get("/readyz").status_code == 200
        scores = score_members(s, progress=lambda _: None)
        assert len(scores) > 0
    finally:
        shutil.move(str(original), home)
