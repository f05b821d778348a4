"""The console's campaigns page over a home whose member table carries the decision
core's coupon and margin: the preview respects the budget, saving writes the plan, the
campaign's page shows the report's lift and interval once measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features import member_table
from features.settings import MemberwiseSettings
from serving.deps import get_state
from tests.serving.conftest import in_memory_state
from tests.serving.console.conftest import KEYS, sign_in
from tests.serving.world import AS_OF

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


def campaign_home(root, world) -> MemberwiseSettings:
    """A home whose member table is the world's tags plus a coupon and its margin."""
    s = MemberwiseSettings(home=root)
    s.home_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    table = world.tags.assign(
        coupon_id=rng.choice(["PCT10", "AMT5"], len(world.tags)),
        expected_incremental_margin=rng.normal(2.0, 1.0, len(world.tags)),
    )  # fmt: skip
    s.members_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(member_table.path(s.members_dir), index=False)
    (s.home_dir / "latest_run.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    return s


@pytest.fixture
def client(app, world, tmp_path):
    s = campaign_home(tmp_path / "home", world)
    state = in_memory_state(s, world)
    app.dependency_overrides[get_state] = lambda: state
    app.state.authenticate = KEYS.get
    c = TestClient(app, base_url="http://testserver")
    sign_in(c)
    yield c, s
    app.dependency_overrides.pop(get_state, None)


FORM = {"name": "c-page", "predicate": "recency_days >= 0", "coupon": ["PCT10", "AMT5", ""],
        "cost": ["1", "2", "0"], "budget": "15", "holdout": "0.2", "channel": ["email", "sms"],
        "cap": "3", "start": "2026-03-10"}  # fmt: skip


def test_preview_respects_the_budget_and_saves_nothing(client):
    c, s = client
    page = c.get("/console/campaigns")
    assert page.status_code == 200 and 'for="c-budget"' in page.text
    r = c.post("/console/campaigns/preview", data=FORM)
    assert r.status_code == 200
    assert 'data-testid="budget-check">Within budget' in r.text
    assert "15.00" in r.text
    assert not (s.state_dir / "campaigns").exists()


def test_bad_form_shows_the_reason_in_place(client):
    c, _ = client
    r = c.post("/console/campaigns/preview", data=FORM | {"predicate": "nosuch > 1"})
    assert r.status_code == 200 and 'role="alert"' in r.text and "nosuch" in r.text
    r = c.post("/console/campaigns/preview", data=FORM | {"holdout": "2"})
    assert "holdout_share" in r.text


def test_save_then_the_campaign_page_shows_the_report(client):
    c, s = client
    r = c.post("/console/campaigns", data=FORM, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/campaigns/c-page"
    page = c.get("/console/campaigns/c-page")
    assert "Not measured yet" in page.text
    report = {"confidence": 0.95, "offers": {"PCT10": {
        "n_treated": 40, "n_control": 10, "return_on_spend": 1.5,
        "converted": {"treated": 0.3, "control": 0.1, "lift": 0.2, "low": 0.05, "high": 0.35},
        "margin": {"lift": 2.5}}}, "policies": {"nobody": {"margin": {
        "identified": True, "ipw": 1.0, "dr": 1.1, "dr_se": 0.2}}}}  # fmt: skip
    (s.state_dir / "campaigns" / "c-page" / "report.json").write_text(json.dumps(report))
    page = c.get("/console/campaigns/c-page")
    assert "+20.0 pts" in page.text and "+5.0 to +35.0 pts" in page.text
    assert c.get("/console/campaigns").text.count("c-page") >= 1
    assert c.get("/console/campaigns/nope").status_code == 404
