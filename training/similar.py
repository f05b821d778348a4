"""Train bought-together neighbours and let the gate choose them against raw counts.

The popularity discount is tuned on an earlier window (orders in the validation window before
it), the gate then compares raw co-occurrence counts with the tuned discount on the last
window, basket by basket (next-basket co-purchase hit rate at k), and the winner is refitted
on every order before the cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.similar import (
    CoOccurrence,
    NeighboursConfig,
    ProductNeighbours,
    SimilarProducts,
    basket_hit_rate,
    cooccurrence,
)
from training.gate import Candidate, select
from training.result import TrainResult

POWERS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)  # discounts tried against raw counts (0)


def baskets_between(lines: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> list[list[str]]:
    """Distinct products of each order placed in [start, end) (purchases only)."""
    w = lines[(lines["ts"] >= start) & (lines["ts"] < end) & (lines["quantity"] > 0)]
    return [sorted(set(g)) for _, g in w.groupby("order_id")["product_id"]]


def _counts(lines: pd.DataFrame, rows: str = "order_id") -> CoOccurrence:
    return cooccurrence(lines[rows].to_numpy(str), lines["product_id"].to_numpy(str))


def _fit(counts: CoOccurrence, power: float, k: int) -> ProductNeighbours:
    return ProductNeighbours(NeighboursConfig(popularity_power=power, K=k)).fit_counts(counts)


def _tune(counts: CoOccurrence, baskets: Sequence[Sequence[str]], powers: Sequence[float],
          k: int, top_k: int) -> float:  # fmt: skip
    best, best_hit = 0.0, -1.0
    for power in (0.0, *powers):
        hit = float(np.nanmean(basket_hit_rate(_fit(counts, power, k), baskets, top_k)))
        if hit > best_hit + 1e-12:
            best, best_hit = power, hit
    return best


def train_similar(
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    validation_days: int,
    top_k: int = 10,
    neighbours: int = 50,
    z: float = 1.645,
    powers: Sequence[float] = POWERS,
) -> TrainResult:
    """``lines``: order lines (order_id, member_id, product_id, ts naive UTC, quantity).
    Registered as ``similar``: the shipped model uses the tuned discount, the baseline raw
    counts; the gate's choice is the champion."""
    lines = lines[lines["product_id"].notna() & (lines["quantity"] > 0) & (lines["ts"] < cutoff)]
    notes: list[str] = []
    selection = None
    metrics: dict[str, dict[str, float]] = {}
    tuned = 0.0
    primary = f"hit_rate@{top_k}"
    if lines.empty:
        notes.append("no order line has a product_id: no similar products")
    else:
        val = pd.Timedelta(days=validation_days)
        gate_start, tune_start = cutoff - val, cutoff - 2 * val
        gate_baskets = baskets_between(lines, gate_start, cutoff)
        tune_baskets = baskets_between(lines, tune_start, gate_start)
        before_gate = lines[lines["ts"] < gate_start]
        before_tune = lines[lines["ts"] < tune_start]
        if before_gate.empty or not any(len(b) > 1 for b in gate_baskets):
            notes.append("no multi-product order in the validation window: raw counts serve")
        else:
            if len(before_tune) and any(len(b) > 1 for b in tune_baskets):
                tuned = _tune(_counts(before_tune), tune_baskets, powers, neighbours, top_k)
            else:
                notes.append(
                    "no earlier window to tune on: the cosine ranking (power 0.5) is tried"
                )
                tuned = 0.5
            gate_counts = _counts(before_gate)
            units = {p: basket_hit_rate(_fit(gate_counts, p, neighbours), gate_baskets, top_k)
                     for p in {0.0, tuned}}  # fmt: skip
            cands = [Candidate("co_occurrence_counts", "baseline", 0, units=units[0.0])]
            if tuned > 0:
                cands.append(Candidate(f"discounted_counts(power={tuned:g})", "model", 1,
                                       units=units[tuned]))  # fmt: skip
            selection = select(cands, z=z)
            metrics = {
                "shipped": {primary: float(np.nanmean(units[tuned])), "baskets": float(selection.n_units)},
                "baseline": {primary: float(np.nanmean(units[0.0])), "baskets": float(selection.n_units)},
            }  # fmt: skip
    together, by_member = _counts(lines), _counts(lines, rows="member_id")

    def both(power: float) -> SimilarProducts:
        return SimilarProducts(
            _fit(together, power, neighbours), _fit(by_member, power, neighbours)
        )

    return TrainResult(
        name="similar",
        shipped=both(tuned),
        baseline=both(0.0),
        metrics=metrics,
        primary=primary,
        params={
            "popularity_power": tuned,
            "neighbours": neighbours,
            "validation_days": validation_days,
        },  # fmt: skip
        notes=notes,
        selection=selection,
        policies={
            "shipped": f"discounted_counts(power={tuned:g})",
            "baseline": "co_occurrence_counts",
        },
    )
