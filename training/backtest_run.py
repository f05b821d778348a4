"""Run every backtest section for one dataset and as-of date, and report it.

The shipped models are the newest registered candidates (the ``challenger`` alias): the
backtest measures the model `memberwise run` trained, whichever won the promotion gate.
Peers are fitted here on the same visible history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import repo
from features.settings import MemberwiseSettings
from models.bgnbd import BetaGeoModel, rfm_summary
from models.registry import CHALLENGER, load_model
from models.send_time import GlobalSendTimeModel
from training import backtest
from training.config import TrainConfig, send_time_config
from training.coupon import campaign_decisions, policy_scores
from training.metrics import calibration_table, qini_curve

Tables = dict[str, pd.DataFrame]


@dataclass
class Context:
    """Everything a section needs, explicitly.

    ``visible``: tables as of the as-of date (rows after it hidden); ``future``: the rows
    with their time in [start, end) — the horizon; ``full_lines``: order lines up to
    ``end``; ``tags``: the as-of snapshot; ``engagements``: engagement moments (member_id,
    channel, ts) before ``start``; ``engagements_after``: the same within the horizon.
    """

    dataset: str
    as_of: date
    horizon_days: int
    cfg: TrainConfig
    settings: MemberwiseSettings
    visible: Tables
    future: Tables
    full_lines: pd.DataFrame
    tags: pd.DataFrame
    engagements: pd.DataFrame
    engagements_after: pd.DataFrame
    timezones: dict[str, str]
    coupon_history: pd.DataFrame  # training frame of past offers (see pipelines.run)
    coupon_future: pd.DataFrame  # the same for offers within the horizon
    start: pd.Timestamp
    end: pd.Timestamp
    truth_dir: Path | None
    out_dir: Path
    progress: Any = print
    notes: dict[str, str] = field(default_factory=dict)


def load_candidate(settings: MemberwiseSettings, name: str, alias: str = CHALLENGER) -> Any:
    """The fast object behind ``models:/memberwise-NAME@alias`` (see models.registry)."""
    return load_model(name, alias)


# ---------------------------------------------------------------- churn
def churn(ctx: Context) -> dict[str, Any] | None:
    tags = ctx.tags[ctx.tags["frequency"] > 0].reset_index(drop=True)
    if tags.empty:
        ctx.notes["churn"] = "no member with a purchase before the as-of date"
        return None
    lines = ctx.future.get("order_lines", pd.DataFrame(columns=["member_id", "quantity"]))
    buyers = set(lines.loc[lines["quantity"] > 0, "member_id"].astype(str))
    y = np.array([0 if m in buyers else 1 for m in tags["member_id"]], dtype=int)
    if len(np.unique(y)) < 2:
        ctx.notes["churn"] = "every member is in the same class after the as-of date"
        return None
    model = load_candidate(ctx.settings, "churn")
    p_ship = model.predict_proba(tags[repo.CHURN_FEATURES].astype(float))[:, 1]
    vis = ctx.visible["order_lines"]
    pos = vis[vis["quantity"] > 0]
    summ = rfm_summary(pos["member_id"].astype(str), pos["ts"], ctx.start, unit="D")
    summ = summ.set_index("member_id").reindex(tags["member_id"])
    bg = BetaGeoModel().fit(summ["frequency"], summ["recency"], summ["T"])
    p_bg = bg.predict_no_purchase_probability(
        ctx.horizon_days, summ["frequency"], summ["recency"], summ["T"]
    )
    out = backtest.churn_section(tags, p_ship, {"bg_nbd": np.asarray(p_bg)}, y)
    out["bg_nbd_params"] = bg.to_dict()
    out["calibration"] = {
        "shipped": calibration_table(y, p_ship).to_dict(orient="list"),
        "bg_nbd": calibration_table(y, np.asarray(p_bg)).to_dict(orient="list"),
    }
    return out


# ---------------------------------------------------------------- send time
def send_time(ctx: Context) -> dict[str, Any] | None:
    after = ctx.engagements_after
    if after.empty or ctx.engagements.empty:
        ctx.notes["send_time"] = "no engagement on one side of the as-of date"
        return None
    first = backtest.first_engagements(after, ctx.timezones)
    members = first["member_id"].astype(str).tolist()
    seg = dict(zip(ctx.tags["member_id"], ctx.tags["rfm_segment"], strict=False))
    shipped = load_candidate(ctx.settings, "send_time")
    rec = np.array([shipped.best(m, segment=seg.get(m)).hour_of_week for m in members])
    glob = GlobalSendTimeModel(send_time_config(ctx.settings.send_time)).fit(
        ctx.engagements["member_id"].to_numpy(str), ctx.engagements["channel"].to_numpy(str),
        ctx.engagements["ts"].to_numpy("datetime64[us]"), timezones=ctx.timezones,
    )  # fmt: skip
    rec_global = np.array([glob.best(m).hour_of_week for m in members])
    modes = backtest.member_mode_hours(ctx.engagements, ctx.timezones, int(rec_global[0]))
    rec_mode = np.array([modes.get(m, int(g)) for m, g in zip(members, rec_global, strict=True)])
    # the same baseline held to the hours the shipped model may choose (no quiet hours)
    allowed = ~shipped.config.quiet_mask()
    modes_ok = backtest.member_mode_hours(ctx.engagements, ctx.timezones, 0, allowed)
    rec_mode_ok = np.array(
        [modes_ok.get(m, int(g)) for m, g in zip(members, rec_global, strict=True)]
    )
    actual = first["how"].to_numpy()
    out: dict[str, Any] = {
        "shipped": backtest.send_time_scores(rec, actual),
        "baselines": {
            "global_best_hour": backtest.send_time_scores(rec_global, actual),
            "member_mode_hour": backtest.send_time_scores(rec_mode, actual),
            "member_mode_hour_allowed": backtest.send_time_scores(rec_mode_ok, actual),
        },
        "members": len(members),
        # share of first engagements within 1 h of an hour the shipped model may choose:
        # the best hit rate any model honouring its quiet hours can reach
        "reachable_1h": backtest.reachable_share(actual, allowed),
    }
    truth = ctx.truth_dir / "members.parquet" if ctx.truth_dir else None
    if truth is not None and truth.exists():
        t = pd.read_parquet(truth, columns=["member_id", "peak_how_local"])
        known = t[t["member_id"].isin(set(ctx.engagements["member_id"]))]
        planted = known["peak_how_local"].to_numpy(int)
        ids = known["member_id"].astype(str).tolist()
        rec_all = np.array([shipped.best(m, segment=seg.get(m)).hour_of_week for m in ids])
        rec_mode_all = np.array([modes.get(m, -10) for m in ids])
        rec_mode_ok_all = np.array([modes_ok.get(m, int(rec_global[0])) for m in ids])
        out["planted_peak_recovery"] = {
            "shipped": backtest.send_time_scores(rec_all, planted)["hit_rate_1h"],
            "member_mode_hour": backtest.send_time_scores(rec_mode_all, planted)["hit_rate_1h"],
            "member_mode_hour_allowed": backtest.send_time_scores(rec_mode_ok_all, planted)[
                "hit_rate_1h"
            ],
            "reachable": backtest.reachable_share(planted, allowed),
            "members": len(ids),
        }
    return out


# ---------------------------------------------------------------- coupons
def coupons(ctx: Context) -> dict[str, Any] | None:
    fut, hist = ctx.coupon_future, ctx.coupon_history
    randomized = len(fut) and (fut["arm"] == "").any() and (fut["arm"] != "").any()
    if not randomized:
        if len(fut) or len(hist):
            ctx.notes["coupons"] = (
                "offers in this dataset were targeted, not randomized: there is no control "
                "group, so the incremental effect of a coupon (uplift) cannot be estimated "
                "or validated without strong assumptions; only redemption propensity is "
                "reported"
            )
            ctx.notes["coupon_propensity"] = json.dumps(_propensity_only(hist, fut))
        else:
            ctx.notes["coupons"] = "no coupon offers in this dataset"
        return None
    feats = repo.COUPON_FEATURES
    arm = fut["arm"].to_numpy(str)
    y = fut["net_margin"].to_numpy(float)
    # each campaign offered one coupon (or held members out): a policy decides, per offer,
    # whether to give that campaign's coupon, so every policy is valued on arms that were
    # randomized in the data
    policy = load_candidate(ctx.settings, "coupon")
    assigned, score, camp = campaign_decisions(policy, fut, feats)
    cid = fut["campaign_id"].to_numpy(str)
    redeem = _propensity_scores(hist, fut)
    budget = int((assigned != "").sum())
    n = len(arm)
    policies: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "everyone": (camp.copy(), np.ones(n)),
        "none": (np.full(n, "", dtype=object).astype(str), np.zeros(n)),
    }
    if redeem is not None:
        top = np.argsort(-redeem, kind="stable")[:budget]
        prop = np.full(n, "", dtype=object)
        prop[top] = camp[top]
        policies["propensity"] = (prop.astype(str), redeem)
    planted = _planted_effects(ctx.truth_dir, fut, camp)

    def scores(a: np.ndarray, s: np.ndarray | None) -> dict[str, float]:
        out = policy_scores(arm, y, a, s, cid)
        if planted is not None:  # the generator's expected effect of the offers made
            out["planted_margin"] = float(np.mean(np.where(a != "", planted, 0.0)))
        return out

    shipped = scores(assigned, score)
    baselines = {k: scores(a, s) for k, (a, s) in policies.items()}
    # random targeting at the same budget: the mean of many draws, not one lucky one
    rand = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        pick = np.full(n, "", dtype=object)
        idx = rng.choice(n, size=budget, replace=False)
        pick[idx] = camp[idx]
        rand.append(scores(pick.astype(str), rng.random(n)))
    baselines["random"] = {k: float(np.mean([r[k] for r in rand])) for k in rand[0]}
    treated = arm != ""
    curves = {"shipped": qini_curve(treated, y, score)}
    if redeem is not None:
        curves["propensity"] = qini_curve(treated, y, redeem)
    return {
        "shipped": shipped,
        "baselines": baselines,
        "offers": int(n),
        "campaigns": sorted(set(fut["campaign_id"].astype(str))),
        "qini_curves": {k: [v[0].tolist(), v[1].tolist()] for k, v in curves.items()},
    }


def _planted_effects(truth_dir: Path | None, fut: pd.DataFrame, camp: np.ndarray):
    """Per offer row, the planted expected incremental margin of giving that campaign's
    coupon (``truth/coupon_effects.parquet`` of a synthetic shop); None without truth."""
    path = truth_dir / "coupon_effects.parquet" if truth_dir else None
    if path is None or not path.exists():
        return None
    fx = pd.read_parquet(path, columns=["member_id", "coupon_id", "expected_incremental_margin"])
    effect = fx.set_index(["member_id", "coupon_id"])["expected_incremental_margin"]
    keys = pd.MultiIndex.from_arrays([fut["member_id"].astype(str), camp])
    return effect.reindex(keys).fillna(0.0).to_numpy(float)


def _propensity_model(hist: pd.DataFrame):
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


def _propensity_only(hist: pd.DataFrame, fut: pd.DataFrame) -> dict[str, Any]:
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
    return {"redemption_auc": float(roc_auc_score(test["redeemed"].astype(int), p)),
            "offers_train": int(len(hist)), "offers_test": int(len(test)),
            "redemption_rate_test": float(test["redeemed"].mean())}  # fmt: skip


# ---------------------------------------------------------------- all
def run_all(ctx: Context) -> dict[str, Any]:
    from training.products_backtest import ProductsBacktestConfig, products_section

    result: dict[str, Any] = {
        "dataset": ctx.dataset,
        "as_of": ctx.as_of.isoformat(),
        "horizon_days": ctx.horizon_days,
        "rows": {
            "visible": {k: int(len(v)) for k, v in ctx.visible.items()},
            "horizon": {k: int(len(v)) for k, v in ctx.future.items()},
        },
    }
    ctx.progress("backtest: products (shipped vs popularity, buy-again, item cosine, ALS, BPR)")
    config = ProductsBacktestConfig(k=ctx.cfg.top_k, seed=ctx.cfg.seed,
                                    products=ctx.settings.products)  # fmt: skip
    result["products"] = products_section(
        ctx.full_lines, ctx.start, ctx.horizon_days, config, progress=ctx.progress
    )
    ctx.progress("backtest: churn (shipped vs BG/NBD)")
    result["churn"] = churn(ctx)
    ctx.progress("backtest: send time (shipped vs global best hour, member's own mode)")
    result["send_time"] = send_time(ctx)
    ctx.progress("backtest: coupons (shipped vs everyone, none, random, propensity)")
    result["coupons"] = coupons(ctx)
    if "coupon_propensity" in ctx.notes:
        result["coupon_propensity"] = json.loads(ctx.notes.pop("coupon_propensity"))
    result["notes"] = ctx.notes
    result["wins"] = wins(result)
    return result


PRIMARY = {
    "products": ("ndcg@10", True),
    "churn": ("roc_auc", True),
    "send_time": ("hit_rate_1h", True),
    "coupons": ("incremental_margin", True),
}


def wins(result: dict[str, Any]) -> dict[str, Any]:
    """For each section: does shipped beat every baseline on the primary metric?"""
    out: dict[str, Any] = {}
    for section, (metric, higher) in PRIMARY.items():
        sec = result.get(section)
        if not sec:
            out[section] = None
            continue
        s = sec["shipped"].get(metric)
        others = {k: v.get(metric) for k, v in sec["baselines"].items()}
        beats = {k: (s > v if higher else s < v) for k, v in others.items() if v is not None}
        out[section] = {"metric": metric, "beats_all": all(beats.values()), "beats": beats}
    if result.get("churn"):
        out["churn"]["brier_below_bg_nbd"] = (
            result["churn"]["shipped"]["brier"] < result["churn"]["baselines"]["bg_nbd"]["brier"]
        )
    return out


# ---------------------------------------------------------------- reporting
def _table(sec: dict[str, Any]) -> str:
    metrics = list(sec["shipped"])
    rows = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, m in [("**shipped**", sec["shipped"]), *sec["baselines"].items()]:
        cells = [
            f"{m.get(k):.4f}" if isinstance(m.get(k), float) else str(m.get(k)) for k in metrics
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Backtest: {result['dataset']} as of {result['as_of']}, "
             f"horizon {result['horizon_days']} days", ""]  # fmt: skip
    for section in ("products", "churn", "send_time", "coupons"):
        lines.append(f"## {section.replace('_', ' ')}")
        sec = result.get(section)
        if sec:
            lines += [_table(sec), ""]
            w = result["wins"].get(section)
            if w:
                verdict = (
                    "beats every baseline" if w["beats_all"] else "does NOT beat every baseline"
                )
                lines.append(f"Shipped {verdict} on {w['metric']}.")
        else:
            lines.append(f"Not computed: {result['notes'].get(section, 'no data')}")
        if section == "send_time" and sec and "planted_peak_recovery" in sec:
            r = sec["planted_peak_recovery"]
            lines.append(f"Planted peak hour recovered (±1 h) for {r['shipped']:.1%} of "
                         f"{r['members']} members (member's own mode: {r['member_mode_hour']:.1%}; "
                         f"within allowed hours: {r['member_mode_hour_allowed']:.1%}; "
                         f"reachable outside quiet hours: {r['reachable']:.1%}).")  # fmt: skip
        if section == "send_time" and sec and "reachable_1h" in sec:
            lines.append(f"First engagements within 1 h of an allowed (non-quiet) hour: "
                         f"{sec['reachable_1h']:.1%} (the ceiling of hit_rate_1h for any model "
                         "honouring the quiet hours; member_mode_hour ignores them).")  # fmt: skip
        if section == "coupons" and result.get("coupon_propensity"):
            cp = result["coupon_propensity"]
            lines.append(f"Redemption-propensity ROC AUC: {cp.get('redemption_auc')} "
                         f"({cp.get('offers_test')} offers after the as-of date).")  # fmt: skip
        lines.append("")
    rows = result["rows"]
    lines.append(f"Rows visible: {rows['visible']}; rows in the horizon: {rows['horizon']}.")
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    if result.get("products"):
        sec = result["products"]
        names = ["shipped", *sec["baselines"]]
        vals = [sec["shipped"]["ndcg@10"]] + [v["ndcg@10"] for v in sec["baselines"].values()]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(names, vals, color=["C2"] + ["C7"] * (len(names) - 1))
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"Products, {result['dataset']} as of {result['as_of']}")
        fig.tight_layout()
        paths.append(out_dir / "products_ndcg.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if result.get("churn"):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, cal in result["churn"]["calibration"].items():
            ax.plot(cal["mean_predicted"], cal["observed_rate"], "o-", label=name)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("predicted P(no purchase in horizon)")
        ax.set_ylabel("observed rate")
        ax.set_title("Churn calibration")
        ax.legend()
        fig.tight_layout()
        paths.append(out_dir / "churn_calibration.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if result.get("coupons"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, (x, yv) in result["coupons"]["qini_curves"].items():
            ax.plot(x, yv, label=name)
        if result["coupons"]["qini_curves"]:
            x, yv = next(iter(result["coupons"]["qini_curves"].values()))
            ax.plot([0, 1], [0, yv[-1]], "k--", lw=0.8, label="random")
        ax.set_xlabel("share targeted")
        ax.set_ylabel("incremental net margin")
        ax.set_title("Qini curves")
        ax.legend()
        fig.tight_layout()
        paths.append(out_dir / "coupons_qini.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def log_to_mlflow(result: dict[str, Any], out_dir: Path, files: list[Path]) -> str:
    """One MLflow run with every figure as a metric and the reports as artifacts."""
    import mlflow

    flat: dict[str, float] = {}
    for section in PRIMARY:
        sec = result.get(section)
        if not sec:
            continue
        for name, m in [("shipped", sec["shipped"]), *sec["baselines"].items()]:
            for k, v in m.items():
                if isinstance(v, (int, float)) and v == v:
                    flat[f"{section}.{name}.{k.replace('@', '_at_')}"] = float(v)
    with mlflow.start_run(run_name=f"backtest-{result['dataset']}-{result['as_of']}") as run:
        mlflow.set_tags({"kind": "backtest", "dataset": result["dataset"],
                         "as_of": result["as_of"]})  # fmt: skip
        mlflow.log_params({"horizon_days": result["horizon_days"], "dataset": result["dataset"]})
        mlflow.log_metrics(flat)
        for f in files:
            mlflow.log_artifact(str(f))
    return run.info.run_id
