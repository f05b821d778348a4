"""Train the product recommender and let the gate choose it against every simple policy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pandas as pd

from features.settings import GateSettings, ProductsSettings
from models.products import HybridRecommender, PopularityRecommender, Recommender
from training.config import TrainConfig, recommender_config
from training.gate import Candidate, best_rule, select
from training.metrics import catalogue_coverage, map_at_k, ndcg_at_k, ndcg_per_member, recall_at_k
from training.result import TrainResult
from training.tuning import SHIPPED, default_grids, fit_lines, tune

HYBRID = "hybrid"  # the gate's name of the shipped recommender at its configured values


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


def make_recommender(
    name: str, products: ProductsSettings, seed: int, **overrides: Any
) -> Recommender:
    """An unfitted recommender ``name`` ("shipped" = the hybrid, "popularity" or a peer)."""
    from models.peers import (
        ALSRecommender,
        BPRRecommender,
        BuyAgainRecommender,
        ItemCosineRecommender,
    )

    classes: dict[str, type[Recommender]] = {
        "popularity": PopularityRecommender, SHIPPED: HybridRecommender,
        "buy_again": BuyAgainRecommender, "item_cosine": ItemCosineRecommender,
        "als": ALSRecommender, "bpr": BPRRecommender,
    }  # fmt: skip
    if name not in classes:
        raise ValueError(f"unknown recommender {name!r}: expected one of {sorted(classes)}")
    return classes[name](recommender_config(name, products, seed, **overrides))  # type: ignore[arg-type]


def tuned_name(params: Mapping[str, Any]) -> str:
    """The gate's name of the hybrid at a grid point: "hybrid" at its configured values,
    else "hybrid_tuned(k=v, ...)"."""
    if not params:
        return HYBRID
    return "hybrid_tuned(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in params.items()) + ")"  # fmt: skip


def departures(config: Any, products: ProductsSettings, seed: int) -> dict[str, Any]:
    """The values of a hybrid's ``config`` that differ from the settings' (threads aside),
    in the config's field order: the grid point it was tuned to, {} for the configured
    hybrid. The trainer and the backtest name the shipped hybrid by it
    (:func:`tuned_name`)."""
    configured = vars(recommender_config(SHIPPED, products, seed))
    return {
        k: v for k, v in vars(config).items()
        if k != "num_threads" and configured.get(k) != v
    }  # fmt: skip


def gate_candidates(
    models: Mapping[str, Recommender], truth: dict[str, set[str]], k: int
) -> list[Candidate]:
    """The products gate's candidates, simplest first in the order of ``models`` (name ->
    fitted recommender: the simple policies of ``gate.peers``, then the hybrid as
    "hybrid" and/or "hybrid_tuned(...)", role "model"), each scored member by member
    (NDCG@k) on ``truth`` (member -> products bought in the held-out window). `memberwise
    run` calls it on its validation window, the backtest on the horizon."""
    members = sorted(truth)
    relevant = [truth[m] for m in members]
    out = []
    for i, (name, model) in enumerate(models.items()):
        recs = [[p for p, _, _ in r] for r in model.recommend_many(members, n=k)]
        role = "model" if name.startswith(HYBRID) else "baseline"
        out.append(Candidate(name, role, i, units=ndcg_per_member(recs, relevant, k)))
    return out


def tune_hybrid(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    products: ProductsSettings | None = None,
    seconds: float | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The hybrid's grid point chosen on the tuning window before ``cutoff`` (see
    training.tuning), within ``seconds`` (None: no limit): (params, table, note). Params
    are {} when the window has nothing to tune on or no time is given: the configured
    values are kept."""
    products = products or ProductsSettings()
    grid = default_grids()[SHIPPED]
    if seconds is not None and seconds <= 0:
        return {}, [], "shipped recommender not tuned (no time budget): configured values kept"
    try:
        best, table = tune(
            lambda p: make_recommender(SHIPPED, products, cfg.seed, **p),
            grid, lines, cutoff, cfg.validation_days, k=cfg.top_k, seconds=seconds,
        )  # fmt: skip
    except ValueError as exc:
        return {}, [], f"shipped recommender not tuned, configured values kept: {exc}"
    spent = sum(row["fit_seconds"] for row in table)
    return (
        best,
        table,
        (
            f"shipped recommender tuned on the window before validation: {len(table)} of "
            f"{len(grid)} grid points in {spent:.0f}s, best {best or 'defaults'}"
        ),
    )


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
    first), the shipped hybrid at its configured values and at the grid point
    :func:`tune_hybrid` chose on the tuning window before the validation window
    (training.tuning), all fitted before ``cutoff - validation_days`` and scored member by
    member (NDCG@k, :func:`gate_candidates`) on the validation window;
    :func:`training.gate.select` names the champion. The shipped hybrid and the best simple
    policy are then refitted on everything before ``cutoff``; the backtest scores this very
    model.

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
    tuned: dict[str, Any] = {}
    shipped_name, rule_name = HYBRID, gate.peers[0] if gate.peers else "popularity"
    if lines.empty:  # spend-only data (CDNOW style): nothing to recommend from
        notes.append(
            "no order line has a product_id (spend-only data): product lists are empty; "
            "churn, send time and coupons do not need them"
        )
    elif len(past) and truth:
        tuned, _, note = tune_hybrid(lines, cutoff, cfg, products, gate.tune_seconds)
        notes.append(note)
        tuned = departures(recommender_config(SHIPPED, products, cfg.seed, **tuned), products,
                           cfg.seed)  # fmt: skip
        fitted: dict[str, Recommender] = {
            name: fit_lines(make_recommender(name, products, cfg.seed), past, split)
            for name in gate.peers
        }
        fitted[HYBRID] = fit_lines(make_recommender(SHIPPED, products, cfg.seed), past, split)
        if tuned:
            fitted[tuned_name(tuned)] = fit_lines(
                make_recommender(SHIPPED, products, cfg.seed, **tuned), past, split
            )
        selection = select(gate_candidates(fitted, truth, cfg.top_k), z=gate.z)
        rule_name = best_rule(selection)
        models = [r.name for r in selection.rows if r.role == "model"]
        shipped_name = selection.champion if selection.role == "model" else max(
            models, key=lambda n: selection.row(n).estimate)  # fmt: skip
        if shipped_name == HYBRID:
            tuned = {}
        metrics = {
            "shipped": ranking_metrics(fitted[shipped_name], truth, cfg.top_k, catalogue),
            "baseline": ranking_metrics(fitted[rule_name], truth, cfg.top_k, catalogue),
        }
    else:
        notes.append("no purchases in the validation window: models not compared")
    shipped_cfg = recommender_config(SHIPPED, products, cfg.seed, **tuned)
    final = {"segments": segments, "categories": categories}  # cold start and filters
    shipped = fit_lines(make_recommender(SHIPPED, products, cfg.seed, **tuned), lines, cutoff,
                        **final)  # fmt: skip
    baseline = fit_lines(make_recommender(rule_name, products, cfg.seed), lines, cutoff, **final)
    return TrainResult(
        name="products",
        shipped=shipped,
        baseline=baseline,
        metrics=metrics,
        primary=f"ndcg@{cfg.top_k}",
        params={
            **vars(shipped_cfg),
            "validation_days": cfg.validation_days,
            "tuned": ",".join(sorted(tuned)) or "none",
        },
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(m) for m in lines["member_id"].head(1)]}),
        selection=selection,
        policies={"shipped": shipped_name, "baseline": rule_name},
    )
