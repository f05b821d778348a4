"""Grid search for product recommenders, used alike by `memberwise run` and the backtest.

Windows (calendar days, ``V`` = ``TrainConfig.validation_days``, ``cutoff`` = the as-of
instant): a model is *tuned* by fitting each grid point on lines before ``cutoff - 2V``
and scoring its top-k lists on the purchases in ``[cutoff - 2V, cutoff - V)``
(:func:`tuning_window`); the best point (highest NDCG@k, the first on ties) is then
compared with its baseline by the promotion gate on ``[cutoff - V, cutoff)`` and refitted
on everything before ``cutoff``. The window the gate compares on is never used to choose
a setting, and the backtest's horizon (after ``cutoff``) is never seen by either.

:func:`default_grids` holds each recommender's grid: the shipped hybrid's is what
``training.products.train_products`` searches, the peers' are what the backtest searches;
every grid has the same budget.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from models.products import Recommender

Params = dict[str, Any]
SHIPPED = "shipped"
PEERS = ("popularity", "buy_again", "item_cosine", "als", "bpr")
MAX_GRID_POINTS = 8  # the search budget, the same for every recommender


class NothingToTune(ValueError):
    """The tuning window holds nothing to fit or score (no line before it, or no buyer in it)."""


def fit_lines(
    model: Recommender, lines: pd.DataFrame, as_of: pd.Timestamp, **extra: Any
) -> Recommender:
    """Fit ``model`` on ``lines`` (member_id, product_id, ts naive UTC, quantity, and
    order_id when present: purchases are then counted per order) as of ``as_of``;
    ``extra`` goes to ``fit`` (segments, categories of the registered models)."""
    orders = lines["order_id"].to_numpy(str) if "order_id" in lines else None
    return model.fit(
        lines["member_id"].to_numpy(str),
        lines["product_id"].to_numpy(str),
        lines["ts"].to_numpy("datetime64[us]"),
        lines["quantity"].to_numpy(float),
        as_of=np.datetime64(pd.Timestamp(as_of).to_datetime64(), "us"),
        order_ids=orders,
        **extra,
    )


def tuning_window(cutoff: pd.Timestamp, validation_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[cutoff - 2V, cutoff - V)``: the window a setting is chosen on, just before the
    gate's validation window ``[cutoff - V, cutoff)``."""
    if validation_days < 1:
        raise ValueError(f"validation_days must be >= 1, not {validation_days}")
    end = pd.Timestamp(cutoff) - timedelta(days=validation_days)
    return end - timedelta(days=validation_days), end


def product_grid(**axes: list[Any]) -> list[Params]:
    """Every combination of the axes' values, the last axis varying fastest:
    ``product_grid(a=[1, 2], b=[3])`` -> ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def default_grids() -> dict[str, list[Params]]:
    """Each recommender's search grid (config field -> value; unset fields keep their
    defaults: the settings tree's ``products`` section, see training.config).

    Every grid has 8 points, the same budget for the shipped model and each peer; the
    ranges were chosen on validation windows (never a test window) of Online Retail and
    the synthetic shop so that each model's good region is inside its grid:

    - shipped (HybridConfig): the weights of the buy-again and item-item terms against
      ALS, and whether owned non-repeatable products are hidden (hiding them is right on
      the synthetic shop, wrong on grocery baskets where members buy the same things);
    - popularity: the recent-buyer window and its weight;
    - buy_again: the recency half-life (15 days to "almost none") and two count powers;
    - item_cosine: neighbours K and count vs log weighting;
    - als: factors and alpha on raw counts (better than log/BM25 there);
    - bpr: regularization and learning rate at 128 factors.

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


def grid_search(
    make_model: Callable[[Params], Recommender],
    grid: list[Params],
    lines: pd.DataFrame,
    split: pd.Timestamp,
    end: pd.Timestamp,
    k: int = 10,
    progress: Callable[[str], Any] | None = None,
    max_points: int = MAX_GRID_POINTS,
    seconds: float | None = None,
) -> tuple[Params, list[dict[str, Any]]]:
    """Fit ``make_model(params)`` on lines with ``ts < split`` for each ``params`` of ``grid``
    and score it on purchases in ``[split, end)``; with ``seconds``, no further point is
    started once that time is spent (the first always is).

    Returns the best params (highest ``ndcg@k``, the first on ties; NaN counts as worst) and
    the table: one dict per grid point, in grid order, with the params, ``ndcg@k``,
    ``recall@k``, ``map@k``, ``coverage``, ``members_evaluated`` and ``fit_seconds``.
    Raises ValueError for an empty grid, one over ``max_points`` (every model gets the
    same budget) or a window with nothing to fit or score.
    """
    from training.products import purchases_between, ranking_metrics

    if not grid:
        raise ValueError("grid is empty: give at least one parameter dict ({} = defaults)")
    if len(grid) > max_points:
        raise ValueError(
            f"the grid has {len(grid)} points, over the budget of {max_points}: "
            "every model gets the same budget"
        )
    if not split < end:
        raise ValueError(f"the validation window [{split}, {end}) is empty")
    lines = lines[lines["product_id"].notna()]
    past = lines[lines["ts"] < split]
    truth = purchases_between(lines, split, end)
    if past.empty or not truth:
        raise NothingToTune(
            f"nothing to tune on: {len(past)} lines before {split}, "
            f"{len(truth)} buyers in [{split}, {end}); move the split or widen the window"
        )
    catalogue = int(past["product_id"].nunique())
    key = f"ndcg@{k}"
    table: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i, params in enumerate(grid):
        t0 = time.perf_counter()
        if table and seconds is not None and t0 - start > seconds:
            break
        model = fit_lines(make_model(params), past, split)
        fit_s = time.perf_counter() - t0
        row = {**params, **ranking_metrics(model, truth, k, catalogue), "fit_seconds": fit_s}
        table.append(row)
        if progress is not None:
            progress(f"  [{i + 1}/{len(grid)}] {params} {key}={row[key]:.4f} ({fit_s:.1f}s)")
    scores = [row[key] if row[key] == row[key] else -np.inf for row in table]
    return dict(grid[int(np.argmax(scores))]), table


def tune(
    make_model: Callable[[Params], Recommender],
    grid: list[Params],
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    validation_days: int,
    k: int = 10,
    progress: Callable[[str], Any] | None = None,
    seconds: float | None = None,
) -> tuple[Params, list[dict[str, Any]]]:
    """:func:`grid_search` (within ``seconds``) on the :func:`tuning_window` before ``cutoff`` (``lines`` may
    run past it: only lines before the window's end are read). With a single grid point
    nothing is fitted: it is returned with an empty table."""
    if len(grid) == 1:
        return dict(grid[0]), []
    split, end = tuning_window(cutoff, validation_days)
    return grid_search(make_model, grid, lines[lines["ts"] < end], split, end, k, progress,
                       seconds=seconds)  # fmt: skip
