"""Train the product recommender and compare it with popularity on a held-out window."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from features.settings import ProductsSettings
from models.products import HybridRecommender, PopularityRecommender, Recommender
from training.config import TrainConfig, hybrid_config, recommender_config
from training.metrics import catalogue_coverage, map_at_k, ndcg_at_k, recall_at_k
from training.result import TrainResult


def _fit(model: Recommender, lines: pd.DataFrame, as_of: pd.Timestamp) -> Recommender:
    return model.fit(
        lines["member_id"].to_numpy(str),
        lines["product_id"].to_numpy(str),
        lines["ts"].to_numpy("datetime64[us]"),
        lines["quantity"].to_numpy(float),
        as_of=np.datetime64(as_of.to_datetime64(), "us"),
    )


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


def train_products(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    products: ProductsSettings | None = None,
) -> TrainResult:
    """Fit on everything before ``cutoff - validation_days``, score the validation window,
    then refit both models on everything before ``cutoff``.

    ``lines``: order lines with member_id, product_id (non-null), ts (naive UTC), quantity.
    ``products``: the settings tree's ``products`` section (its defaults when None).
    """
    products = products or ProductsSettings()
    shipped_cfg = hybrid_config(products, cfg.seed)
    baseline_cfg = recommender_config("popularity", products, cfg.seed)
    lines = lines[lines["product_id"].notna()]
    lines = lines[lines["ts"] < cutoff]
    split = cutoff - timedelta(days=cfg.validation_days)
    past = lines[lines["ts"] < split]
    truth = purchases_between(lines, split, cutoff)
    catalogue = lines["product_id"].nunique()
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if lines.empty:  # spend-only data (CDNOW style): nothing to recommend from
        notes.append(
            "no order line has a product_id (spend-only data): product lists are empty; "
            "churn, send time and coupons do not need them"
        )
    elif len(past) and truth:
        candidates = {
            "shipped": HybridRecommender(shipped_cfg),
            "baseline": PopularityRecommender(baseline_cfg),
        }
        for role, model in candidates.items():
            _fit(model, past, split)
            metrics[role] = ranking_metrics(model, truth, cfg.top_k, catalogue)
    else:
        notes.append("no purchases in the validation window: models not compared")
    shipped = _fit(HybridRecommender(shipped_cfg), lines, cutoff)
    baseline = _fit(PopularityRecommender(baseline_cfg), lines, cutoff)
    return TrainResult(
        name="products",
        shipped=shipped,
        baseline=baseline,
        metrics=metrics,
        primary=f"ndcg@{cfg.top_k}",
        params={**vars(shipped_cfg), "validation_days": cfg.validation_days},
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(m) for m in lines["member_id"].head(1)]}),
    )
