"""Train the churn classifier on time-based labels; the gate chooses it against a recency rule
and BG/NBD on members held out whole (ROC AUC, bootstrapped over members)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from features.settings import ChurnSettings, GateSettings
from models.churn import ChurnConfig, RecencyChurn, build_churn_baseline, build_churn_model
from training.config import TrainConfig, churn_config
from training.gate import Candidate, best_rule, bootstrap_stat, select
from training.metrics import churn_metrics
from training.result import TrainResult


def churn_labels(
    members: pd.Series, order_ts: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int
) -> pd.Series:
    """1 where a member made no purchase in [cutoff, cutoff + horizon), else 0.

    ``order_ts``: purchases with member_id and ts (naive UTC).
    """
    end = cutoff + pd.Timedelta(days=horizon_days)
    w = order_ts[(order_ts["ts"] >= cutoff) & (order_ts["ts"] < end)]
    bought = set(w["member_id"])
    return pd.Series(
        [0 if m in bought else 1 for m in members], index=members.index, name="churned"
    )


def churn_policies(cfg: TrainConfig, ccfg: ChurnConfig) -> dict[str, Callable[[], Any]]:
    """The churn gate's policies, simplest first: name -> a builder of the unfitted
    classifier (``fit(X, y)``, ``predict_proba(X)[:, 1]`` = P(no purchase in the horizon))."""
    return {
        "recency_rule": lambda: RecencyChurn(),
        "bg_nbd": lambda: build_churn_baseline(cfg.horizon_days),
        "model": lambda: build_churn_model(ccfg),
    }


def gate_candidates(
    probabilities: Mapping[str, np.ndarray], y: np.ndarray, members: np.ndarray
) -> list[Candidate]:
    """The churn gate's candidates, simplest first in the order of ``probabilities`` (name ->
    (n,) P(no purchase) per held-out row, names of :func:`churn_policies`): ROC AUC against
    ``y`` (n,) 1 = no purchase, bootstrapped over ``members`` (n,) (all of a member's rows
    drawn together). `memberwise run` calls it on its held-out members, the backtest on the
    horizon."""
    ids, member_of_row = np.unique(np.asarray(members).astype(str), return_inverse=True)

    def auc(p: np.ndarray) -> Any:
        def stat(idx: np.ndarray) -> float:  # a member drawn k times weighs k
            weight = np.bincount(idx, minlength=len(ids))[member_of_row]
            return float(roc_auc_score(y, p, sample_weight=weight))

        return bootstrap_stat(stat, len(ids))

    return [
        Candidate(n, "model" if n == "model" else "baseline", i, statistic=auc(np.asarray(p)))
        for i, (n, p) in enumerate(probabilities.items())
    ]


def train_churn(
    frame: pd.DataFrame,
    features: list[str],
    cfg: TrainConfig,
    churn: ChurnSettings | None = None,
    history: pd.DataFrame | None = None,
    gate: GateSettings | None = None,
) -> TrainResult:
    """``frame``: one row per member and cutoff (several cutoffs stack: more members, more
    seasons), the feature columns plus ``member_id`` and ``churned``. ``churn``: the settings
    tree's ``churn`` section (its defaults when None). ``history``: the feature columns as of
    the run date (no labels); when ``frame`` holds no labelled row (a history shorter than
    the horizon), the BG/NBD baseline, which needs no labels, is fitted on it.

    Model and baseline are compared on members held out whole (all their cutoffs), so no
    member's future leaks from training rows into the comparison.
    """
    X = frame[features].astype("float64")
    # a feature no member has yet (e.g. no messages in this shop) carries no signal; a
    # constant keeps the column so training and serving see the same feature list
    X = X.fillna({c: 0.0 for c in X.columns if X[c].isna().all()})
    y = frame["churned"].to_numpy(int)
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if len(np.unique(y)) < 2 or len(frame) < 20:
        # the model cannot be trained or compared; the baseline always registers, so
        # `score` and the API have a champion (BG/NBD needs no labels; y only sets the
        # rate of members it cannot score, 0.5 without labels)
        if frame.empty:
            why = (
                "no member bought before the latest label cutoff (history shorter than "
                f"the {cfg.horizon_days}-day horizon)"
            )
        elif len(np.unique(y)) < 2:
            why = f"every labelled member has the same label (churned={int(y[0])})"
        else:
            why = f"only {len(frame)} labelled rows (at least 20 needed)"
        notes.append(f"{why}: churn model not trained; the BG/NBD baseline serves")
        if frame.empty and history is not None and len(history):
            X = history[features].astype("float64")
            X = X.fillna({c: 0.0 for c in X.columns if X[c].isna().all()})
            y = np.zeros(0, dtype=int)
        baseline = build_churn_baseline(cfg.horizon_days).fit(X, y)
        return TrainResult("churn", None, baseline, metrics, "roc_auc", flavor="sklearn",
                           notes=notes, input_example=X.head(5) if len(X) else None,
                           policies={"baseline": "bg_nbd"})  # fmt: skip
    groups = frame["member_id"].astype(str).to_numpy()
    split = GroupShuffleSplit(n_splits=1, test_size=cfg.test_share, random_state=cfg.seed)
    tr, te = next(split.split(X, y, groups))
    X_tr, X_te, y_tr, y_te = X.iloc[tr], X.iloc[te], y[tr], y[te]
    ccfg = churn_config(churn or ChurnSettings(), cfg)
    gate = gate or GateSettings()
    evaluation: dict[str, np.ndarray] = {"y_true": y_te}
    builders = churn_policies(cfg, ccfg)
    scores = {
        name: build().fit(X_tr, y_tr).predict_proba(X_te)[:, 1] for name, build in builders.items()
    }
    selection = select(
        gate_candidates(scores, y_te, groups[te]), z=gate.z, n_boot=gate.bootstrap, seed=cfg.seed
    )
    rule = best_rule(selection)
    evaluation["shipped"], evaluation["baseline"] = scores["model"], scores[rule]
    metrics["shipped"] = churn_metrics(y_te, scores["model"])
    metrics["baseline"] = churn_metrics(y_te, scores[rule])
    shipped = build_churn_model(ccfg).fit(X, y)
    baseline = builders[rule]().fit(X, y)
    return TrainResult(
        name="churn",
        shipped=shipped,
        baseline=baseline,
        metrics=metrics,
        primary="roc_auc",
        flavor="sklearn",
        params={
            "horizon_days": cfg.horizon_days,
            "n_rows": len(frame),
            "n_members": int(frame["member_id"].nunique()),
            "n_cutoffs": int(frame["cutoff"].nunique()) if "cutoff" in frame else 1,
            "churn_rate": float(y.mean()),
            **vars(ccfg),
        },  # fmt: skip
        input_example=X.head(5),
        evaluation=evaluation,
        selection=selection,
        policies={"shipped": "model", "baseline": rule},
    )
