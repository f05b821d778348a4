"""Train the coupon policy from randomized offers and value it against giving none."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.settings import CouponSettings, GateSettings
from models.coupon import CouponConfig, CouponPolicy, FixedCouponPolicy, NoCouponPolicy
from training.config import TrainConfig, coupon_config
from training.gate import Candidate, best_rule, select
from training.metrics import policy_weights, qini_coefficient
from training.result import TrainResult


def offer_outcomes(
    offers: pd.DataFrame,
    lines: pd.DataFrame,
    margin_rate: pd.Series,
    cfg: TrainConfig,
    cutoff: pd.Timestamp,
    offer_cost: pd.Series | None = None,
) -> pd.DataFrame:
    """Net margin of each offer's response window.

    ``offers``: member_id, campaign_id, offered_ts, coupon_id (null = control). ``lines``:
    order lines. ``margin_rate``: product_id -> margin rate. Offers whose window is not
    over by ``cutoff`` are dropped. Returns offers plus ``arm`` ('' = control),
    ``net_margin`` = sum(quantity * unit_price * margin_rate) - discount over the member's
    lines in [offered_ts, offered_ts + coupon_response_days) and ``cost`` = the discount
    part of it (what the coupons given cost the shop in that window). ``offer_cost``:
    coupon_id -> fixed cost of making one offer (the coupons table's ``cost``, e.g. the price
    of sending an e-mail), taken off every treated offer's net margin and added to its cost.
    """
    window = pd.Timedelta(days=cfg.coupon_response_days)
    offers = offers[offers["offered_ts"] + window <= cutoff].copy()
    offers["arm"] = offers["coupon_id"].fillna("").astype(str)
    if offers.empty:
        offers["net_margin"] = pd.Series(dtype=float)
        offers["cost"] = pd.Series(dtype=float)
        return offers
    rate = lines["product_id"].map(margin_rate).fillna(cfg.default_margin_rate)
    disc = lines["discount"].fillna(0.0) if "discount" in lines else 0.0
    value = lines.assign(margin=lines["quantity"] * lines["unit_price"] * rate - disc, cost=disc)
    value = value[["member_id", "ts", "margin", "cost"]]
    offers = offers.reset_index(drop=True)
    offers["_row"] = np.arange(len(offers))
    j = offers[["_row", "member_id", "offered_ts"]].merge(value, on="member_id", how="inner")
    j = j[(j["ts"] >= j["offered_ts"]) & (j["ts"] < j["offered_ts"] + window)]
    net = j.groupby("_row")[["margin", "cost"]].sum()
    offers["net_margin"] = offers["_row"].map(net["margin"]).fillna(0.0)
    offers["cost"] = offers["_row"].map(net["cost"]).fillna(0.0)
    if offer_cost is not None and len(offer_cost):
        # a fixed cost of making the offer (sending a message): paid for every treated offer
        fixed = offers["arm"].map(offer_cost).fillna(0.0).where(offers["arm"] != "", 0.0)
        offers["net_margin"] -= fixed
        offers["cost"] += fixed
    return offers.drop(columns="_row")


def train_coupon(
    frame: pd.DataFrame,
    features: list[str],
    cfg: TrainConfig,
    coupon: CouponSettings | None = None,
    gate: GateSettings | None = None,
) -> TrainResult:
    """``frame``: one row per past offer with the member's features at the offer, ``arm``
    ('' = control) and ``net_margin``. The promotion gate values every policy by
    inverse propensity on the randomized offers, as incremental margin per offer over giving
    none, the personalised one on out-of-fold decisions (``gate.cross_fit_folds`` folds of
    members, :func:`cross_fitted_gate`, the same code the backtest of a one-off campaign
    uses); the shipped policy is then fitted on every offer. ``coupon`` and ``gate``: the
    settings tree's sections (their defaults when None).
    """
    ccfg = coupon_config(coupon or CouponSettings(), cfg)
    metrics: dict[str, dict[str, float]] = {}
    evaluation: dict[str, np.ndarray] = {}
    notes: list[str] = []

    def fit(rows: pd.DataFrame) -> CouponPolicy:
        cost = rows["cost"].to_numpy(float) if "cost" in rows else None
        return CouponPolicy(ccfg).fit(
            rows[features].to_numpy(float), rows["arm"].to_numpy(str),
            rows["net_margin"].to_numpy(float), feature_names=features, cost=cost,
            campaign=rows["campaign_id"].to_numpy(str),
        )  # fmt: skip

    has_control = bool(len(frame)) and (frame["arm"] == "").any()
    has_treated = bool(len(frame)) and (frame["arm"] != "").any()
    gate = gate or GateSettings()
    selection = None
    rule, rule_margin = "no_coupon", 0.0
    folds = gate.cross_fit_folds
    members = frame["member_id"].nunique() if len(frame) else 0
    if has_control and has_treated and len(frame) >= 50 and members >= folds:
        offers = frame.reset_index(drop=True)
        arm = offers["arm"].to_numpy(str)
        y = offers["net_margin"].to_numpy(float)
        camp = offers["campaign_id"].to_numpy(str)
        evaluation = {"arm": arm, "net_margin": y}
        cands, decisions, unfitted = cross_fitted_gate(offers, features, ccfg, folds, cfg.seed)
        notes.append(
            f"coupon gate valued on out-of-fold decisions: {folds} folds of members, each "
            "policy fitted on the others (cross-fitting)"
        )
        if unfitted:
            notes.append(f"personalised policy unfitted on {len(unfitted)} of {folds} folds "
                         f"(no coupon there): {unfitted[0].split(': ', 1)[1]}")  # fmt: skip
        if PERSONALISED in decisions:
            metrics["shipped"] = policy_scores(arm, y, *decisions[PERSONALISED], camp)
        selection = select(cands, z=gate.z)
        rule = best_rule(selection)
        rule_margin = selection.row(rule).estimate
        metrics["baseline"] = policy_scores(arm, y, decisions[rule][0], np.zeros(len(arm)), camp)
    elif has_control and has_treated:
        notes.append(
            f"too few randomized offers to value the coupon policies ({len(frame)} offers of "
            f"{members} members; needs 50 offers and {folds} members): no gate"
        )
    else:
        notes.append(
            "no randomized coupon history (needs offers with a control group): "
            "the policy recommends no coupon"
        )
    shipped = fit(frame) if has_control and has_treated else CouponPolicy(ccfg)
    if not shipped.fitted and has_control and has_treated and shipped.reason_unfitted not in notes:
        notes.append(shipped.reason_unfitted)
    return TrainResult(
        name="coupon",
        shipped=shipped,
        baseline=NoCouponPolicy()
        if rule == "no_coupon"
        else FixedCouponPolicy(rule.split(":", 1)[1], rule_margin, ccfg).fit(
            np.zeros((0, len(features))), np.zeros(0, str), np.zeros(0), features
        ),
        selection=selection,
        policies={"shipped": "personalised", "baseline": rule},
        metrics=metrics,
        primary="incremental_margin",
        params={
            "response_days": cfg.coupon_response_days,
            "offers": len(frame),
            **{k: v for k, v in vars(ccfg).items()},
        },  # fmt: skip
        notes=notes,
        input_example=None,
        evaluation=evaluation,
    )


Decision = tuple[np.ndarray, np.ndarray]  # (assigned coupon or '' per offer, score)
PERSONALISED = "personalised"  # the gate's name of the learnt coupon policy


def member_folds(members: pd.Series, k: int, seed: int = 0) -> np.ndarray:
    """(n,) fold 0..k-1 of each offer, every offer of a member in the same fold (a
    seeded random split of the distinct members)."""
    ids = pd.Index(members.astype(str).unique())
    if not 2 <= k <= len(ids):
        raise ValueError(f"cross-fitting needs 2 to {len(ids)} folds (one member each), not {k}")
    fold_of = np.random.default_rng(seed).permutation(len(ids)) % k
    return np.asarray(fold_of[ids.get_indexer(members.astype(str))])


def cross_fitted_personalised(
    offers: pd.DataFrame, features: list[str], ccfg: CouponConfig, folds: int, seed: int = 0
) -> tuple[Decision, list[str]]:
    """Out-of-fold decisions of the personalised coupon policy on randomized ``offers``
    (the coupon training frame: member_id, campaign_id, arm, net_margin, optional cost and
    ``features``): the offers are split into ``folds`` folds by member (:func:`member_folds`),
    and on each fold ``CouponPolicy(ccfg)``, fitted on the other folds exactly as
    :func:`train_coupon` fits the shipped one, decides for the held-out members. Every offer
    thus gets a decision from a policy that never saw it, and all offers are used for
    valuing. Returns the decision per offer (in ``offers`` order; '' = none, also where a
    fold's policy stayed unfitted) and one note per such fold.

    The promotion gate of ``memberwise run`` (:func:`train_coupon`) and the backtest of a
    one-off campaign (``training.backtest.coupons.cross_fitted``) both value the policy
    through this function."""
    offers = offers.reset_index(drop=True)
    n = len(offers)
    fold = member_folds(offers["member_id"], folds, seed)
    offered = campaign_arms(offers)
    X = offers[features].to_numpy(float)
    arm = offers["arm"].to_numpy(str)
    y = offers["net_margin"].to_numpy(float)
    cost = offers["cost"].to_numpy(float) if "cost" in offers else None
    camp = offers["campaign_id"].to_numpy(str)
    assigned, score = np.full(n, "", dtype=object), np.zeros(n)
    unfitted: list[str] = []
    for f in range(folds):
        te, tr = fold == f, fold != f
        policy = CouponPolicy(ccfg).fit(
            X[tr], arm[tr], y[tr], feature_names=features,
            cost=None if cost is None else cost[tr], campaign=camp[tr],
        )  # fmt: skip
        if not policy.fitted:
            unfitted.append(f"cross-fitting fold {f + 1} of {folds}: {policy.reason_unfitted}")
            continue
        held = [offered[i] for i in np.flatnonzero(te)]
        assigned[te], score[te] = personalised_decisions(policy, offers[te], features, held)
    return (assigned.astype(str), score), unfitted


def cross_fitted_gate(
    offers: pd.DataFrame, features: list[str], ccfg: CouponConfig, folds: int, seed: int = 0
) -> tuple[list[Candidate], dict[str, Decision], list[str]]:
    """The coupon gate's candidates on randomized ``offers`` with the personalised policy
    cross-fitted across members (:func:`cross_fitted_personalised`): no coupon, each coupon
    to everyone and "personalised" (left out when no fold could fit it), each scored offer by
    offer by its inverse-propensity contribution. Returns the candidates, each one's decision
    per offer and the notes on unfitted folds."""
    offers = offers.reset_index(drop=True)
    pers, unfitted = cross_fitted_personalised(offers, features, ccfg, folds, seed)
    return (*gate_candidates(offers, features, None, pers if len(unfitted) < folds else None),
            unfitted)  # fmt: skip


def gate_candidates(
    offers: pd.DataFrame,
    features: list[str],
    policy: CouponPolicy | None,
    personalised: Decision | None = None,
) -> tuple[list[Candidate], dict[str, Decision]]:
    """The coupon gate's candidates on randomized ``offers`` (the coupon training frame:
    arm, net_margin, campaign_id and ``features``), simplest first: no coupon, each coupon
    its campaigns randomized given to everyone there ("everyone:<coupon>"), and the fitted
    ``policy`` ("personalised"; left out when None), or instead its ``personalised``
    decisions already made (out-of-fold ones, :func:`cross_fitted_gate`). Each is scored
    offer by offer by its inverse-propensity contribution (:func:`policy_contributions`).
    Returns the candidates and each one's decision per offer. `memberwise run` reaches it
    through :func:`cross_fitted_gate`; the backtest calls it on the offers of the horizon
    with the registered policy."""
    arm = offers["arm"].to_numpy(str)
    y = offers["net_margin"].to_numpy(float)
    camp = offers["campaign_id"].to_numpy(str)
    offered = campaign_arms(offers)
    n = len(offers)
    decisions: dict[str, Decision] = {"no_coupon": (np.full(n, "").astype(str), np.zeros(n))}
    tiers = {"no_coupon": 0}
    for c in sorted({a for arms in offered for a in arms}):
        everyone = np.array([c if c in arms else "" for arms in offered]).astype(str)
        decisions[f"everyone:{c}"] = (everyone, np.ones(n))
        tiers[f"everyone:{c}"] = 1
    if policy is not None:
        personalised = personalised_decisions(policy, offers, features, offered)
    if personalised is not None:
        decisions[PERSONALISED] = personalised
        tiers[PERSONALISED] = 2
    cands = [
        Candidate(name, "model" if name == PERSONALISED else "baseline", tiers[name],
                  units=policy_contributions(arm, y, a, camp))
        for name, (a, _) in decisions.items()
    ]  # fmt: skip
    return cands, decisions


def campaign_arms(frame: pd.DataFrame) -> list[frozenset[str]]:
    """Per offer row: the coupons its campaign randomized (what a policy could give there)."""
    arms = frame[frame["arm"] != ""].groupby("campaign_id")["arm"].agg(frozenset)
    return [arms.get(c, frozenset()) for c in frame["campaign_id"].tolist()]


def personalised_decisions(
    policy: CouponPolicy, frame: pd.DataFrame, features: list[str], offered: list[frozenset[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per offer row: the coupon the policy gives among those its campaign randomized ('' =
    none: no such coupon's lower bound clears the threshold) and its expected uplift."""
    up, lower = policy.uplift_bounds(frame[features].to_numpy(float))
    thr = policy.config.min_incremental_margin
    col = {c: i for i, c in enumerate(policy.coupons)}
    assigned, score = [], []
    for i, arms in enumerate(offered):
        cols = [col[c] for c in arms if c in col]
        if not cols:
            assigned.append("")
            score.append(0.0)
            continue
        ok = [j for j in cols if lower[i, j] > thr]
        best = max(ok or cols, key=lambda j: up[i, j])
        assigned.append(policy.coupons[best] if ok else "")
        score.append(float(up[i, best]))
    return np.array(assigned, dtype=str), np.array(score)


def policy_contributions(
    arm: np.ndarray, outcome: np.ndarray, assigned: np.ndarray, campaign: np.ndarray
) -> np.ndarray:
    """(n,) each offer's inverse-propensity contribution to a policy's incremental margin
    over giving none, within its campaign (arm shares are the propensities): the mean is the
    policy's value, and the gate compares policies offer by offer on it."""
    contrib = np.zeros(len(arm))
    for c in np.unique(campaign):
        m = campaign == c
        a = arm[m]
        if (a == "").all() or (a != "").all():
            continue  # no randomized contrast in this campaign
        y = outcome[m]
        if not np.isfinite(y).all():
            raise ValueError("outcome must be finite (no NaN)")
        contrib[m] = (policy_weights(a, assigned[m]) - policy_weights(a, np.full(len(a), ""))) * y
    return contrib


def policy_scores(
    arm: np.ndarray,
    outcome: np.ndarray,
    assigned: np.ndarray,
    score: np.ndarray | None,
    campaign: np.ndarray | None = None,
) -> dict[str, float]:
    """Incremental margin per offer over giving none (with its standard error), the Qini
    coefficient of ``score`` and the share offered.

    The value of a policy is its inverse-propensity estimate on the randomized offers,
    computed within each campaign (whose arm shares are the propensities) and averaged
    over campaigns weighted by their offers: the mean over offers of
    ``[arm = assigned] y / share(arm) - [arm = control] y / share(control)``. The standard
    error is that mean's (shares taken as known); it is large, since a window's margin
    varies far more than a coupon moves it.
    """
    campaign = np.zeros(len(arm), dtype=int) if campaign is None else np.asarray(campaign)
    contrib = policy_contributions(arm, outcome, assigned, campaign)
    n = max(len(arm), 1)
    qini = float(qini_coefficient(arm != "", outcome, score)) if score is not None else 0.0
    return {
        "incremental_margin": float(contrib.sum() / n),
        "incremental_margin_se": float(contrib.std() / np.sqrt(n)) if len(arm) > 1 else 0.0,
        "qini": qini,
        "share_offered": float(np.mean(assigned != "")),
    }
