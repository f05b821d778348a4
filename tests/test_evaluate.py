"""`memberwise evaluate` on a small synthetic shop and on The Complete Journey."""

import json
from datetime import date

import pytest

from pipelines.convert import convert_complete_journey
from pipelines.evaluate import evaluate
from pipelines.synthetic import generate
from tests.conftest import require_shared_data
from training.config import TrainConfig
from training.tuning import default_grids

pytestmark = pytest.mark.slow
SECTIONS = ("products", "churn", "send_time", "coupons")
FAST = TrainConfig(als_iterations=5, als_factors=16)


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
    evaluate(data, date(2025, 9, 30), out, cfg=FAST, progress=lambda _: None)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["dataset"] == "shop" and result["horizon_days"] == 90
    assert result["as_of"] == "2025-09-30"
    for s in SECTIONS:
        assert result[s] is not None, result["notes"].get(s)
        _same_metric_names(result[s])
    assert set(result["products"]["baselines"]) == {"popularity", "buy_again", "item_cosine",
                                                    "als", "bpr"}  # fmt: skip
    # the hybrid run registered, its blend tuned on the grid the backtest's peers share
    shipped = result["products"]["shipped_params"]
    assert {k: shipped[k] for k in default_grids()["shipped"][0]} in default_grids()["shipped"]
    assert shipped["factors"] == FAST.als_factors and shipped["iterations"] == FAST.als_iterations
    for s in SECTIONS:
        assert set(result["wins"][s]["beats_beyond_noise"]) <= set(result[s]["baselines"])
    assert set(result["churn"]["baselines"]) == {"bg_nbd"}
    assert set(result["send_time"]["baselines"]) == {"global_best_hour", "member_mode_hour",
                                                     "member_mode_hour_allowed"}  # fmt: skip
    assert 0 < result["send_time"]["reachable_1h"] <= 1
    assert set(result["coupons"]["baselines"]) == {"everyone", "none", "random", "propensity"}
    assert result["coupons"]["baselines"]["none"]["incremental_margin"] == 0.0
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
    evaluate(data, date(2017, 9, 30), out, cfg=FAST, progress=lambda _: None)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["coupons"] is None
    assert "randomized" in result["notes"]["coupons"]
    auc = result["coupon_propensity"]["redemption_auc"]
    assert auc is not None and 0.5 < auc <= 1.0
    _same_metric_names(result["products"])
