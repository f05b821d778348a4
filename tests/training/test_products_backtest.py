"""The products backtest, the hybrid `run` trains and the grid search they share, on a tiny
world whose right answer is known.

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

import training.backtest.products as bp
import training.products
import training.tuning as tuning
from models.peers import BuyAgainRecommender
from models.products import PopularityRecommender
from training.backtest.products import compare
from training.config import TrainConfig
from training.products import train_products, tune_hybrid
from training.tuning import (
    MAX_GRID_POINTS,
    PEERS,
    SHIPPED,
    default_grids,
    grid_search,
    product_grid,
    tuning_window,
)

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")

AS_OF = pd.Timestamp("2025-06-01")
HORIZON = 60
METRICS = {"ndcg@10", "ndcg@10_se", "recall@10", "map@10", "coverage"}


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


CFG = TrainConfig(als_factors=4, als_iterations=3, validation_days=30)


def tiny_grids() -> dict[str, list[dict]]:
    return {
        "popularity": [{}],
        "buy_again": product_grid(half_life_days=[30.0, 120.0]),
        "item_cosine": product_grid(K=[5], filter_already_bought=[False, True]),
        "als": [{"factors": 4, "iterations": 3, "filter_already_bought": False}],
        "bpr": [{"factors": 4, "iterations": 10, "filter_already_bought": False}],
    }


@pytest.fixture(scope="module")
def section():
    """The hybrid `run` trains (train_products) and the section around it on the repeat
    world, with every fit recorded: (model, as_of, latest ts and products of its lines)."""
    fits: list[tuple[str, pd.Timestamp, pd.Timestamp, set[str]]] = []
    real = tuning.fit_lines

    def spy(model, lines, as_of):
        fits.append((model.kind, pd.Timestamp(as_of), lines["ts"].max(), set(lines["product_id"])))
        return real(model, lines, as_of)

    world = repeat_world()
    with pytest.MonkeyPatch.context() as mp:
        for module in (tuning, bp, training.products):
            mp.setattr(module, "fit_lines", spy)
        trained = train_products(world[world["ts"] < AS_OF], AS_OF, CFG)
        out = compare(world, AS_OF, HORIZON, CFG, trained.shipped, tiny_grids(), lambda _: None)
    return out, fits, trained


def test_returns_every_key_with_the_same_metric_names(section):
    out, _, _ = section
    assert set(out) >= {
        "shipped", "baselines", "search", "members_evaluated", "tuning_window", "test_window",
    }  # fmt: skip
    assert set(out["baselines"]) == set(PEERS)
    for metrics in [out["shipped"], *out["baselines"].values()]:
        assert set(metrics) == METRICS
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert set(out["search"]) == set(PEERS)
    for name, search in out["search"].items():
        grid = tiny_grids()[name]
        assert len(search["table"]) == (len(grid) if len(grid) > 1 else 0)
        assert search["best_params"] in grid
    assert out["members_evaluated"] == 30 and out["members_known"] == 30


def test_the_shipped_model_is_the_one_run_trains(section):
    out, _, trained = section
    # train_products tuned the hybrid on the same grid the backtest documents
    assert trained.params["tuned"] == "buy_again_weight,exclude_owned,item_weight"
    chosen = {k: out["shipped_params"][k] for k in default_grids()[SHIPPED][0]}
    assert chosen in default_grids()[SHIPPED]
    assert out["shipped_params"] == vars(trained.shipped.config)


def test_repeat_world_is_won_by_buying_again(section):
    out, _, _ = section
    base = out["baselines"]
    # the staple at rank 1 for everybody; NEW (bought by all after as-of) is unknowable
    assert base["buy_again"]["ndcg@10"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    assert base["buy_again"]["ndcg@10_se"] == pytest.approx(0.0, abs=1e-12)
    assert base["buy_again"]["recall@10"] == pytest.approx(0.5)
    assert base["popularity"]["ndcg@10"] < base["buy_again"]["ndcg@10"] - 0.3
    assert out["shipped"]["ndcg@10"] >= base["buy_again"]["ndcg@10"] - 1e-9
    # the search noticed that filtering already-bought products is wrong here
    assert out["search"]["item_cosine"]["best_params"]["filter_already_bought"] is False


def test_tuning_never_sees_the_gate_window_or_the_horizon(section):
    out, fits, _ = section
    split, end = tuning_window(AS_OF, CFG.validation_days)
    assert (split, end) == (AS_OF - timedelta(days=60), AS_OF - timedelta(days=30))
    assert out["tuning_window"] == [split.isoformat(), end.isoformat()]
    assert out["test_window"] == [AS_OF.isoformat(), (AS_OF + timedelta(days=HORIZON)).isoformat()]
    searched = len(default_grids()[SHIPPED]) + sum(
        len(g) for g in tiny_grids().values() if len(g) > 1
    )
    # every grid point; the hybrid and popularity at the gate's split and at the cutoff;
    # one refit per peer
    assert len(fits) == searched + 4 + len(PEERS)
    for _, as_of, latest, products in fits:
        assert as_of in (split, end, AS_OF) and latest < as_of and "NEW" not in products
    assert sum(as_of == split for _, as_of, _, _ in fits) == searched


def test_every_model_gets_the_same_budget():
    grids = default_grids()
    assert set(grids) == {SHIPPED, *PEERS}
    assert {len(g) for g in grids.values()} == {MAX_GRID_POINTS}
    with pytest.raises(ValueError, match="budget"):
        grid_search(lambda p: PopularityRecommender(), [{}] * 9, repeat_world(4),
                    AS_OF - timedelta(days=30), AS_OF)  # fmt: skip


def test_default_grids_build_their_models():
    for name, grid in default_grids().items():
        for params in grid:
            model = bp.make_model(name, params, CFG)
            assert all(getattr(model.config, k) == v for k, v in params.items())


def test_an_untunable_history_keeps_the_configured_hybrid():
    world = repeat_world(4)
    recent = world[world["ts"] >= AS_OF - timedelta(days=40)]  # nothing before the window
    best, table, why = tune_hybrid(recent[recent["ts"] < AS_OF], AS_OF, CFG)
    assert best == {} and table == [] and "nothing to tune" in why


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
