"""Train the product recommender and let the gate choose it against every simple policy."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.settings import GateSettings, ProductsSettings
from models.products import HybridRecommender, PopularityRecommender, Recommender
from training.config import TrainConfig, recommender_config
from training.gate import Candidate, best_rule, select
from training.metrics import catalogue_coverage, map_at_k, ndcg_at_k, ndcg_per_member, recall_at_k
from training.result import TrainResult


def _fit(model: Recommender, lines: pd.DataFrame, as_of: pd.Timestamp, **extra: Any) -> Recommender:
    return model.fit(
        lines["member_id"].to_numpy(str),
        lines["product_id"].to_numpy(str),
        lines["ts"].to_numpy("datetime64[us]"),
        lines["quantity"].to_numpy(float),
        as_of=np.datetime64(as_of.to_datetime64(), "us"),
        **extra,
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


def _recommender(name: str, products: ProductsSettings, seed: int, **overrides: Any) -> Recommender:
    """An unfitted recommender ``name`` ("shipped" = the hybrid, "popularity" or a peer)."""
    from models.peers import (
        ALSRecommender,
        BPRRecommender,
        BuyAgainRecommender,
        ItemCosineRecommender,
    )

    classes: dict[str, type[Recommender]] = {
        "popularity": PopularityRecommender, "shipped": HybridRecommender,
        "buy_again": BuyAgainRecommender, "item_cosine": ItemCosineRecommender,
        "als": ALSRecommender, "bpr": BPRRecommender,
    }  # fmt: skip
    return classes[name](recommender_config(name, products, seed, **overrides))  # type: ignore[arg-type]


# a small grid for the shipped recommender on the shop's own data: how much the member's own
# repeat purchases and item-item similarity weigh against ALS
TUNE_GRID: tuple[dict[str, float], ...] = (
    {"buy_again_weight": 1.0}, {"buy_again_weight": 4.0}, {"item_weight": 0.0},
    {"item_weight": 1.5}, {"buy_again_weight": 4.0, "item_weight": 1.5},
    {"buy_again_weight": 1.0, "item_weight": 0.0},
)  # fmt: skip


def _ndcg_units(model: Recommender, truth: dict[str, set[str]], k: int) -> np.ndarray:
    members = sorted(truth)
    recs = [[p for p, _, _ in r] for r in model.recommend_many(members, n=k)]
    return ndcg_per_member(recs, [truth[m] for m in members], k)


def _tune(lines: pd.DataFrame, split: pd.Timestamp, cfg: TrainConfig, products: ProductsSettings,
          seconds: float) -> tuple[dict[str, float], list[str]]:  # fmt: skip
    """The best grid point for the shipped recommender on the window before ``split`` (fitted
    on what precedes that window), within ``seconds``; {} keeps the defaults."""
    start = split - timedelta(days=cfg.validation_days)
    before, truth = lines[lines["ts"] < start], purchases_between(lines, start, split)
    if before.empty or not truth or seconds <= 0:
        return {}, ["shipped recommender not tuned: no earlier window with purchases"]
    t0 = time.perf_counter()
    best: dict[str, float] = {}
    best_score = float(np.nanmean(_ndcg_units(
        _fit(_recommender("shipped", products, cfg.seed), before, start), truth, cfg.top_k)))  # fmt: skip
    tried = 1
    for point in TUNE_GRID:
        if time.perf_counter() - t0 > seconds:
            break
        model = _fit(_recommender("shipped", products, cfg.seed, **point), before, start)
        score = float(np.nanmean(_ndcg_units(model, truth, cfg.top_k)))
        tried += 1
        if score > best_score + 1e-9:
            best, best_score = dict(point), score
    return best, [f"shipped recommender tuned on the window before validation: {tried} of "
                  f"{len(TUNE_GRID) + 1} grid points in {time.perf_counter() - t0:.0f}s, best {best or 'defaults'}"]  # fmt: skip


def train_products(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    products: ProductsSettings | None = None,
    gate: GateSettings | None = None,
    segments: dict[str, str] | None = None,
    categories: dict[str, str] | None = None,
) -> TrainResult:
    """Every simple policy (``gate.peers``: popularity, buy-again, item-item, ALS, simplest
    first), the shipped hybrid at its defaults and tuned on this shop's earlier window, all
    fitted before ``cutoff - validation_days`` and scored member by member (NDCG@k) on the
    validation window; :func:`training.gate.select` names the champion. The shipped hybrid
    and the best simple policy are then refitted on everything before ``cutoff``.

    ``lines``: order lines with member_id, product_id (non-null), ts (naive UTC), quantity.
    ``products`` / ``gate``: the settings tree's sections (their defaults when None).
    ``segments`` (member -> country) and ``categories`` (product -> category) go into the
    registered models: cold start from the member's segment, the category filter.
    """
    products = products or ProductsSettings()
    gate = gate or GateSettings()
    lines = lines[lines["product_id"].notna()]
    lines = lines[lines["ts"] < cutoff]
    split = cutoff - timedelta(days=cfg.validation_days)
    past = lines[lines["ts"] < split]
    truth = purchases_between(lines, split, cutoff)
    catalogue = lines["product_id"].nunique()
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    selection = None
    tuned: dict[str, float] = {}
    shipped_name, rule_name = "hybrid", gate.peers[0] if gate.peers else "popularity"
    if lines.empty:  # spend-only data (CDNOW style): nothing to recommend from
        notes.append(
            "no order line has a product_id (spend-only data): product lists are empty; "
            "churn, send time and coupons do not need them"
        )
    elif len(past) and truth:
        tuned, tune_notes = _tune(lines, split, cfg, products, gate.tune_seconds)
        notes += tune_notes
        fitted: dict[str, Recommender] = {}
        cands: list[Candidate] = []
        for i, name in enumerate(gate.peers):
            fitted[name] = _fit(_recommender(name, products, cfg.seed), past, split)
            cands.append(
                Candidate(name, "baseline", i, units=_ndcg_units(fitted[name], truth, cfg.top_k))
            )
        fitted["hybrid"] = _fit(_recommender("shipped", products, cfg.seed), past, split)
        cands.append(Candidate("hybrid", "model", len(gate.peers),
                               units=_ndcg_units(fitted["hybrid"], truth, cfg.top_k)))  # fmt: skip
        if tuned:
            name = "hybrid_tuned(" + ",".join(f"{k}={v:g}" for k, v in tuned.items()) + ")"
            fitted[name] = _fit(_recommender("shipped", products, cfg.seed, **tuned), past, split)
            cands.append(Candidate(name, "model", len(gate.peers) + 1,
                                   units=_ndcg_units(fitted[name], truth, cfg.top_k)))  # fmt: skip
        selection = select(cands, z=gate.z)
        rule_name = best_rule(selection)
        models = [r.name for r in selection.rows if r.role == "model"]
        shipped_name = selection.champion if selection.role == "model" else max(
            models, key=lambda n: selection.row(n).estimate)  # fmt: skip
        if shipped_name == "hybrid":
            tuned = {}
        metrics = {
            "shipped": ranking_metrics(fitted[shipped_name], truth, cfg.top_k, catalogue),
            "baseline": ranking_metrics(fitted[rule_name], truth, cfg.top_k, catalogue),
        }
    else:
        notes.append("no purchases in the validation window: models not compared")
    shipped_cfg = recommender_config("shipped", products, cfg.seed, **tuned)
    final = {"segments": segments, "categories": categories}  # cold start and filters
    shipped = _fit(_recommender("shipped", products, cfg.seed, **tuned), lines, cutoff, **final)
    baseline = _fit(_recommender(rule_name, products, cfg.seed), lines, cutoff, **final)
    return TrainResult(
        name="products",
        shipped=shipped,
        baseline=baseline,
        metrics=metrics,
        primary=f"ndcg@{cfg.top_k}",
        params={**vars(shipped_cfg), "validation_days": cfg.validation_days},
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(m) for m in lines["member_id"].head(1)]}),
        selection=selection,
        policies={"shipped": shipped_name, "baseline": rule_name},
    )
