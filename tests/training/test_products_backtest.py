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
from features.settings import ProductsSettings
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


CFG = TrainConfig(validation_days=30)
PRODUCTS = ProductsSettings(hybrid={"factors": 4, "iterations": 3})


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

    def spy(model, lines, as_of, **extra):
        fits.append((model.kind, pd.Timestamp(as_of), lines["ts"].max(), set(lines["product_id"])))
        return real(model, lines, as_of, **extra)

    world = repeat_world()
    with pytest.MonkeyPatch.context() as mp:
        for module in (tuning, bp, training.products):
            mp.setattr(module, "fit_lines", spy)
        trained = train_products(world[world["ts"] < AS_OF], AS_OF, CFG, PRODUCTS)
        out = compare(world, AS_OF, HORIZON, CFG, trained.shipped, tiny_grids(), lambda _: None,
                      products=PRODUCTS)  # fmt: skip
    return out, fits, trained


def test_returns_every_key_with_the_same_metric_names(section):
    out, _, _ = section
    assert set(out) >= {
        "shipped", "baselines", "search", "members_evaluated", "tuning_window", "test_window",
    }  # fmt: skip
    # the peers, and the configured hybrid when the shipped one is tuned
    assert {n for n in out["baselines"] if not n.startswith("hybrid")} == set(PEERS)
    hybrids = {n for n in out["baselines"] if n.startswith("hybrid")}
    assert len(hybrids) == 1 and out["shipped_name"].startswith("hybrid")  # the other one
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
    assert out["shipped_params"] == vars(trained.shipped.config)
    # the backtest names it as run's gate did: the hybrid tuned on the grid the backtest
    # documents, or the configured one where tuning did not pay on the validation window
    assert out["shipped_name"] == trained.policies["shipped"]
    assert any(r.name.startswith("hybrid_tuned(") for r in trained.selection.rows)
    if out["shipped_name"] != "hybrid":
        chosen = {k: out["shipped_params"][k] for k in default_grids()[SHIPPED][0]}
        assert chosen in default_grids()[SHIPPED]


def test_run_and_the_backtest_gate_the_same_candidates(section):
    out, _, trained = section
    names = [r["name"] for r in out["gate"]["rows"]]
    assert names == [r.name for r in trained.selection.rows]  # simplest first, same names
    assert names[:4] == ["popularity", "buy_again", "item_cosine", "als"]
    assert out["outside_gate"] == ["bpr"]
    rows = {r["name"]: r for r in out["gate"]["rows"]}
    # the gate's estimate is the mean NDCG the table reports, on the same members
    for name in ("popularity", "buy_again"):
        assert rows[name]["estimate"] == pytest.approx(out["baselines"][name]["ndcg@10"])
    assert out["gate"]["units"] == out["members_evaluated"]
    # popularity cannot beat anyone; buy-again beats it by far more than the noise
    assert rows["buy_again"]["vs"] == "popularity" and rows["buy_again"]["lcb"] > 0
    assert out["gate"]["champion"] in out["gate"]["chain"]


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
    gated = len(out["gate"]["rows"])  # run's gate: every candidate fitted at its split
    # every grid point (the hybrid's twice: run and the backtest tune it alike); run's
    # candidates at the gate's split; the shipped hybrid and the best rule at the cutoff;
    # one refit per peer and of the hybrid run did not ship
    retuned = len(default_grids()[SHIPPED]) if out["shipped_name"] == "hybrid" else 0
    searched += retuned
    assert len(fits) == searched + gated + 2 + len(PEERS) + 1
    for _, as_of, latest, products in fits:
        assert as_of in (split, end, AS_OF) and latest < as_of and "NEW" not in products
    assert sum(as_of == split for _, as_of, _, _ in fits) == searched
    assert sum(as_of == end for _, as_of, _, _ in fits) == gated


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
            model = bp.make_model(name, params, CFG, PRODUCTS)
            assert all(getattr(model.config, k) == v for k, v in params.items())


def test_an_untunable_history_keeps_the_configured_hybrid():
    world = repeat_world(4)
    recent = world[world["ts"] >= AS_OF - timedelta(days=40)]  # nothing before the window
    best, table, why = tune_hybrid(recent[recent["ts"] < AS_OF], AS_OF, CFG, PRODUCTS)
    assert best == {} and table == [] and "nothing to tune" in why
    best, table, why = tune_hybrid(world[world["ts"] < AS_OF], AS_OF, CFG, PRODUCTS, seconds=0)
    assert best == {} and table == [] and "no time budget" in why


def test_the_time_budget_stops_the_search_after_a_point():
    lines = repeat_world(6)
    grid = [{}] * 3
    _, table = grid_search(lambda p: PopularityRecommender(), grid, lines[lines["ts"] < AS_OF],
                           AS_OF - timedelta(days=60), AS_OF, seconds=0.0)  # fmt: skip
    assert len(table) == 1  # the first point always, none started once the time is spent


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
