"""The backtest's report: a markdown table per section, plots, and one MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SECTIONS = ("products", "churn", "send_time", "coupons")


def wins(result: dict[str, Any]) -> dict[str, Any]:
    """For each section, on its primary metric (higher is better): does shipped beat each
    baseline, and does it beat it by more than the noise, 1.96 times the combined standard
    error sqrt(se_shipped^2 + se_baseline^2) (conservative: it ignores that both are
    scored on the same members)? None for a section not computed."""
    out: dict[str, Any] = {}
    for section in SECTIONS:
        sec = result.get(section)
        if not sec:
            out[section] = None
            continue
        metric = sec["primary"]
        ship = sec["shipped"]
        beats, clear = {}, {}
        for name, m in sec["baselines"].items():
            v = m.get(metric)
            if v is None or v != v:
                continue
            beats[name] = ship[metric] > v
            se = (ship.get(f"{metric}_se", 0.0) ** 2 + m.get(f"{metric}_se", 0.0) ** 2) ** 0.5
            clear[name] = bool(ship[metric] - v > 1.96 * se) if se == se else False
        out[section] = {"metric": metric, "beats_all": all(beats.values()), "beats": beats,
                        "beats_beyond_noise": clear}  # fmt: skip
    if result.get("churn"):
        out["churn"]["brier_below_bg_nbd"] = (
            result["churn"]["shipped"]["brier"] < result["churn"]["baselines"]["bg_nbd"]["brier"]
        )
    return out


# ---------------------------------------------------------------- reporting
def _cell(m: dict[str, Any], key: str) -> str:
    v, se = m.get(key), m.get(f"{key}_se")
    if not isinstance(v, float):
        return str(v)
    return f"{v:.4f} ± {se:.4f}" if isinstance(se, float) and se == se else f"{v:.4f}"


def _table(sec: dict[str, Any]) -> str:
    """One row per candidate; a metric's standard error (``NAME_se``) joins its cell."""
    metrics = [k for k in sec["shipped"] if not k.endswith("_se")]
    rows = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, m in [("**shipped**", sec["shipped"]), *sec["baselines"].items()]:
        rows.append(f"| {name} | " + " | ".join(_cell(m, k) for k in metrics) + " |")
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
                clear = [k for k, v in w["beats_beyond_noise"].items() if v]
                lines.append(f"Shipped {verdict} on {w['metric']}; by more than the noise "
                             f"(1.96 combined standard errors) it beats: "
                             f"{', '.join(clear) or 'none'}.")  # fmt: skip
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
        key = sec["primary"]
        names = ["shipped", *sec["baselines"]]
        vals = [sec["shipped"][key]] + [v[key] for v in sec["baselines"].values()]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(names, vals, color=["C2"] + ["C7"] * (len(names) - 1))
        ax.set_ylabel(key.upper())
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
    for section in SECTIONS:
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
