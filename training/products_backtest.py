"""The products section of the backtest: the shipped hybrid against its peers.

Protocol (every model alike, see :func:`products_section`):

1. *visible* = order lines with ``ts < as_of``; the *test window* is
   ``[as_of, as_of + horizon_days)``; the members evaluated are those who bought something
   (a line with quantity > 0) in it, known before ``as_of`` or not (unknown members get
   every model's popular list);
2. each model is tuned by :func:`training.tuning.grid_search` on its own small grid
   (:func:`default_grids`, at most ``max_grid_points`` points each): fit on
   ``ts < as_of - validation_days``, scored on ``[as_of - validation_days, as_of)`` and
   picked by NDCG@k. The test window is never seen;
3. each model is refitted with its best params on all visible lines (as of ``as_of``) and
   its top-k lists are scored on the test window: NDCG@k, Recall@k, MAP@k (binary
   relevance, see :mod:`training.metrics`) and catalogue coverage (share of the visible
   catalogue shown to at least one evaluated member).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from features.settings import ProductsSettings
from models.peers import ALSRecommender, BPRRecommender, BuyAgainRecommender, ItemCosineRecommender
from models.products import HybridRecommender, PopularityRecommender, Recommender
from training.config import recommender_config
from training.products import purchases_between, ranking_metrics
from training.tuning import Params, fit_lines, grid_search

SHIPPED = "shipped"
PEERS = ("popularity", "buy_again", "item_cosine", "als", "bpr")


def product_grid(**axes: list[Any]) -> list[Params]:
    """Every combination of the axes' values, the last axis varying fastest:
    ``product_grid(a=[1, 2], b=[3])`` -> ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def default_grids() -> dict[str, list[Params]]:
    """Each model's search grid (config field -> value; unset fields keep their defaults).

    Every grid has 8 points, the same budget for the shipped model and each peer; the
    ranges were chosen on the validation windows (never a test window) of Online Retail and
    the synthetic shop so that each model's good region is inside its grid:

    - shipped (HybridConfig, ALS alpha 5 / log weighting / 64 factors by default): the
      weights of the buy-again and item-item terms against ALS, and whether owned
      non-repeatable products are hidden;
    - popularity: the recent-buyer window and its weight;
    - buy_again: the recency half-life (15 days to "almost none") and two count powers;
    - item_cosine: neighbours K and count vs log weighting;
    - als: factors and alpha on raw counts (better than log/BM25 there);
    - bpr: regularization and learning rate at 128 factors (0 regularization helps on
      Online Retail).

    The collaborative peers search ``filter_already_bought`` both ways: on shops where
    members buy the same products again, the usual filter costs them most of their NDCG.
    """
    return {
        SHIPPED: product_grid(
            buy_again_weight=[1.0, 3.0], item_weight=[0.25, 1.0], exclude_owned=[True, False]
        ),
        "popularity": product_grid(popular_days=[7, 14, 30, 90], popular_recent_weight=[1.0, 4.0]),
        "buy_again": [
            *product_grid(half_life_days=[15.0, 30.0, 60.0, 120.0, 240.0, 480.0]),
            {"half_life_days": 60.0, "count_power": 0.5},
            {"half_life_days": 120.0, "count_power": 2.0},
        ],
        "item_cosine": [
            *product_grid(K=[20, 100, 500], filter_already_bought=[False, True]),
            *product_grid(K=[100], weighting=["log"], filter_already_bought=[False, True]),
        ],
        "als": product_grid(
            factors=[64, 128],
            alpha=[1.0, 5.0],
            filter_already_bought=[False, True],
            weighting=["count"],
        ),
        "bpr": product_grid(
            regularization=[0.0, 0.01],
            learning_rate=[0.01, 0.05],
            filter_already_bought=[False, True],
            factors=[128],
        ),
    }


@dataclass
class ProductsBacktestConfig:
    """Tunable numbers of the products backtest (days are calendar days)."""

    k: int = 10  # list length scored (memberwise evaluate: training.top_k)
    validation_days: int | None = None  # tuning window before as_of; None = horizon_days
    seed: int = 0  # random_state of every stochastic model
    num_threads: int = 1  # implicit's threads (1: reproducible, BPR is Hogwild otherwise)
    max_grid_points: int = 8  # the search budget, the same for every model
    grids: dict[str, list[Params]] = field(default_factory=default_grids)
    # every model's values outside its grid (the settings tree's ``products`` section)
    products: ProductsSettings = field(default_factory=ProductsSettings)


def make_model(name: str, params: Params, cfg: ProductsBacktestConfig) -> Recommender:
    """The recommender ``name`` ("shipped" or a peer of ``PEERS``) with ``params``."""
    kinds: dict[str, Any] = {
        SHIPPED: HybridRecommender,
        "popularity": PopularityRecommender,
        "buy_again": BuyAgainRecommender,
        "item_cosine": ItemCosineRecommender,
        "als": ALSRecommender,
        "bpr": BPRRecommender,
    }
    if name not in kinds:
        raise ValueError(f"unknown recommender {name!r}: expected {SHIPPED!r} or one of {PEERS}")
    threads = {} if name in ("popularity", "buy_again") else {"num_threads": cfg.num_threads}
    config = recommender_config(name, cfg.products, cfg.seed, **{**threads, **params})
    return kinds[name](config)


def products_section(
    lines: pd.DataFrame,
    as_of_end: pd.Timestamp,
    horizon_days: int,
    config: ProductsBacktestConfig | None = None,
    progress: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Tune, refit and score the shipped hybrid and every peer (see the module docstring).

    ``lines``: every order line (member_id, order_id, product_id, ts naive UTC, quantity,
    unit_price), before and after ``as_of_end`` (the exclusive end of visible time);
    ``horizon_days``: length of the test window after it.

    Returns ``{"shipped": metrics, "baselines": {peer: metrics}, "search": {model:
    {"best_params", "table"}}, "members_evaluated", "members_known", "validation_window",
    "test_window", "seconds": {model: {"search", "refit", "score"}}}`` where every
    ``metrics`` is {"ndcg@k", "recall@k", "map@k", "coverage"}; windows are
    ``[start, end)`` ISO strings.
    """
    cfg = config or ProductsBacktestConfig()
    as_of = pd.Timestamp(as_of_end)
    val_days = cfg.validation_days if cfg.validation_days is not None else horizon_days
    split = as_of - timedelta(days=val_days)
    test_end = as_of + timedelta(days=horizon_days)
    lines = lines[lines["product_id"].notna()]
    visible = lines[lines["ts"] < as_of]
    truth = purchases_between(lines, as_of, test_end)
    if visible.empty or not truth:
        raise ValueError(
            f"cannot backtest products as of {as_of}: {len(visible)} visible lines, "
            f"{len(truth)} buyers in the {horizon_days} days after it"
        )
    catalogue = int(visible["product_id"].nunique())
    known = set(visible["member_id"].astype(str))
    out: dict[str, Any] = {
        "shipped": {},
        "baselines": {},
        "search": {},
        "members_evaluated": len(truth),
        "members_known": sum(m in known for m in truth),
        "validation_window": [split.isoformat(), as_of.isoformat()],
        "test_window": [as_of.isoformat(), test_end.isoformat()],
        "seconds": {},
    }
    for name in (SHIPPED, *PEERS):
        grid = cfg.grids.get(name) or [{}]
        if len(grid) > cfg.max_grid_points:
            raise ValueError(
                f"the {name} grid has {len(grid)} points, over the budget of "
                f"{cfg.max_grid_points}: every model gets the same budget"
            )
        progress(f"products: tuning {name} on {len(grid)} points, validation [{split}, {as_of})")
        t0 = time.perf_counter()
        best, table = grid_search(
            lambda p, name=name: make_model(name, p, cfg),
            grid,
            visible,
            split,
            as_of,
            k=cfg.k,
            progress=progress,
        )
        t1 = time.perf_counter()
        model = fit_lines(make_model(name, best, cfg), visible, as_of)
        t2 = time.perf_counter()
        m = ranking_metrics(model, truth, cfg.k, catalogue)
        t3 = time.perf_counter()
        metrics = {key: float(v) for key, v in m.items() if key != "members_evaluated"}
        progress(f"products: {name} best {best}: test ndcg@{cfg.k}={metrics[f'ndcg@{cfg.k}']:.4f}")
        if name == SHIPPED:
            out["shipped"] = metrics
        else:
            out["baselines"][name] = metrics
        out["search"][name] = {"best_params": best, "table": table}
        out["seconds"][name] = {"search": t1 - t0, "refit": t2 - t1, "score": t3 - t2}
    return out
