"""Coupons: the policy `memberwise run` registered against the simple policies.

Each campaign in the horizon randomized its coupons against a control group, so every
policy decides, per offer, which of that campaign's coupons to give, if any, and is valued
by inverse propensity on the randomized arms (``training.coupon.policy_scores``):
incremental net margin per offer over giving none, with its standard error, the Qini
coefficient of its score and the share offered. Candidates: those of the promotion gate
of `memberwise run` (``training.coupon.gate_candidates``: no coupon, each coupon to
everyone, the registered personalised policy), whose verdict on the horizon comes from
``training.gate.select`` over each offer's inverse-propensity contribution; outside the
gate, random targeting at the shipped budget (the mean of 30 draws) and redemption
propensity at the same budget (a classifier fitted here on the treated offers before the
as-of date). On a synthetic shop the planted expected margin of the offers made
is reported too. Where offers were targeted rather than randomized, nothing can be valued
and only redemption propensity's ROC AUC is reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import repo
from models.coupon import CouponPolicy
from training.backtest.report import gate_record
from training.config import coupon_config
from training.coupon import (
    Decision,
    campaign_arms,
    cross_fitted_gate,
    gate_candidates,
    member_folds,
    policy_scores,
)
from training.gate import Candidate, select
from training.metrics import qini_curve

PRIMARY = "incremental_margin"
SHIPPED = "personalised"  # the gate's name of the registered policy
RANDOM_DRAWS = 30


def randomized(frame: pd.DataFrame) -> bool:
    """True when ``frame`` holds both control ('' arm) and treated offers."""
    return bool(len(frame)) and (frame["arm"] == "").any() and (frame["arm"] != "").any()


def candidates(
    history: pd.DataFrame, offers: pd.DataFrame, shipped: Any
) -> tuple[list[Candidate], dict[str, Decision]]:
    """The coupon gate's candidates on ``offers`` (the coupon training frame of the
    held-out offers, ``training.coupon.gate_candidates``: no coupon, each coupon to
    everyone, and the ``shipped`` policy as "personalised"), and every decision: theirs
    plus, outside the gate, redemption propensity at the shipped budget when ``history``
    (past offers) allows a redemption model. Random targeting is scored separately
    (:func:`random_scores`)."""
    policy = shipped if isinstance(shipped, CouponPolicy) and shipped.fitted else None
    cands, decisions = gate_candidates(offers, repo.COUPON_FEATURES, policy)
    out: dict[str, Decision] = dict(decisions)
    redeem = _propensity_scores(history, offers)
    if redeem is not None and SHIPPED in out:
        n = len(offers)
        camp = _campaign_coupon(offers)
        budget = int((out[SHIPPED][0] != "").sum())
        top = np.argsort(-redeem, kind="stable")[:budget]
        prop = np.full(n, "", dtype=object)
        prop[top] = camp[top]
        out["propensity"] = (prop.astype(str), redeem)
    return cands, out


def score(
    decisions: dict[str, Decision], offers: pd.DataFrame, planted: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """``policy_scores`` of each decision on the randomized ``offers`` (arm, net_margin,
    campaign_id), plus ``planted_margin`` (mean planted effect of the offers made) when
    ``planted`` (n,) is given."""
    arm = offers["arm"].to_numpy(str)
    y = offers["net_margin"].to_numpy(float)
    cid = offers["campaign_id"].to_numpy(str)
    out: dict[str, dict[str, float]] = {}
    for name, (a, s) in decisions.items():
        m = policy_scores(arm, y, a, s, cid)
        if planted is not None:  # the generator's expected effect of the offers made
            m["planted_margin"] = float(np.mean(np.where(a != "", planted, 0.0)))
        out[name] = m
    return out


def random_scores(
    offers: pd.DataFrame, budget: int, planted: np.ndarray | None = None
) -> dict[str, float]:
    """Random targeting of ``budget`` offers: the mean of :data:`RANDOM_DRAWS` seeded
    draws' scores, not one lucky draw."""
    n = len(offers)
    camp = _campaign_coupon(offers)
    draws = []
    for seed in range(RANDOM_DRAWS):
        rng = np.random.default_rng(seed)
        pick = np.full(n, "", dtype=object)
        idx = rng.choice(n, size=budget, replace=False)
        pick[idx] = camp[idx]
        draws.append(score({"r": (pick.astype(str), rng.random(n))}, offers, planted)["r"])
    return {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}


def section(ctx: Any) -> dict[str, Any] | None:
    """The backtest's coupons section for a backtest Context (None, with a note, when the
    offers in the horizon were not randomized)."""
    fut, hist = ctx.coupon_future, ctx.coupon_history
    if not randomized(fut):
        if len(fut) or len(hist):
            ctx.notes["coupons"] = (
                "offers in this dataset were targeted, not randomized: there is no control "
                "group, so the incremental effect of a coupon (uplift) cannot be estimated "
                "or validated without strong assumptions; only redemption propensity is "
                "reported"
            )
            ctx.notes["coupon_propensity"] = json.dumps(propensity_only(hist, fut))
        else:
            ctx.notes["coupons"] = "no coupon offers in this dataset"
        return None
    if not randomized(hist):
        return cross_fitted_section(ctx, fut)
    cands, decisions = candidates(hist, fut, ctx.shipped("coupon"))
    if SHIPPED not in decisions:
        ctx.notes["coupons"] = "the registered coupon policy is not fitted: nothing to value"
        return None
    gate = ctx.settings.gate
    selection = select(cands, z=gate.z)
    planted = _planted_effects(ctx.truth_dir, fut, _campaign_coupon(fut))
    scores = score(decisions, fut, planted)
    budget = int((decisions[SHIPPED][0] != "").sum())
    scores["random"] = random_scores(fut, budget, planted)
    treated = fut["arm"].to_numpy(str) != ""
    y = fut["net_margin"].to_numpy(float)
    curves = {
        name: qini_curve(treated, y, decisions[name][1])
        for name in (SHIPPED, "propensity")
        if name in decisions
    }
    return {
        "shipped": scores.pop(SHIPPED),
        "baselines": scores,
        "shipped_name": SHIPPED,
        "gate": gate_record(selection, SHIPPED),
        "outside_gate": [n for n in ("random", "propensity") if n in scores],
        "offers": int(len(fut)),
        "campaigns": sorted(set(fut["campaign_id"].astype(str))),
        "qini_curves": {
            ("shipped" if k == SHIPPED else k): [v[0].tolist(), v[1].tolist()]
            for k, v in curves.items()
        },  # fmt: skip
    }


def cross_fitted(
    offers: pd.DataFrame,
    features: list[str],
    ccfg: Any,
    k: int,
    seed: int = 0,
) -> tuple[list[Candidate], dict[str, Decision], str]:
    """Out-of-fold decisions on a one-off randomized campaign (no offer in the history to
    learn from). The gate's candidates and the personalised policy's out-of-fold decisions
    come from ``training.coupon.cross_fitted_gate``, the code the promotion gate of
    `memberwise run` values the policy with (``k`` folds by member). Outside the gate, on
    the same folds: a T-learner (one ``HistGradientBoostingRegressor`` of net margin per arm,
    offering the arm whose predicted margin beats control's by the most, if by anything)
    fitted on the other folds, and "random": a seeded uniform choice among the campaign's
    arms, control included. Returns the candidates, every decision and a note on folds where
    the policy stayed unfitted ('' when none)."""
    offers = offers.reset_index(drop=True)
    n = len(offers)
    cands, decisions, unfitted = cross_fitted_gate(offers, features, ccfg, k, seed)
    if SHIPPED not in decisions:  # no fold could fit it: it decides no coupon everywhere
        none = (np.full(n, "").astype(str), np.zeros(n))
        decisions[SHIPPED] = none
        cands.append(Candidate(SHIPPED, "model", 2, units=np.zeros(n)))
    fold = member_folds(offers["member_id"], k, seed)
    offered = campaign_arms(offers)
    X = _no_empty_columns(offers[features].astype(float)).to_numpy(float)
    arm = offers["arm"].to_numpy(str)
    y = offers["net_margin"].to_numpy(float)
    tl_a, tl_s = np.full(n, "", dtype=object), np.zeros(n)
    for f in range(k):
        te, tr = fold == f, fold != f
        a, sc = _t_learner(
            X[tr], arm[tr], y[tr], X[te], [offered[i] for i in np.flatnonzero(te)], seed
        )
        tl_a[te], tl_s[te] = a, sc
    decisions["t_learner"] = (tl_a.astype(str), tl_s)
    rng = np.random.default_rng(seed)
    choice = [sorted(arms | {""})[rng.integers(len(arms) + 1)] for arms in offered]
    decisions["random"] = (np.array(choice, dtype=str), rng.random(n))
    return cands, decisions, "; ".join(unfitted)


def _t_learner(
    X: np.ndarray, arm: np.ndarray, y: np.ndarray, X_new: np.ndarray,
    offered: list[frozenset[str]], seed: int,
) -> Decision:  # fmt: skip
    """One regressor of net margin per arm ('' = control) fitted on (X, arm, y); per new
    row, the offered arm with the largest predicted margin over control if positive."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    pred: dict[str, np.ndarray] = {}
    for a in np.unique(arm):
        m = arm == a
        model = HistGradientBoostingRegressor(max_iter=100, random_state=seed)
        pred[str(a)] = model.fit(X[m], y[m]).predict(X_new)
    base = pred.get("", np.zeros(len(X_new)))
    assigned, score = [], []
    for i, arms in enumerate(offered):
        gains = {a: pred[a][i] - base[i] for a in arms if a in pred}
        best = max(gains, key=lambda a: gains[a]) if gains else ""
        gain = gains.get(best, 0.0)
        assigned.append(best if gain > 0 else "")
        score.append(float(gain))
    return np.array(assigned, dtype=str), np.array(score)


def cross_fitted_section(ctx: Any, fut: pd.DataFrame) -> dict[str, Any]:
    """The coupons section of a one-off randomized campaign: no offer before the as-of
    date, so every policy is valued on out-of-fold decisions (:func:`cross_fitted`)."""
    ccfg = coupon_config(ctx.settings.coupon, ctx.cfg)
    fut = fut.reset_index(drop=True)
    folds = ctx.settings.gate.cross_fit_folds
    cands, decisions, unfitted = cross_fitted(fut, repo.COUPON_FEATURES, ccfg, folds,
                                              ctx.cfg.seed)  # fmt: skip
    selection = select(cands, z=ctx.settings.gate.z)
    planted = _planted_effects(ctx.truth_dir, fut, _campaign_coupon(fut))
    scores = score(decisions, fut, planted)
    treated = fut["arm"].to_numpy(str) != ""
    y = fut["net_margin"].to_numpy(float)
    curves = {k: qini_curve(treated, y, decisions[k][1]) for k in (SHIPPED, "t_learner")}
    ctx.notes["coupons"] = (
        f"no offer before the as-of date: every policy is fitted on {folds - 1} of "
        f"{folds} folds of the horizon's members and decides for the held-out fold "
        "(cross-fitting), the shipped coupon policy refitted that way"
        + (f"; unfitted on {unfitted}" if unfitted else "")
    )
    return {
        "shipped": scores.pop(SHIPPED),
        "baselines": scores,
        "shipped_name": SHIPPED,
        "gate": gate_record(selection, SHIPPED),
        "outside_gate": ["random", "t_learner"],
        "offers": int(len(fut)),
        "campaigns": sorted(set(fut["campaign_id"].astype(str))),
        "cross_fit_folds": folds,
        "qini_curves": {
            ("shipped" if k == SHIPPED else k): [v[0].tolist(), v[1].tolist()]
            for k, v in curves.items()
        },  # fmt: skip
    }


def _campaign_coupon(offers: pd.DataFrame) -> np.ndarray:
    """(n,) the coupon each offer's campaign randomized ('' for a campaign without one)."""
    treated = offers[offers["arm"] != ""]
    offered = treated.groupby("campaign_id")["arm"].agg(lambda s: s.mode()[0])
    return offers["campaign_id"].map(offered).fillna("").to_numpy(str)


def _planted_effects(
    truth_dir: Path | None, fut: pd.DataFrame, camp: np.ndarray
) -> np.ndarray | None:
    """Per offer row, the planted expected incremental margin of giving that campaign's
    coupon (``truth/coupon_effects.parquet`` of a synthetic shop); None without truth."""
    path = truth_dir / "coupon_effects.parquet" if truth_dir else None
    if path is None or not path.exists():
        return None
    fx = pd.read_parquet(path, columns=["member_id", "coupon_id", "expected_incremental_margin"])
    effect = fx.set_index(["member_id", "coupon_id"])["expected_incremental_margin"]
    keys = pd.MultiIndex.from_arrays([fut["member_id"].astype(str), camp])
    return effect.reindex(keys).fillna(0.0).to_numpy(float)


def _propensity_model(hist: pd.DataFrame) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    treated = hist[hist["arm"] != ""]
    if treated.empty or treated["redeemed"].nunique() < 2:
        return None
    X = _no_empty_columns(treated[repo.COUPON_FEATURES].astype(float))
    return HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(
        X, treated["redeemed"].astype(int)
    )


def _no_empty_columns(X: pd.DataFrame) -> pd.DataFrame:
    """A feature nobody has (e.g. open rate in a shop without messages) becomes 0."""
    return X.fillna({c: 0.0 for c in X.columns if X[c].isna().all()})


def _propensity_scores(hist: pd.DataFrame, fut: pd.DataFrame) -> np.ndarray | None:
    model = _propensity_model(hist)
    if model is None:
        return None
    return model.predict_proba(fut[repo.COUPON_FEATURES].astype(float))[:, 1]


def propensity_only(hist: pd.DataFrame, fut: pd.DataFrame) -> dict[str, Any]:
    """Redemption-propensity ROC AUC on offers after the as-of date (targeted data)."""
    from sklearn.metrics import roc_auc_score

    model = _propensity_model(hist)
    test = fut[fut["arm"] != ""]
    if model is None or test.empty or test["redeemed"].nunique() < 2:
        return {
            "redemption_auc": None,
            "offers_train": int(len(hist)),
            "offers_test": int(len(test)),
        }
    p = model.predict_proba(test[repo.COUPON_FEATURES].astype(float))[:, 1]
    return {
        "redemption_auc": float(roc_auc_score(test["redeemed"].astype(int), p)),
        "offers_train": int(len(hist)),
        "offers_test": int(len(test)),
        "redemption_rate_test": float(test["redeemed"].mean()),
    }
