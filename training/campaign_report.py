"""Did the campaign work? Treated against holdout, and what other policies would have done.

:func:`outcomes` joins a data drop's orders to a plan's decisions: for every member of the
send list, what happened in the outcome window (``window_days`` after the member's send
time): ``converted`` (any order), ``revenue`` (paid, after discounts), ``margin`` (product
margin minus discounts) and ``cost`` (discounts of the campaign's coupon).

:func:`estimate` measures, from the randomisation the plan logged:

- ``offers``: per offer, among the members the policy meant it for, offered against held
  out (a difference in means; within that group the propensities are constant, so this is
  the inverse-propensity estimate), per metric with its standard error and confidence
  interval, and the return on spend (incremental margin over cost);
- ``segments``: treated against holdout per segment, for every member the policy meant
  something for;
- ``policies``: the off-policy value (mean outcome per member) of ``plan`` (the policy's
  choices), ``nobody`` (no offer), ``everyone:<offer>`` and ``champion`` (the decision
  core's coupon, unconstrained by the budget), by inverse-propensity weighting (IPW) and
  doubly robust (DR: cell means of each action within the intended action, corrected by
  the weighted residual), each with a standard error; ``identified`` False (values null)
  when some member could never have received the policy's action.

When the shop is synthetic and answered the plan (``truth/campaign_<NAME>.parquet``), each
offer also carries its ``planted`` lift in conversion and whether the interval covers it.

:func:`write_report` writes ``report.json`` and ``report.png`` next to the plan and logs
both, with the lifts as metrics, to MLflow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.campaign_store import load_plan, plan_dir
from features.settings import MemberwiseSettings

METRICS = ("converted", "revenue", "margin", "cost")
NONE = "none"


def outcomes(shop: Path, sends: pd.DataFrame, default_margin_rate: float = 0.3) -> pd.DataFrame:
    """``sends`` with the outcome columns :data:`METRICS` added (0 without an order)."""
    shop = Path(shop)
    lines = pd.read_parquet(shop / "order_lines.parquet")
    lines = lines.loc[lines["member_id"].isin(set(sends["member_id"]))]
    if (shop / "products.parquet").exists():
        prods = pd.read_parquet(shop / "products.parquet")
        if "margin_rate" in prods:
            rate = prods.set_index("product_id")["margin_rate"]
            lines = lines.assign(margin_rate=lines["product_id"].map(rate))
    if "margin_rate" not in lines:
        lines = lines.assign(margin_rate=np.nan)
    disc = lines["discount"].fillna(0.0) if "discount" in lines else 0.0
    gross = lines["quantity"] * lines["unit_price"]
    lines = lines.assign(
        revenue=gross - disc,
        margin=gross * lines["margin_rate"].fillna(default_margin_rate) - disc,
        disc=disc,
    )
    s = sends[["member_id", "send_at_utc", "window_days", "coupon_id"]].copy()
    s["send_at_utc"] = pd.to_datetime(s["send_at_utc"])
    j = lines.merge(s, on="member_id", suffixes=("", "_sent"))
    ts = pd.to_datetime(j["ts"])
    inside = (ts >= j["send_at_utc"]) & (
        ts < j["send_at_utc"] + pd.to_timedelta(j["window_days"], unit="D")
    )
    j = j.loc[inside]
    j = j.assign(cost=j["disc"].where(j["coupon_id"].eq(j["coupon_id_sent"]), 0.0))
    per = j.groupby("member_id").agg(
        orders=("order_id", "nunique"), revenue=("revenue", "sum"), margin=("margin", "sum"),
        cost=("cost", "sum"),
    )  # fmt: skip
    out = sends.merge(per, left_on="member_id", right_index=True, how="left")
    for c in ("orders", "revenue", "margin", "cost"):
        out[c] = out[c].fillna(0.0)
    out["converted"] = (out["orders"] > 0).astype(float)
    return out


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _diff(
    y1: np.ndarray, y0: np.ndarray, z: float, binary: bool = False
) -> dict[str, float | None]:
    """Difference in means with its (unpooled) standard error and a normal interval; for a
    0/1 outcome (``binary``) the Agresti-Caffo interval, which keeps its coverage in small
    groups."""
    if len(y1) < 2 or len(y0) < 2:
        return {"treated": None, "control": None, "lift": None, "se": None, "low": None,
                "high": None}  # fmt: skip
    lift = float(y1.mean() - y0.mean())
    se = math.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
    centre = lift
    if binary:  # Agresti-Caffo: one success and one failure added to each group
        a1, a0 = (y1.sum() + 1) / (len(y1) + 2), (y0.sum() + 1) / (len(y0) + 2)
        centre = float(a1 - a0)
        se = math.sqrt(a1 * (1 - a1) / (len(y1) + 2) + a0 * (1 - a0) / (len(y0) + 2))
    return {"treated": float(y1.mean()), "control": float(y0.mean()), "lift": lift, "se": se,
            "low": centre - z * se, "high": centre + z * se}  # fmt: skip


def _lifts(frame: pd.DataFrame, treated: pd.Series, control: pd.Series, z: float) -> dict:
    out: dict[str, Any] = {"n_treated": int(treated.sum()), "n_control": int(control.sum())}
    for m in METRICS:
        y = frame[m].to_numpy(float)
        out[m] = _diff(y[treated.to_numpy()], y[control.to_numpy()], z, binary=m == "converted")
    inc_margin, cost = out["margin"]["lift"], out["cost"]["treated"]
    out["return_on_spend"] = (
        inc_margin / cost if inc_margin is not None and cost and cost > 0 else None
    )
    return out


def _propensity(frame: pd.DataFrame, action: np.ndarray) -> np.ndarray:
    p = np.zeros(len(frame))
    for a in pd.unique(action):
        col = f"p__{a}"
        hit = action == a
        p[hit] = frame[col].to_numpy(float)[hit] if col in frame else 0.0
    return p


def policy_value(frame: pd.DataFrame, policy: np.ndarray, metric: str, z: float) -> dict:
    """Off-policy value per member of the policy giving each row ``policy[i]``, by IPW and
    DR, from the logged ``action`` and propensities ``p__<action>``."""
    y = frame[metric].to_numpy(float)
    a = frame["action"].to_numpy(object)
    p = _propensity(frame, policy)
    if (p <= 0).any():
        return {"identified": False, "ipw": None, "ipw_se": None, "dr": None, "dr_se": None,
                "reason": f"{int((p <= 0).sum())} member(s) could never receive this "
                "policy's action (raise exploration_share to measure it)"}  # fmt: skip
    match = (a == policy).astype(float)
    ipw = match / p * y
    # outcome model: mean outcome of each action within each intended action
    cell = frame.assign(_y=y).groupby(["intended", "action"])["_y"].mean()
    overall = frame.assign(_y=y).groupby("action")["_y"].mean()
    keys = pd.MultiIndex.from_arrays([frame["intended"], pd.Series(policy, index=frame.index)])
    mu = cell.reindex(keys).to_numpy(float)
    fallback = pd.Series(policy).map(overall).fillna(float(y.mean())).to_numpy(float)
    mu = np.where(np.isfinite(mu), mu, fallback)
    dr = mu + match / p * (y - mu)
    n = len(y)
    return {"identified": True, "ipw": float(ipw.mean()), "ipw_se": float(ipw.std(ddof=1) / math.sqrt(n)),
            "dr": float(dr.mean()), "dr_se": float(dr.std(ddof=1) / math.sqrt(n)),
            "z": z}  # fmt: skip


def estimate(frame: pd.DataFrame, confidence: float = 0.95, planted: pd.DataFrame | None = None) -> dict[str, Any]:  # fmt: skip
    """The report's numbers from ``outcomes(...)``'s frame (see the module docstring).
    ``planted``: the synthetic truth (member_id, p0, p1) when known."""
    z = _z(confidence)
    holdout = frame["arm"].eq("holdout")
    intended = frame["intended"].astype(str)
    acts = [c[3:] for c in frame.columns if c.startswith("p__") and c != "p__none"]
    offers: dict[str, Any] = {}
    truth = planted.set_index("member_id") if planted is not None else None
    for o in acts:
        meant = intended.eq(o)
        r = _lifts(frame, meant & frame["action"].eq(o), meant & holdout, z)
        if truth is not None and meant.any():
            t = truth.reindex(frame.loc[meant, "member_id"])
            r["planted"] = float((t["p1"] - t["p0"]).mean())
            c = r["converted"]
            r["covered"] = c["low"] is not None and c["low"] <= r["planted"] <= c["high"]
        offers[o] = r
    meant_any = intended.ne(NONE)
    treated_any = meant_any & frame["action"].eq(intended) & ~holdout
    overall = _lifts(frame, treated_any, meant_any & holdout, z)
    segments = {
        str(g): _lifts(frame.loc[idx], treated_any.loc[idx], (meant_any & holdout).loc[idx], z)
        for g, idx in frame.groupby("segment").groups.items()
    }
    n = len(frame)
    policies: dict[str, Any] = {}
    candidates: dict[str, np.ndarray] = {
        "plan": intended.to_numpy(object),
        "nobody": np.full(n, NONE, dtype=object),
        "champion": frame["champion"].astype(str).to_numpy(object),
    }
    for o in acts:
        candidates[f"everyone:{o}"] = np.full(n, o, dtype=object)
    for name, pol in candidates.items():
        policies[name] = {m: policy_value(frame, pol, m, z) for m in ("converted", "margin")}
    return {"members": n, "confidence": confidence, "overall": overall, "offers": offers,
            "segments": segments, "policies": policies}  # fmt: skip


def figure(report: dict[str, Any]):  # -> matplotlib.figure.Figure
    """Conversion lift of each offer with its interval (and the planted lift, when known)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    names = [o for o, r in report["offers"].items() if r["converted"]["lift"] is not None]
    lifts = [report["offers"][o]["converted"]["lift"] for o in names]
    errs = [report["offers"][o]["converted"]["high"] - report["offers"][o]["converted"]["lift"]
            for o in names]  # fmt: skip
    ax.errorbar(lifts, range(len(names)), xerr=errs, fmt="o", capsize=4, label="measured")
    planted = [report["offers"][o].get("planted") for o in names]
    if any(p is not None for p in planted):
        ax.plot(planted, range(len(names)), "x", color="black", label="planted")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"conversion lift against holdout ({report['confidence']:.0%} interval)")
    ax.set_title(f"campaign {report.get('campaign', '')}")
    ax.legend(loc="best")
    return fig


def write_report(
    settings: MemberwiseSettings, name: str, shop: Path, log_mlflow: bool = True
) -> dict[str, Any]:
    """Measure the saved campaign ``name`` on the shop data at ``shop`` (the next drop),
    write ``report.json`` / ``report.png`` next to the plan, log them to MLflow. Raises
    LookupError for an unknown campaign."""
    spec, sends, info = load_plan(settings, name)
    frame = outcomes(shop, sends, settings.training.default_margin_rate)
    truth_path = Path(shop) / "truth" / f"campaign_{name}.parquet"
    planted = pd.read_parquet(truth_path) if truth_path.exists() else None
    report = {"campaign": name, "shop": str(shop), "budget": spec["budget"],
              "planned_cost": info.get("expected_cost"),
              **estimate(frame, settings.campaigns.confidence, planted)}  # fmt: skip
    d = plan_dir(settings, name)
    (d / "report.json").write_text(json.dumps(report, indent=2, default=_plain))
    figure(report).savefig(d / "report.png", dpi=100)
    if log_mlflow:
        _log(settings, report, [d / "report.json", d / "report.png"])
    return report


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _log(settings: MemberwiseSettings, report: dict[str, Any], files: list[Path]) -> None:
    import mlflow

    from training.registry import setup_tracking

    setup_tracking(settings.tracking_uri, settings.artifact_root)
    metrics = {}
    for o, r in report["offers"].items():
        for m in METRICS:
            if r[m]["lift"] is not None:
                metrics[f"lift.{o}.{m}"] = r[m]["lift"]
                metrics[f"lift_se.{o}.{m}"] = r[m]["se"]
    with mlflow.start_run(run_name=f"campaign-{report['campaign']}"):
        mlflow.set_tags({"kind": "campaign", "campaign": report["campaign"]})
        mlflow.log_metrics(metrics)
        for f in files:
            mlflow.log_artifact(str(f))
