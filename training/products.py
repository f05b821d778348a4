"""Train the product recommender and compare it with popularity on a held-out window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from models.products import HybridConfig, HybridRecommender, PopularityRecommender, Recommender
from training.config import TrainConfig
from training.metrics import catalogue_coverage, map_at_k, ndcg_at_k, recall_at_k
from training.result import TrainResult
from training.tuning import SHIPPED, default_grids, fit_lines, tune


def ranking_metrics(
    model: Recommender, truth: dict[str, set[str]], k: int, catalogue_size: int
) -> dict[str, float]:
    """NDCG / recall / MAP at k and catalogue coverage of ``model`` against ``truth``."""
    members = sorted(truth)
    recs = [[p for p, _, _ in r] for r in model.recommend_many(members, n=k)]
    relevant = [truth[m] for m in members]
    return {
        f"ndcg@{k}": ndcg_at_k(recs, relevant, k=k),
        f"recall@{k}": recall_at_k(recs, relevant, k=k),
        f"map@{k}": map_at_k(recs, relevant, k=k),
        "coverage": catalogue_coverage(recs, catalogue_size),
        "members_evaluated": float(len(members)),
    }


def purchases_between(
    lines: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> dict[str, set[str]]:
    """member -> set of products bought (quantity > 0) in [start, end)."""
    w = lines[(lines["ts"] >= start) & (lines["ts"] < end) & (lines["quantity"] > 0)]
    return {m: set(g) for m, g in w.groupby("member_id")["product_id"]}


def hybrid_config(cfg: TrainConfig, **params: Any) -> HybridConfig:
    """The shipped hybrid's configuration: ``cfg``'s values, then ``params`` (a grid point
    of ``training.tuning.default_grids()["shipped"]``) on top. One thread, so a fit is
    reproducible for a seed."""
    base = {
        "factors": cfg.als_factors,
        "regularization": cfg.als_regularization,
        "iterations": cfg.als_iterations,
        "alpha": cfg.als_alpha,
        "buy_again_weight": cfg.buy_again_weight,
        "recent_days": cfg.recent_days,
        "random_state": cfg.seed,
        "num_threads": 1,
    }
    return HybridConfig(**{**base, **params})


def tune_hybrid(
    lines: pd.DataFrame, cutoff: pd.Timestamp, cfg: TrainConfig
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """The hybrid's grid point chosen on the tuning window before ``cutoff`` (see
    training.tuning): (params, table, None), or ({}, [], why) when that window has nothing
    to tune on and the configured values are kept."""
    grid = default_grids()[SHIPPED]
    try:
        best, table = tune(
            lambda p: HybridRecommender(hybrid_config(cfg, **p)),
            grid, lines, cutoff, cfg.validation_days, k=cfg.top_k,
        )  # fmt: skip
    except ValueError as exc:
        return {}, [], f"hybrid not tuned, configured values kept: {exc}"
    return best, table, None


def train_products(lines: pd.DataFrame, cutoff: pd.Timestamp, cfg: TrainConfig) -> TrainResult:
    """Choose the hybrid's blend on the tuning window (training.tuning: the
    ``validation_days`` before the validation window), fit it and popularity on everything
    before ``cutoff - validation_days``, score the validation window, then refit both on
    everything before ``cutoff``. The backtest scores this very model.

    ``lines``: order lines with member_id, product_id (non-null), ts (naive UTC), quantity.
    """
    lines = lines[lines["product_id"].notna()]
    lines = lines[lines["ts"] < cutoff]
    split = cutoff - timedelta(days=cfg.validation_days)
    past = lines[lines["ts"] < split]
    truth = purchases_between(lines, split, cutoff)
    catalogue = lines["product_id"].nunique()
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    best, _, why = tune_hybrid(lines, cutoff, cfg)
    if why:
        notes.append(why)
    if len(past) and truth:
        candidates = {
            "shipped": HybridRecommender(hybrid_config(cfg, **best)),
            "baseline": PopularityRecommender(),
        }
        for role, model in candidates.items():
            fit_lines(model, past, split)
            metrics[role] = ranking_metrics(model, truth, cfg.top_k, catalogue)
    else:
        notes.append("no purchases in the validation window: models not compared")
    shipped = fit_lines(HybridRecommender(hybrid_config(cfg, **best)), lines, cutoff)
    baseline = fit_lines(PopularityRecommender(), lines, cutoff)
    return TrainResult(
        name="products",
        shipped=shipped,
        baseline=baseline,
        metrics=metrics,
        primary=f"ndcg@{cfg.top_k}",
        params={
            **vars(hybrid_config(cfg, **best)),
            "validation_days": cfg.validation_days,
            "tuned": ",".join(sorted(best)) or "none",
        },
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(lines["member_id"].iloc[0])]}),
    )
