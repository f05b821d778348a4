"""Churn: the classifier `memberwise run` registered against the recency rule and BG/NBD.

Members with a purchase before the as-of date get P(no purchase in the horizon) from each
policy of the churn gate of `memberwise run` (``training.churn.churn_policies``): the
recency rule (fitted on the horizon before the as-of date), BG/NBD (on the as-of tag
snapshot, no labels needed) and the registered classifier; each is scored against whether
the member bought nothing in the horizon: ROC AUC (with its Hanley-McNeil standard error),
PR AUC and Brier score. The gate's verdict comes from ``training.gate.select`` over
ROC AUC bootstrapped over members (``training.churn.gate_candidates``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features import repo
from features.settings import ChurnSettings
from models.churn import RECENCY_DAYS
from training.backtest.report import gate_record
from training.churn import churn_labels, churn_policies, gate_candidates
from training.config import TrainConfig, churn_config
from training.gate import select
from training.metrics import calibration_table, churn_metrics, roc_auc_standard_error

PRIMARY = "roc_auc"
SHIPPED = "model"  # the gate's name of the registered classifier


def recency_frame(purchases: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """member_id and ``recency_days`` (days from the last purchase before ``at`` to ``at``,
    as the tags compute it) of every member with a purchase before ``at``."""
    past = purchases[purchases["ts"] < at]
    last = past.groupby(past["member_id"].astype(str))["ts"].max()
    return pd.DataFrame({"member_id": last.index.to_numpy(),
                         RECENCY_DAYS: (at - last).dt.total_seconds().to_numpy() / 86400.0})  # fmt: skip


def candidates(
    tags: pd.DataFrame,
    purchases: pd.DataFrame,
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    shipped: Any,
    churn: ChurnSettings | None = None,
) -> dict[str, np.ndarray]:
    """P(no purchase within ``cfg.horizon_days`` after ``cutoff``) per row of ``tags`` (the
    churn features as of ``cutoff``) from each policy of the churn gate
    (``training.churn.churn_policies``, simplest first): the recency rule, fitted on the
    horizon before ``cutoff`` (recency then, purchase in it or not: ``purchases`` =
    member_id, ts naive UTC, lines with quantity > 0, before ``cutoff``), BG/NBD (no labels
    needed) and ``shipped`` (a fitted classifier with ``predict_proba``) as "model"."""
    policies = churn_policies(cfg, churn_config(churn or ChurnSettings(), cfg))
    X = tags[repo.CHURN_FEATURES].astype(float)
    X = X.fillna({c: 0.0 for c in X.columns if X[c].isna().all()})
    before = cutoff - pd.Timedelta(days=cfg.horizon_days)
    prev = recency_frame(purchases, before)
    y_prev = churn_labels(prev["member_id"], purchases[purchases["ts"] < cutoff], before,
                          cfg.horizon_days).to_numpy(int)  # fmt: skip
    out: dict[str, np.ndarray] = {}
    for name, build in policies.items():
        if name == "recency_rule":
            model = build().fit(prev[[RECENCY_DAYS]], y_prev)
            out[name] = model.predict_proba(X[[RECENCY_DAYS]])[:, 1]
        elif name == "bg_nbd":
            out[name] = build().fit(X, np.zeros(0, dtype=int)).predict_proba(X)[:, 1]
        else:
            out[name] = shipped.predict_proba(X)[:, 1]
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def score(probabilities: dict[str, np.ndarray], y: np.ndarray) -> dict[str, dict[str, float]]:
    """ROC AUC, its standard error, PR AUC and Brier of each candidate's probabilities
    against ``y`` (n,) 1 = no purchase in the held-out window."""
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    out: dict[str, dict[str, float]] = {}
    for name, p in probabilities.items():
        m = churn_metrics(y, np.clip(p, 1e-6, 1 - 1e-6))
        out[name] = {
            "roc_auc": m["roc_auc"],
            "roc_auc_se": roc_auc_standard_error(m["roc_auc"], n_pos, n_neg),
            "pr_auc": m["pr_auc"],
            "brier": m["brier"],
        }
    return out


def labels(members: pd.Series, future_lines: pd.DataFrame) -> np.ndarray:
    """(n,) 1 where the member has no line with quantity > 0 in ``future_lines``."""
    buyers = set(future_lines.loc[future_lines["quantity"] > 0, "member_id"].astype(str))
    return np.array([0 if m in buyers else 1 for m in members.astype(str)], dtype=int)


def section(ctx: Any) -> dict[str, Any] | None:
    """The backtest's churn section for a backtest Context (None, with a note, when it
    cannot be computed)."""
    tags = ctx.tags[ctx.tags["frequency"] > 0].reset_index(drop=True)
    if tags.empty:
        ctx.notes["churn"] = "not compared: no member with a purchase before the as-of date"
        return None
    future = ctx.future.get("order_lines", pd.DataFrame(columns=["member_id", "quantity"]))
    y = labels(tags["member_id"], future)
    if len(np.unique(y)) < 2:
        ctx.notes["churn"] = "not compared: every member is in the same class after the as-of date"
        return None
    vis = ctx.visible["order_lines"]
    probs = candidates(tags, vis[vis["quantity"] > 0], ctx.start, ctx.cfg, ctx.shipped("churn"),
                       ctx.settings.churn)  # fmt: skip
    gate = ctx.settings.gate
    members = tags["member_id"].astype(str).to_numpy()
    selection = select(gate_candidates(probs, y, members), z=gate.z, n_boot=gate.bootstrap,
                       seed=ctx.cfg.seed)  # fmt: skip
    scores = score(probs, y)
    return {
        "shipped": scores.pop(SHIPPED),
        "baselines": scores,
        "shipped_name": SHIPPED,
        "gate": gate_record(selection, SHIPPED),
        "members": int(len(tags)),
        "base_rate": float(np.mean(y)),
        "calibration": {
            name: calibration_table(y, p).to_dict(orient="list") for name, p in probs.items()
        },
    }
