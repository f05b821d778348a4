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
   coverage (share of the history's catalogue shown to at least one evaluated member);
4. the promotion gate (``training.gate.select``) gives the verdict on the horizon over the
   very candidates `memberwise run` compares (``training.products.gate_candidates``: the
   ``gate.peers``, then the configured hybrid and the tuned one, member by member). A
   peer outside ``gate.peers`` (BPR by default) is scored beside them, outside the gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.settings import GateSettings, ProductsSettings
from models.products import Recommender
from training.backtest.context import NotCompared
from training.backtest.report import gate_record
from training.config import TrainConfig, recommender_config
from training.gate import select
from training.metrics import (
    catalogue_coverage,
    map_at_k,
    ndcg_per_member,
    recall_at_k,
    standard_error,
)
from training.products import (
    HYBRID,
    departures,
    gate_candidates,
    make_recommender,
    purchases_between,
    tune_hybrid,
    tuned_name,
)
from training.tuning import (
    PEERS,
    SHIPPED,
    NothingToTune,
    Params,
    default_grids,
    fit_lines,
    tune,
    tuning_window,
)

Progress = Callable[[str], Any]


def primary(cfg: TrainConfig) -> str:
    return f"ndcg@{cfg.top_k}"


def make_model(
    name: str, params: Params, cfg: TrainConfig, products: ProductsSettings | None = None
) -> Recommender:
    """The recommender ``name`` ("shipped" or a peer of ``PEERS``) with ``params`` on top
    of the settings' ``products`` section; one thread, so a fit is reproducible for
    ``cfg.seed``."""
    threads = {} if name in ("popularity", "buy_again") else {"num_threads": 1}
    return make_recommender(name, products or ProductsSettings(), cfg.seed, **threads, **params)


def candidates(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    shipped: Recommender,
    grids: dict[str, list[Params]] | None = None,
    progress: Progress = print,
    products: ProductsSettings | None = None,
    peers: tuple[str, ...] = PEERS,
    tune_seconds: float | None = None,
) -> tuple[dict[str, Recommender], dict[str, Any]]:
    """Each peer of ``peers`` (simplest first) tuned on the tuning window before ``cutoff``
    and refitted on ``lines`` before it, then the hybrid under the names of run's gate:
    the configured hybrid ("hybrid") and the tuned one ("hybrid_tuned(...)",
    :func:`training.products.tuned_name`), one of them ``shipped``, the other fitted here
    as `memberwise run` fits it (the tuned point found again by ``tune_hybrid`` on the
    same window, within ``tune_seconds``, when ``shipped`` is the configured hybrid).

    Returns (name -> fitted recommender, in that order; name -> {"best_params", "table",
    "seconds"} of each peer).
    """
    products = products or ProductsSettings()
    grids = grids if grids is not None else default_grids()
    history = lines[(lines["ts"] < cutoff) & lines["product_id"].notna()]
    models: dict[str, Recommender] = {}
    search: dict[str, Any] = {}
    for name in peers:
        grid = grids.get(name) or [{}]
        progress(f"products: tuning {name} on {len(grid)} point(s)")
        t0 = time.perf_counter()
        best, table = tune(
            lambda p, name=name: make_model(name, p, cfg, products),
            grid, history, cutoff, cfg.validation_days, k=cfg.top_k, progress=progress,
        )  # fmt: skip
        t1 = time.perf_counter()
        models[name] = fit_lines(make_model(name, best, cfg, products), history, cutoff)
        search[name] = {"best_params": best, "table": table,
                        "seconds": {"search": t1 - t0, "refit": time.perf_counter() - t1}}  # fmt: skip
    # the hybrid as run's gate saw it: configured, and at the grid point tune_hybrid picks
    # on the same window (shipped is one of the two; the other is refitted as run fits it)
    tuned = departures(shipped.config, products, cfg.seed)
    if not tuned:
        point, _, note = tune_hybrid(history, cutoff, cfg, products, tune_seconds)
        progress(f"products: {note}")
        point = departures(recommender_config(SHIPPED, products, cfg.seed, **point), products,
                           cfg.seed)  # fmt: skip
        models[HYBRID] = shipped
        if point:
            models[tuned_name(point)] = fit_lines(
                make_recommender(SHIPPED, products, cfg.seed, **point), history, cutoff
            )
    else:
        models[HYBRID] = fit_lines(make_recommender(SHIPPED, products, cfg.seed), history, cutoff)
        models[tuned_name(tuned)] = shipped
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
        per_member = ndcg_per_member(recs, relevant, k)
        per_member = per_member[np.isfinite(per_member)]
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
    products: ProductsSettings | None = None,
    gate: GateSettings | None = None,
) -> dict[str, Any]:
    """:func:`candidates` scored on the ``horizon_days`` after ``cutoff`` (see the module
    docstring), and the promotion gate's verdict on them: ``training.gate.select`` over
    the candidates `memberwise run` compares (``gate.peers``, then the hybrid), member by
    member. ``lines``: every order line (member_id, order_id, product_id, ts naive UTC,
    quantity), before and after ``cutoff``.

    Returns ``{"shipped": metrics, "baselines": {name: metrics}, "shipped_name",
    "shipped_params", "gate": training.backtest.report.gate_record, "outside_gate",
    "search": {peer: {"best_params", "table", "seconds"}}, "members_evaluated",
    "members_known", "tuning_window", "test_window"}``, windows as ``[start, end)`` ISO
    strings.
    """
    products = products or ProductsSettings()
    gate = gate or GateSettings()
    cutoff = pd.Timestamp(cutoff)
    test_end = cutoff + timedelta(days=horizon_days)
    lines = lines[lines["product_id"].notna()]
    history = lines[lines["ts"] < cutoff]
    truth = purchases_between(lines, cutoff, test_end)
    if history.empty or not truth:
        raise NotCompared(
            f"cannot backtest products as of {cutoff}: {len(history)} lines before it, "
            f"{len(truth)} buyers in the {horizon_days} days after it"
        )
    peers = (*gate.peers, *(p for p in PEERS if p not in gate.peers))
    models, search = candidates(lines, cutoff, cfg, shipped, grids, progress, products, peers,
                                gate.tune_seconds)  # fmt: skip
    shipped_name = tuned_name(departures(shipped.config, products, cfg.seed))
    in_gate = {n: m for n, m in models.items() if n in gate.peers or n.startswith(HYBRID)}
    selection = select(gate_candidates(in_gate, truth, cfg.top_k), z=gate.z)
    scores = score(models, truth, cfg.top_k, int(history["product_id"].nunique()))
    known = set(history["member_id"].astype(str))
    split, end = tuning_window(cutoff, cfg.validation_days)
    for name, m in scores.items():
        key = primary(cfg)
        progress(f"products: {name} test {key}={m[key]:.4f} ± {m[key + '_se']:.4f}")
    return {
        "shipped": scores.pop(shipped_name),
        "baselines": scores,
        "shipped_name": shipped_name,
        "shipped_params": {k: v for k, v in vars(shipped.config).items()},
        "gate": gate_record(selection, shipped_name),
        "outside_gate": [n for n in models if n not in in_gate],
        "search": search,
        "members_evaluated": len(truth),
        "members_known": sum(m in known for m in truth),
        "tuning_window": [split.isoformat(), end.isoformat()],
        "test_window": [cutoff.isoformat(), test_end.isoformat()],
    }


def section(ctx: Any) -> dict[str, Any]:
    """The backtest's products section for a backtest Context; raises
    :class:`~training.backtest.context.NotCompared` when the horizon or the tuning window
    before it holds nobody to score."""
    try:
        return compare(
            ctx.full_lines, ctx.start, ctx.horizon_days, ctx.cfg, ctx.shipped("products"),
            progress=ctx.progress, products=ctx.settings.products, gate=ctx.settings.gate,
        )  # fmt: skip
    except NothingToTune as exc:
        raise NotCompared(f"the peers cannot be tuned: {exc}") from exc
