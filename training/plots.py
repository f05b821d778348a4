"""The figures each model's MLflow run logs beside its metrics (``plots/*.png``).

Every figure is a plain ``matplotlib.figure.Figure`` (no pyplot, so no global backend and
no window: rendered with Agg when MLflow saves it). :func:`figures` picks them for one
``TrainResult``:

- every model: its metrics, shipped model next to the baseline (``metrics.png``);
- churn: ROC curves and calibration (predicted vs observed churn) on held-out members;
- coupon: the observed margin uplift of each coupon over the control group on held-out
  offers (mean +- one standard error);
- send time: how the shipped model spreads members over the 168 hours of the week, with
  the baseline's one global hour marked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from training.result import TrainResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHIPPED, BASELINE = "#1f77b4", "#ff7f0e"
COUNTS = {"members_evaluated", "offers"}  # sizes, not scores: left out of the bars


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def metric_bars(result: TrainResult) -> Figure | None:
    """Horizontal bars of every metric of the shipped model and the baseline (None when
    the two were not compared)."""
    roles = [r for r in ("shipped", "baseline") if result.metrics.get(r)]
    names = sorted(
        {
            k
            for r in roles
            for k, v in result.metrics[r].items()
            if k not in COUNTS and v is not None and np.isfinite(v)
        }
    )
    if not names:
        return None
    fig = _figure(6.4, 1.2 + 0.45 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    height = 0.8 / len(roles)
    for i, (role, color) in enumerate(zip(roles, (SHIPPED, BASELINE), strict=False)):
        values = [result.metrics[role].get(n, np.nan) for n in names]
        ax.barh(y + i * height, values, height, label=role, color=color)
    ax.set_yticks(y + height * (len(roles) - 1) / 2, names)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_title(f"{result.name}: model vs baseline (promotion on {result.primary})")
    ax.legend(loc="best")
    return fig


def churn_curves(evaluation: dict[str, Any]) -> Figure | None:
    """ROC (left) and calibration (right) of both churn models on held-out members."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(evaluation.get("y_true", []), dtype=int)
    if len(np.unique(y)) < 2:
        return None
    fig = _figure(10.0, 4.2)
    roc, cal = fig.subplots(1, 2)
    for role, color in (("shipped", SHIPPED), ("baseline", BASELINE)):
        if role not in evaluation:
            continue
        p = np.nan_to_num(np.asarray(evaluation[role], dtype=float), nan=float(y.mean()))
        fpr, tpr, _ = roc_curve(y, p)
        roc.plot(fpr, tpr, color=color, label=f"{role} (AUC {roc_auc_score(y, p):.3f})")
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        cal.plot(predicted, observed, "o-", color=color, label=role)
    for ax in (roc, cal):
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.legend(loc="best")
    roc.set(title="ROC, held-out members", xlabel="false positive rate",
            ylabel="true positive rate")  # fmt: skip
    cal.set(title="calibration (deciles of predicted risk)", xlabel="predicted P(churn)",
            ylabel="observed churn rate")  # fmt: skip
    return fig


def coupon_uplift(evaluation: dict[str, Any]) -> Figure | None:
    """Observed mean net margin of each coupon minus the control group's, on held-out
    offers (randomized, so the difference is the coupon's uplift), +- one standard error."""
    arm = np.asarray(evaluation.get("arm", []), dtype=str)
    y = np.asarray(evaluation.get("net_margin", []), dtype=float)
    control = y[arm == ""]
    coupons = sorted(set(arm.tolist()) - {""})
    if len(control) < 2 or not coupons:
        return None
    uplift, se, counts = [], [], []
    for c in coupons:
        treated = y[arm == c]
        uplift.append(treated.mean() - control.mean())
        var = control.var(ddof=1) / len(control)
        se.append(np.sqrt(var + (treated.var(ddof=1) / len(treated) if len(treated) > 1 else 0)))
        counts.append(len(treated))
    fig = _figure(6.4, 1.4 + 0.45 * len(coupons))
    ax = fig.add_subplot()
    pos = np.arange(len(coupons))
    ax.barh(pos, uplift, xerr=se, color=SHIPPED, capsize=3)
    ax.set_yticks(pos, [f"{c} (n={n})" for c, n in zip(coupons, counts, strict=True)])
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set(title=f"coupon uplift over control (n={len(control)}), held-out offers",
           xlabel="net margin per offer minus control's")  # fmt: skip
    return fig


def send_time_profile(shipped: Any, baseline: Any) -> Figure | None:
    """Share of members the shipped model sends to at each local hour of week, with the
    baseline's global hour marked."""
    from models.pyfunc import known_members

    members = known_members(shipped, 1_000_000)
    if shipped is None or not members:
        return None
    hours = np.array([s.hour_of_week for s in shipped.best_many(members)], dtype=int)
    share = np.bincount(hours, minlength=168)[:168] / len(hours)
    fig = _figure(10.0, 3.6)
    ax = fig.add_subplot()
    ax.bar(np.arange(168), share, width=1.0, color=SHIPPED, label="model (per member)")
    if baseline is not None:
        ax.axvline(baseline.best("").hour_of_week, color=BASELINE, linewidth=2,
                   label="baseline (one global hour)")  # fmt: skip
    ax.set_xticks(np.arange(0, 168, 24), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set(title=f"send time: recommended local hour of week, {len(members):,} members",
           ylabel="share of members", xlim=(-0.5, 167.5))  # fmt: skip
    ax.legend(loc="upper right")
    return fig


def figures(result: TrainResult) -> dict[str, Figure]:
    """The figures of ``result``'s run by artifact file name (``plots/<name>.png``); a
    figure whose data is missing (models not compared, no held-out offers) is left out."""
    drawn: dict[str, Figure | None] = {"plots/metrics.png": metric_bars(result)}
    if result.name == "churn":
        drawn["plots/churn_roc_calibration.png"] = churn_curves(result.evaluation)
    elif result.name == "coupon":
        drawn["plots/coupon_uplift_by_arm.png"] = coupon_uplift(result.evaluation)
    elif result.name == "send_time":
        drawn["plots/send_time_profile.png"] = send_time_profile(result.shipped, result.baseline)
    return {k: v for k, v in drawn.items() if v is not None}
