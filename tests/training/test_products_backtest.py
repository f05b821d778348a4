"""The products backtest and its grid search on a tiny world whose right answer is known.

The world: every member re-buys one personal staple every 10 days, before and after the
as-of date, and everybody bought the same three common products once, long ago. After the
as-of date each member buys only its staple (and a new product nobody could know about):
buy-again is right at rank 1, popularity (the common products first) mostly is not.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

import training.products_backtest as pb
import training.tuning as tuning
from models.peers import BuyAgainRecommender
from models.products import PopularityRecommender
from training.products_backtest import (
    PEERS,
    ProductsBacktestConfig,
    default_grids,
    product_grid,
    products_section,
)
from training.tuning import grid_search

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")

AS_OF = pd.Timestamp("2025-06-01")
HORIZON = 60
METRICS = {"ndcg@10", "recall@10", "map@10", "coverage"}


def repeat_world(members: int = 30) -> pd.DataFrame:
    rows = []
    for i in range(members):
        m = f"m{i:02d}"
        for d in range(-300, HORIZON, 10):
            ts = AS_OF + timedelta(days=d + i % 7, hours=10)
            rows.append((m, f"o{m}{d}", f"S{i:02d}", ts))
        for j, c in enumerate(["C1", "C2", "C3"]):
            rows.append((m, f"c{m}{j}", c, AS_OF - timedelta(days=250 + j)))
        rows.append((m, f"n{m}", "NEW", AS_OF + timedelta(days=5)))  # only after as-of
    df = pd.DataFrame(rows, columns=["member_id", "order_id", "product_id", "ts"])
    return df.assign(quantity=1.0, unit_price=2.5)


def tiny_config() -> ProductsBacktestConfig:
    als = {"factors": 4, "iterations": 3}
    return ProductsBacktestConfig(
        grids={
            "shipped": [als, {**als, "buy_again_weight": 0.5}],
            "popularity": [{}],
            "buy_again": product_grid(half_life_days=[30.0, 120.0]),
            "item_cosine": product_grid(K=[5], filter_already_bought=[False, True]),
            "als": [{**als, "filter_already_bought": False}],
            "bpr": [{"factors": 4, "iterations": 10, "filter_already_bought": False}],
        }
    )


@pytest.fixture(scope="module")
def section():
    """The section on the repeat world, with every fit recorded: (model, as_of, latest ts
    and products of the lines it was given)."""
    fits: list[tuple[str, pd.Timestamp, pd.Timestamp, set[str]]] = []
    real = tuning.fit_lines

    def spy(model, lines, as_of):
        fits.append((model.kind, pd.Timestamp(as_of), lines["ts"].max(), set(lines["product_id"])))
        return real(model, lines, as_of)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "fit_lines", spy)
        mp.setattr(pb, "fit_lines", spy)
        out = products_section(
            repeat_world(), AS_OF, HORIZON, tiny_config(), progress=lambda _: None
        )
    return out, fits


def test_returns_every_key_with_the_same_metric_names(section):
    out, _ = section
    assert set(out) >= {
        "shipped", "baselines", "search", "members_evaluated", "validation_window", "test_window",
    }  # fmt: skip
    assert set(out["baselines"]) == set(PEERS)
    for metrics in [out["shipped"], *out["baselines"].values()]:
        assert set(metrics) == METRICS
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert set(out["search"]) == {"shipped", *PEERS}
    for name, search in out["search"].items():
        assert len(search["table"]) == len(tiny_config().grids[name])
        assert search["best_params"] in tiny_config().grids[name]
    assert out["members_evaluated"] == 30 and out["members_known"] == 30


def test_repeat_world_is_won_by_buying_again(section):
    out, _ = section
    base = out["baselines"]
    # the staple at rank 1 for everybody; NEW (bought by all after as-of) is unknowable
    assert base["buy_again"]["ndcg@10"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    assert base["buy_again"]["recall@10"] == pytest.approx(0.5)
    assert base["popularity"]["ndcg@10"] < base["buy_again"]["ndcg@10"] - 0.3
    assert out["shipped"]["ndcg@10"] >= base["buy_again"]["ndcg@10"] - 1e-9
    # the search noticed that filtering already-bought products is wrong here
    assert out["search"]["item_cosine"]["best_params"]["filter_already_bought"] is False


def test_tuning_never_sees_the_test_window(section):
    out, fits = section
    split = AS_OF - timedelta(days=HORIZON)  # validation_days defaults to the horizon
    assert out["validation_window"] == [split.isoformat(), AS_OF.isoformat()]
    assert out["test_window"] == [AS_OF.isoformat(), (AS_OF + timedelta(days=HORIZON)).isoformat()]
    n_search = sum(len(g) for g in tiny_config().grids.values())
    assert len(fits) == n_search + 1 + len(PEERS)  # every grid point, then one refit each
    for _, as_of, latest, products in fits:
        assert as_of in (split, AS_OF) and latest < as_of and "NEW" not in products
    assert sum(as_of == split for _, as_of, _, _ in fits) == n_search


def test_every_model_gets_the_same_budget():
    grids = default_grids()
    assert set(grids) == {"shipped", *PEERS}
    assert len({len(g) for g in grids.values()}) == 1
    assert max(len(g) for g in grids.values()) <= ProductsBacktestConfig().max_grid_points
    cfg = ProductsBacktestConfig(grids={"bpr": [{}] * 9})
    with pytest.raises(ValueError, match="budget"):
        products_section(repeat_world(4), AS_OF, HORIZON, cfg, progress=lambda _: None)


def test_default_grids_build_their_models():
    cfg = ProductsBacktestConfig()
    for name, grid in cfg.grids.items():
        for params in grid:
            model = pb.make_model(name, params, cfg)
            assert all(getattr(model.config, k) == v for k, v in params.items())


def test_grid_search_picks_the_best_ndcg_and_reports_every_point():
    lines = repeat_world(10)
    split = AS_OF - timedelta(days=60)

    def make(p):
        return BuyAgainRecommender() if p["kind"] == "again" else PopularityRecommender()

    grid = [{"kind": "popular"}, {"kind": "again"}, {"kind": "again"}]
    best, table = grid_search(make, grid, lines[lines["ts"] < AS_OF], split, AS_OF)
    assert best == {"kind": "again"}
    assert [row["kind"] for row in table] == ["popular", "again", "again"]
    assert table[1]["ndcg@10"] == table[2]["ndcg@10"] > table[0]["ndcg@10"]  # ties: first
    assert {"recall@10", "map@10", "coverage", "fit_seconds"} <= set(table[0])
    assert np.isclose(table[1]["ndcg@10"], 1.0)


def test_grid_search_refuses_what_it_cannot_tune():
    lines = repeat_world(4)
    with pytest.raises(ValueError, match="grid is empty"):
        grid_search(lambda p: PopularityRecommender(), [], lines, AS_OF, AS_OF + timedelta(1))
    with pytest.raises(ValueError, match="empty"):
        grid_search(lambda p: PopularityRecommender(), [{}], lines, AS_OF, AS_OF)
    late = AS_OF + timedelta(days=1000)
    with pytest.raises(ValueError, match="nothing to tune"):
        grid_search(lambda p: PopularityRecommender(), [{}], lines, late, late + timedelta(1))
