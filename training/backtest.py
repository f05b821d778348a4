"""Backtest sections: score predictions made as of a date against what happened after it.

Each function takes explicit frames (history before the as-of instant, the future within
the horizon) and returns {"shipped": {...}, "baselines": {name: {...}}} with the same
metric names in every entry, plus any extra detail under other keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.send_time import window_sum
from training.metrics import (
    churn_metrics,
    hour_hit_rate,
    hour_of_day_hit_rate,
)
from training.send_time import local_hour_of_week


# ---------------------------------------------------------------- churn
def churn_section(
    members: pd.DataFrame,
    shipped_p: np.ndarray,
    peer_p: dict[str, np.ndarray],
    y_true: np.ndarray,
) -> dict[str, Any]:
    """``shipped_p`` and each peer's ``p``: probability of no purchase within the horizon,
    one per row of ``members``; ``y_true``: 1 where the member made no purchase."""
    return {
        "shipped": _churn_metrics(y_true, shipped_p),
        "baselines": {k: _churn_metrics(y_true, p) for k, p in peer_p.items()},
        "members": int(len(members)),
        "base_rate": float(np.mean(y_true)) if len(y_true) else None,
    }


def _churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    m = churn_metrics(y, np.clip(p, 1e-6, 1 - 1e-6))
    return {k: m[k] for k in ("roc_auc", "pr_auc", "brier")}


# ---------------------------------------------------------------- send time
def first_engagements(eng_after: pd.DataFrame, timezones: dict[str, str]) -> pd.DataFrame:
    """The first engagement of each member in ``eng_after`` with its local hour of week."""
    first = eng_after.sort_values("ts", kind="stable").groupby("member_id", as_index=False).head(1)
    tz = first["member_id"].map(timezones).fillna("UTC")
    return first.assign(how=local_hour_of_week(first["ts"], tz))


def send_time_scores(recommended: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    return {
        "hit_rate_1h": hour_hit_rate(recommended, actual, tolerance_hours=1),
        "hour_of_day_hit_rate_1h": hour_of_day_hit_rate(recommended, actual, tolerance_hours=1),
    }


def member_mode_hours(
    eng_before: pd.DataFrame,
    timezones: dict[str, str],
    fallback: int,
    allowed: np.ndarray | None = None,
) -> dict[str, int]:
    """Each member's own most frequent local hour of week (no shrinkage); with ``allowed``
    ((168,) bool) the most frequent among the allowed hours (members with none are left
    out)."""
    tz = eng_before["member_id"].map(timezones).fillna("UTC")
    how = local_hour_of_week(eng_before["ts"], tz)
    counts = pd.DataFrame({"member_id": eng_before["member_id"].to_numpy(), "how": how})
    if allowed is not None:
        counts = counts[np.asarray(allowed, dtype=bool)[how]]
    counts = counts.groupby(["member_id", "how"]).size().rename("n").reset_index()
    counts = counts.sort_values(["member_id", "n", "how"], ascending=[True, False, True])
    return dict(counts.groupby("member_id").head(1)[["member_id", "how"]].itertuples(index=False))


def reachable_share(actual: np.ndarray, allowed: np.ndarray, tolerance_hours: int = 1) -> float:
    """Share of ``actual`` hours of week within ``tolerance_hours`` (circularly) of an
    ``allowed`` hour ((168,) bool): the best hit rate a recommender restricted to the
    allowed hours can reach."""
    ok = np.asarray(allowed, dtype=bool)
    near = window_sum(ok, tolerance_hours) > 0
    a = np.asarray(actual, dtype=np.int64) % len(ok)
    return float(near[a].mean()) if len(a) else float("nan")
