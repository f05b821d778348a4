"""Products: the hybrid `memberwise run` registered against popularity and four peers.

Protocol (:func:`compare`):

1. *history* = order lines with ``ts < cutoff``; the *horizon* is
   ``[cutoff, cutoff + horizon_days)``; the members evaluated are those who bought
   something (a line with quantity > 0) in it, known before ``cutoff`` or not (unknown
   members get every model's popular list);
2. the shipped model is given: the hybrid ``training.products.train_products`` fitted on
   the history (tuned on the window of ``training.tuning``, then refitted); each peer is
   tuned the same way, by ``training.tuning.tune`` on the same window with the same
   budget, and refitted with its best setting on the history. The horizon is never seen;
3. every top-k list is scored on the horizon: NDCG@k (with its standard error over
   members), Recall@k, MAP@k (binary relevance, see training.metrics) and catalogue
   coverage (share of the history's catalogue shown to at least one evaluated member).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd

from models.peers import (
    ALSConfig,
    ALSRecommender,
    BPRConfig,
    BPRRecommender,
    BuyAgainConfig,
    BuyAgainRecommender,
    ItemCosineConfig,
    ItemCosineRecommender,
)
from models.products import (
    HybridRecommender,
    PopularityConfig,
    PopularityRecommender,
    Recommender,
)
from training.config import TrainConfig
from training.metrics import (
    catalogue_coverage,
    map_at_k,
    ndcg_by_member,
    recall_at_k,
    standard_error,
)
from training.products import hybrid_config, purchases_between
from training.tuning import PEERS, SHIPPED, Params, default_grids, fit_lines, tune, tuning_window

Progress = Callable[[str], Any]


def primary(cfg: TrainConfig) -> str:
    return f"ndcg@{cfg.top_k}"


def make_model(name: str, params: Params, cfg: TrainConfig) -> Recommender:
    """The recommender ``name`` ("shipped" or a peer of ``PEERS``) with ``params``; the
    stochastic ones seeded with ``cfg.seed`` on one thread (reproducible)."""
    seeded = {"random_state": cfg.seed, "num_threads": 1}
    if name == SHIPPED:
        return HybridRecommender(hybrid_config(cfg, **params))
    if name == "popularity":
        return PopularityRecommender(PopularityConfig(**params))
    if name == "buy_again":
        return BuyAgainRecommender(BuyAgainConfig(**params))
    if name == "item_cosine":
        return ItemCosineRecommender(ItemCosineConfig(**{"num_threads": 1, **params}))
    if name == "als":
        return ALSRecommender(ALSConfig(**{**seeded, **params}))
    if name == "bpr":
        return BPRRecommender(BPRConfig(**{**seeded, **params}))
    raise ValueError(f"unknown recommender {name!r}: expected {SHIPPED!r} or one of {PEERS}")


def candidates(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    shipped: Recommender,
    grids: dict[str, list[Params]] | None = None,
    progress: Progress = print,
) -> tuple[dict[str, Recommender], dict[str, Any]]:
    """The shipped model first, then each peer tuned on the tuning window before
    ``cutoff`` and refitted on ``lines`` before it.

    Returns (name -> fitted recommender, name -> {"best_params", "table", "seconds"}).
    """
    grids = grids if grids is not None else default_grids()
    history = lines[(lines["ts"] < cutoff) & lines["product_id"].notna()]
    models: dict[str, Recommender] = {SHIPPED: shipped}
    search: dict[str, Any] = {}
    for name in PEERS:
        grid = grids.get(name) or [{}]
        progress(f"products: tuning {name} on {len(grid)} point(s)")
        t0 = time.perf_counter()
        best, table = tune(
            lambda p, name=name: make_model(name, p, cfg),
            grid, history, cutoff, cfg.validation_days, k=cfg.top_k, progress=progress,
        )  # fmt: skip
        t1 = time.perf_counter()
        models[name] = fit_lines(make_model(name, best, cfg), history, cutoff)
        search[name] = {"best_params": best, "table": table,
                        "seconds": {"search": t1 - t0, "refit": time.perf_counter() - t1}}  # fmt: skip
    return models, search


def score(
    models: dict[str, Recommender], truth: dict[str, set[str]], k: int, catalogue: int
) -> dict[str, dict[str, float]]:
    """Each model's top-k lists against ``truth`` (member -> products bought in the
    held-out window): ndcg@k, its standard error over members, recall@k, map@k and
    catalogue coverage (share of ``catalogue`` products shown to someone)."""
    members = sorted(truth)
    relevant = [truth[m] for m in members]
    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        recs = [[p for p, _, _ in r] for r in model.recommend_many(members, n=k)]
        per_member = ndcg_by_member(recs, relevant, k)
        out[name] = {
            f"ndcg@{k}": float(per_member.mean()) if per_member.size else float("nan"),
            f"ndcg@{k}_se": standard_error(per_member),
            f"recall@{k}": recall_at_k(recs, relevant, k=k),
            f"map@{k}": map_at_k(recs, relevant, k=k),
            "coverage": catalogue_coverage(recs, catalogue),
        }
    return out


def compare(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    cfg: TrainConfig,
    shipped: Recommender,
    grids: dict[str, list[Params]] | None = None,
    progress: Progress = print,
) -> dict[str, Any]:
    """:func:`candidates` scored on the ``horizon_days`` after ``cutoff`` (see the module
    docstring). ``lines``: every order line (member_id, order_id, product_id, ts naive
    UTC, quantity), before and after ``cutoff``.

    Returns ``{"shipped": metrics, "baselines": {peer: metrics}, "shipped_params",
    "search": {peer: {"best_params", "table", "seconds"}}, "members_evaluated",
    "members_known", "tuning_window", "test_window"}``, windows as ``[start, end)`` ISO
    strings.
    """
    cutoff = pd.Timestamp(cutoff)
    test_end = cutoff + timedelta(days=horizon_days)
    lines = lines[lines["product_id"].notna()]
    history = lines[lines["ts"] < cutoff]
    truth = purchases_between(lines, cutoff, test_end)
    if history.empty or not truth:
        raise ValueError(
            f"cannot backtest products as of {cutoff}: {len(history)} lines before it, "
            f"{len(truth)} buyers in the {horizon_days} days after it"
        )
    models, search = candidates(lines, cutoff, cfg, shipped, grids, progress)
    scores = score(models, truth, cfg.top_k, int(history["product_id"].nunique()))
    known = set(history["member_id"].astype(str))
    split, end = tuning_window(cutoff, cfg.validation_days)
    for name, m in scores.items():
        key = primary(cfg)
        progress(f"products: {name} test {key}={m[key]:.4f} ± {m[key + '_se']:.4f}")
    return {
        "shipped": scores.pop(SHIPPED),
        "baselines": scores,
        "shipped_params": {k: v for k, v in vars(shipped.config).items()},
        "search": search,
        "members_evaluated": len(truth),
        "members_known": sum(m in known for m in truth),
        "tuning_window": [split.isoformat(), end.isoformat()],
        "test_window": [cutoff.isoformat(), test_end.isoformat()],
    }


def section(ctx: Any) -> dict[str, Any]:
    """The backtest's products section for a backtest Context."""
    return compare(
        ctx.full_lines, ctx.start, ctx.horizon_days, ctx.cfg, ctx.shipped("products"),
        progress=ctx.progress,
    )  # fmt: skip
