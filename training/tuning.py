"""Grid search for product recommenders on a validation window before the as-of date.

``grid_search`` fits one model per grid point on the order lines before ``split`` and scores
its top-k lists against the purchases in ``[split, end)``, over the members who bought
something there; the best point is the one with the highest NDCG@k (the first one on ties).
Callers pass ``end`` = the as-of date of the evaluation they tune for, so the test window
after it is never seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.products import Recommender
from training.products import purchases_between, ranking_metrics

Params = dict[str, Any]


def fit_lines(model: Recommender, lines: pd.DataFrame, as_of: pd.Timestamp) -> Recommender:
    """Fit ``model`` on ``lines`` (member_id, product_id, ts naive UTC, quantity, and
    order_id when present: purchases are then counted per order) as of ``as_of``."""
    orders = lines["order_id"].to_numpy(str) if "order_id" in lines else None
    return model.fit(
        lines["member_id"].to_numpy(str),
        lines["product_id"].to_numpy(str),
        lines["ts"].to_numpy("datetime64[us]"),
        lines["quantity"].to_numpy(float),
        as_of=np.datetime64(pd.Timestamp(as_of).to_datetime64(), "us"),
        order_ids=orders,
    )


def grid_search(
    make_model: Callable[[Params], Recommender],
    grid: list[Params],
    lines: pd.DataFrame,
    split: pd.Timestamp,
    end: pd.Timestamp,
    k: int = 10,
    progress: Callable[[str], Any] | None = None,
) -> tuple[Params, list[dict[str, Any]]]:
    """Fit ``make_model(params)`` on lines with ``ts < split`` for each ``params`` of ``grid``
    and score it on purchases in ``[split, end)``.

    Returns the best params (highest ``ndcg@k``, the first on ties; NaN counts as worst) and
    the table: one dict per grid point, in grid order, with the params, ``ndcg@k``,
    ``recall@k``, ``map@k``, ``coverage``, ``members_evaluated`` and ``fit_seconds``.
    """
    if not grid:
        raise ValueError("grid is empty: give at least one parameter dict ({} = defaults)")
    if not split < end:
        raise ValueError(f"the validation window [{split}, {end}) is empty")
    lines = lines[lines["product_id"].notna()]
    past = lines[lines["ts"] < split]
    truth = purchases_between(lines, split, end)
    if past.empty or not truth:
        raise ValueError(
            f"nothing to tune on: {len(past)} lines before {split}, "
            f"{len(truth)} buyers in [{split}, {end}); move the split or widen the window"
        )
    catalogue = int(past["product_id"].nunique())
    key = f"ndcg@{k}"
    table: list[dict[str, Any]] = []
    for i, params in enumerate(grid):
        t0 = time.perf_counter()
        model = fit_lines(make_model(params), past, split)
        fit_s = time.perf_counter() - t0
        row = {**params, **ranking_metrics(model, truth, k, catalogue), "fit_seconds": fit_s}
        table.append(row)
        if progress is not None:
            progress(f"  [{i + 1}/{len(grid)}] {params} {key}={row[key]:.4f} ({fit_s:.1f}s)")
    scores = [row[key] if row[key] == row[key] else -np.inf for row in table]
    return dict(grid[int(np.argmax(scores))]), table
