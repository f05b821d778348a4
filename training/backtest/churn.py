"""Churn: the classifier `memberwise run` registered against BG/NBD alone.

Members with a purchase before the as-of date get P(no purchase in the horizon) from the
shipped classifier (on the as-of tag snapshot) and from a BG/NBD model fitted here on the
same purchase history; both are scored against whether the member bought nothing in the
horizon: ROC AUC (with its Hanley-McNeil standard error), PR AUC and Brier score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features import repo
from models.bgnbd import BetaGeoModel, rfm_summary
from training.metrics import calibration_table, churn_metrics, roc_auc_standard_error

PRIMARY = "roc_auc"


def candidates(
    tags: pd.DataFrame,
    purchases: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    shipped: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """P(no purchase within ``horizon_days`` after ``cutoff``) per row of ``tags`` (the
    churn features as of ``cutoff``), from ``shipped`` (a fitted classifier with
    ``predict_proba``) and from BG/NBD fitted on ``purchases`` (member_id, ts naive UTC;
    lines with quantity > 0) before ``cutoff``.

    Returns (name -> (n,) probabilities, {"bg_nbd_params": ...}).
    """
    X = tags[repo.CHURN_FEATURES].astype(float)
    p_ship = np.asarray(shipped.predict_proba(X)[:, 1], dtype=float)
    past = purchases[purchases["ts"] < cutoff]
    summ = rfm_summary(past["member_id"].astype(str), past["ts"], cutoff, unit="D")
    summ = summ.set_index("member_id").reindex(tags["member_id"].astype(str))
    bg = BetaGeoModel().fit(summ["frequency"], summ["recency"], summ["T"])
    p_bg = bg.predict_no_purchase_probability(
        horizon_days, summ["frequency"], summ["recency"], summ["T"]
    )
    return {"shipped": p_ship, "bg_nbd": np.asarray(p_bg, dtype=float)}, {
        "bg_nbd_params": bg.to_dict()
    }


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
        ctx.notes["churn"] = "no member with a purchase before the as-of date"
        return None
    future = ctx.future.get("order_lines", pd.DataFrame(columns=["member_id", "quantity"]))
    y = labels(tags["member_id"], future)
    if len(np.unique(y)) < 2:
        ctx.notes["churn"] = "every member is in the same class after the as-of date"
        return None
    vis = ctx.visible["order_lines"]
    probs, extra = candidates(
        tags, vis[vis["quantity"] > 0], ctx.start, ctx.horizon_days, ctx.shipped("churn")
    )
    scores = score(probs, y)
    return {
        "shipped": scores.pop("shipped"),
        "baselines": scores,
        "members": int(len(tags)),
        "base_rate": float(np.mean(y)),
        **extra,
        "calibration": {
            name: calibration_table(y, p).to_dict(orient="list") for name, p in probs.items()
        },
    }
