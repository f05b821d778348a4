"""`memberwise evaluate` on a small synthetic shop and on The Complete Journey."""

import json
from datetime import date

import pytest

from pipelines.convert import convert_complete_journey
from pipelines.evaluate import evaluate
from pipelines.synthetic import generate
from tests.conftest import require_shared_data
from training.tuning import default_grids

pytestmark = pytest.mark.slow
SECTIONS = ("products", "churn", "send_time", "coupons")


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """A quick shipped recommender, set the way a user would: through the environment."""
    monkeypatch.setenv("MEMBERWISE_PRODUCTS__HYBRID__ITERATIONS", "5")
    monkeypatch.setenv("MEMBERWISE_PRODUCTS__HYBRID__FACTORS", "16")


def _same_metric_names(section: dict) -> None:
    names = set(section["shipped"])
    assert names, "shipped has no metrics"
    assert {section["primary"], section["primary"] + "_se"} <= names  # compared with its noise
    for name, metrics in section["baselines"].items():
        assert set(metrics) == names, name


def test_synthetic_backtest_report(tmp_path):
    data = tmp_path / "shop"
    generate(data, members=500, seed=5)
    out = tmp_path / "eval"
    evaluate(data, date(2025, 9, 30), out, progress=lambda _: None)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["dataset"] == "shop" and result["horizon_days"] == 90
    assert result["as_of"] == "2025-09-30"
    for s in SECTIONS:
        assert result[s] is not None, result["notes"].get(s)
        _same_metric_names(result[s])
    products = result["products"]
    # the gate's candidates of `memberwise run`, simplest first, and BPR outside the gate
    assert set(products["baselines"]) | {products["shipped_name"]} >= {
        "popularity", "buy_again", "item_cosine", "als", "bpr"}  # fmt: skip
    assert products["outside_gate"] == ["bpr"]
    gate_names = [r["name"] for r in products["gate"]["rows"]]
    assert gate_names[:4] == ["popularity", "buy_again", "item_cosine", "als"]
    assert products["shipped_name"] in gate_names[4:]  # the hybrid, configured and tuned
    assert all(n.startswith("hybrid") for n in gate_names[4:])
    # the hybrid run registered, its blend tuned on the grid the backtest's peers share
    shipped = products["shipped_params"]
    point = {k: shipped[k] for k in default_grids()["shipped"][0]}
    assert products["shipped_name"] == "hybrid" or point in default_grids()["shipped"]
    assert (shipped["factors"], shipped["iterations"]) == (16, 5)  # the environment's values
    for s, names in (("churn", ["recency_rule", "bg_nbd", "model"]),
                     ("send_time", ["global_hour", "segment_hour", "member_most_frequent_hour",
                                    "model"])):  # fmt: skip
        assert [r["name"] for r in result[s]["gate"]["rows"]] == names
        assert set(result[s]["baselines"]) == set(names) - {"model"}
    coupon_gate = [r["name"] for r in result["coupons"]["gate"]["rows"]]
    assert coupon_gate[0] == "no_coupon" and coupon_gate[-1] == "personalised"
    assert all(n.startswith("everyone:") for n in coupon_gate[1:-1]) and len(coupon_gate) > 2
    for s in SECTIONS:
        g, w = result[s]["gate"], result["wins"][s]
        assert g["champion"] in [r["name"] for r in g["rows"]]
        assert w["champion"] == g["champion"]
        assert w["shipped_is_champion"] == (g["champion"] == g["shipped"])
        assert set(w["beats_beyond_noise"]) <= set(result[s]["baselines"])
        champion = next(r for r in g["rows"] if r["name"] == g["champion"])
        assert champion["verdict"].startswith("champion")
    assert 0 < result["send_time"]["reachable_1h"] <= 1
    assert {"no_coupon", "random", "propensity"} <= set(result["coupons"]["baselines"])
    assert result["coupons"]["baselines"]["no_coupon"]["incremental_margin"] == 0.0
    assert 0 <= result["send_time"]["planted_peak_recovery"]["shipped"] <= 1
    assert "planted_margin" in result["coupons"]["shipped"]  # synthetic: the planted effects
    assert (out / "evaluation.md").read_text().startswith("# Backtest")
    assert list(out.glob("*.png"))


@pytest.mark.realdata
def test_complete_journey_reports_why_uplift_cannot_be_validated(tmp_path):
    src = require_shared_data("completejourney")
    data = tmp_path / "cj"
    convert_complete_journey(src, data)
    out = tmp_path / "eval"
    evaluate(data, date(2017, 9, 30), out, progress=lambda _: None)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["coupons"] is None
    assert "randomized" in result["notes"]["coupons"]
    auc = result["coupon_propensity"]["redemption_auc"]
    assert auc is not None and 0.5 < auc <= 1.0
    _same_metric_names(result["products"])
