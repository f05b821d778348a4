"""Train the coupon policy from randomized offers and value it against giving none."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from features.settings import CouponSettings
from models.coupon import CouponPolicy, NoCouponPolicy
from training.config import TrainConfig, coupon_config
from training.metrics import policy_weights, qini_coefficient
from training.result import TrainResult


def offer_outcomes(
    offers: pd.DataFrame,
    lines: pd.DataFrame,
    margin_rate: pd.Series,
    cfg: TrainConfig,
    cutoff: pd.Timestamp,
) -> pd.DataFrame:
    """Net margin of each offer's response window.

    ``offers``: member_id, campaign_id, offered_ts, coupon_id (null = control). ``lines``:
    order lines. ``margin_rate``: product_id -> margin rate. Offers whose window is not
    over by ``cutoff`` are dropped. Returns offers plus ``arm`` ('' = control),
    ``net_margin`` = sum(quantity * unit_price * margin_rate) - discount over the member's
    lines in [offered_ts, offered_ts + coupon_response_days) and ``cost`` = the discount
    part of it (what the coupons given cost the shop in that window).
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
    return offers.drop(columns="_row")


def train_coupon(
    frame: pd.DataFrame,
    features: list[str],
    cfg: TrainConfig,
    coupon: CouponSettings | None = None,
) -> TrainResult:
    """``frame``: one row per past offer with the member's features at the offer, ``arm``
    ('' = control) and ``net_margin``. Evaluated on held-out members by inverse-propensity
    policy value (randomized offers), as incremental margin per member over giving none.
    ``coupon``: the settings tree's ``coupon`` section (its defaults when None).
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
    if has_control and has_treated and len(frame) >= 50:
        split = GroupShuffleSplit(n_splits=1, test_size=cfg.test_share, random_state=cfg.seed)
        tr, te = next(split.split(frame, groups=frame["member_id"]))
        train, test = frame.iloc[tr], frame.iloc[te]
        policy = fit(train)
        if policy.fitted:
            arm = test["arm"].to_numpy(str)
            y = test["net_margin"].to_numpy(float)
            evaluation = {"arm": arm, "net_margin": y}
            assigned, score, _ = campaign_decisions(policy, test, features)
            camp = test["campaign_id"].to_numpy(str)
            metrics["shipped"] = policy_scores(arm, y, assigned, score, camp)
            none = np.full(len(test), "", dtype=object).astype(str)
            metrics["baseline"] = policy_scores(arm, y, none, np.zeros(len(test)), camp)
        else:
            notes.append(policy.reason_unfitted)
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
        baseline=NoCouponPolicy(),
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


def campaign_decisions(
    policy: CouponPolicy | NoCouponPolicy, frame: pd.DataFrame, features: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per offer row: (assigned arm or '', the policy's expected uplift of that campaign's
    coupon, the campaign's coupon).

    Each campaign randomized one coupon against a control group, so a policy is judged on
    the decision that campaign could take: give its coupon to this member or not.
    """
    treated = frame[frame["arm"] != ""]
    offered = treated.groupby("campaign_id")["arm"].agg(lambda s: s.mode()[0])
    camp = frame["campaign_id"].map(offered).fillna("").to_numpy(str)
    X = frame[features].to_numpy(float)
    up = policy.expected_uplift(X)
    col = {c: i for i, c in enumerate(getattr(policy, "coupons", []))}
    score = np.array([up[i, col[c]] if c in col else np.nan for i, c in enumerate(camp)])
    threshold = float(getattr(getattr(policy, "config", None), "min_incremental_margin", 0.0))
    assigned = np.where(np.nan_to_num(score, nan=-np.inf) > threshold, camp, "").astype(str)
    fill = float(np.nanmin(score)) if np.isfinite(score).any() else 0.0
    return assigned, np.nan_to_num(score, nan=fill), camp


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
    contrib = np.zeros(len(arm))
    for c in np.unique(campaign):
        m = campaign == c
        a = arm[m]
        if (a == "").all() or (a != "").all():
            continue  # no randomized contrast in this campaign
        y = outcome[m]
        if not np.isfinite(y).all():
            raise ValueError("outcome must be finite (no NaN)")
        # the policy's IPW term minus giving none's, per offer
        contrib[m] = (policy_weights(a, assigned[m]) - policy_weights(a, np.full(len(a), ""))) * y
    n = max(len(arm), 1)
    qini = float(qini_coefficient(arm != "", outcome, score)) if score is not None else 0.0
    return {
        "incremental_margin": float(contrib.sum() / n),
        "incremental_margin_se": float(contrib.std() / np.sqrt(n)) if len(arm) > 1 else 0.0,
        "qini": qini,
        "share_offered": float(np.mean(assigned != "")),
    }
