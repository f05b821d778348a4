"""The backtest's report: a markdown table per section, plots, and one MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.gate import Selection
from training.registry import mlflow_metric_name as _metric_name

SECTIONS = ("products", "churn", "send_time", "coupons")


def gate_record(selection: Selection, shipped: str) -> dict[str, Any]:
    """What a section reports of the gate's verdict on the horizon: the champion, its
    reason, the chain of incumbents and one row per candidate (estimate, se, the paired
    advantage over the incumbent it was compared with, its lower bound, verdict);
    ``shipped`` is the gate's name of the model `memberwise run` registered."""
    return {
        "champion": selection.champion,
        "role": selection.role,
        "reason": selection.reason,
        "shipped": shipped,
        "chain": list(selection.chain),
        "z": selection.z,
        "units": selection.n_units,
        "rows": selection.as_records(),
    }


def wins(result: dict[str, Any]) -> dict[str, Any]:
    """For each section, the promotion gate's verdict on the horizon (see
    training.gate): the champion, whether it is the shipped model, its verdict, and the
    incumbent it beat by more than the noise (the paired lower bound of its advantage
    above zero), if it did. None for a section not computed."""
    out: dict[str, Any] = {}
    for section in SECTIONS:
        sec = result.get(section)
        if not sec or not sec.get("gate"):
            out[section] = None
            continue
        g = sec["gate"]
        rows = {r["name"]: r for r in g["rows"]}
        shipped = g["shipped"]
        row = rows.get(shipped)
        # the incumbent the shipped model displaced, when it did (a paired comparison)
        beaten = [row["vs"]] if row and row["vs"] and shipped in g["chain"] else []
        out[section] = {
            "metric": sec["primary"],
            "champion": g["champion"],
            "shipped": shipped,
            "shipped_is_champion": g["champion"] == shipped,
            "shipped_verdict": row["verdict"] if row else None,
            "beats_beyond_noise": beaten,
        }
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
    shipped = f"**{sec.get('shipped_name', 'shipped')}** (shipped)"
    outside = set(sec.get("outside_gate", []))
    for name, m in [(shipped, sec["shipped"]), *sec["baselines"].items()]:
        label = f"{name} (outside the gate)" if name in outside else name
        rows.append(f"| {label} | " + " | ".join(_cell(m, k) for k in metrics) + " |")
    return "\n".join(rows)


def _num(v: Any, sign: bool = False) -> str:
    if not isinstance(v, (int, float)) or v != v:
        return ""
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def _gate_table(g: dict[str, Any], metric: str) -> str:
    """The gate's verdict on the horizon: its table (simplest first) and champion."""
    rows = [
        f"Promotion gate on the horizon ({g['units']} units, z = {g['z']:g}): a candidate "
        "replaces the incumbent only when the paired lower bound of its advantage is above "
        "zero (training.gate, the comparison `memberwise run` makes).",
        "",
        f"| candidate | role | {metric} ± se | advantage | lower bound | vs | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in g["rows"]:
        name = f"**{r['name']}**" if r["name"] == g["shipped"] else r["name"]
        est = f"{_num(r['estimate'])} ± {_num(r['se'])}" if _num(r["se"]) else _num(r["estimate"])
        rows.append(f"| {name} | {r['role']} | {est} | {_num(r['advantage'], True)} | "
                    f"{_num(r['lcb'], True)} | {r['vs'] or ''} | {r['verdict']} |")  # fmt: skip
    rows += ["", f"Champion: **{g['champion']}** ({g['reason']}); shipped: {g['shipped']}."]
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Backtest: {result['dataset']} as of {result['as_of']}, "
             f"horizon {result['horizon_days']} days", ""]  # fmt: skip
    for section in ("products", "churn", "send_time", "coupons"):
        lines.append(f"## {section.replace('_', ' ')}")
        sec = result.get(section)
        if sec:
            lines += [_table(sec), ""]
            if sec.get("gate"):
                lines += [_gate_table(sec["gate"], sec["primary"]), ""]
            if result["notes"].get(section):
                lines += [f"Note: {result['notes'][section]}", ""]
        else:
            lines.append(f"Not computed: {result['notes'].get(section, 'no data')}")
        if section == "send_time" and sec and "planted_peak_recovery" in sec:
            r = sec["planted_peak_recovery"]
            lines.append(f"Planted peak hour recovered (±1 h) for {r['shipped']:.1%} of "
                         f"{r['members']} members (member's most frequent allowed hour: "
                         f"{r['member_most_frequent_hour']:.1%}; reachable outside quiet "
                         f"hours: {r['reachable']:.1%}).")  # fmt: skip
        if section == "send_time" and sec and "reachable_1h" in sec:
            lines.append(f"First engagements within 1 h of an allowed (non-quiet) hour: "
                         f"{sec['reachable_1h']:.1%} (the ceiling of hit_rate_1h for any model "
                         "honouring the quiet hours).")  # fmt: skip
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
                    flat[_metric_name(f"{section}.{name}.{k.replace('@', '_at_')}")] = float(v)
    with mlflow.start_run(run_name=f"backtest-{result['dataset']}-{result['as_of']}") as run:
        mlflow.set_tags({"kind": "backtest", "dataset": result["dataset"],
                         "as_of": result["as_of"]})  # fmt: skip
        mlflow.set_tags({f"gate.{s}.champion": result[s]["gate"]["champion"]
                         for s in SECTIONS if result.get(s) and result[s].get("gate")})  # fmt: skip
        mlflow.log_params({"horizon_days": result["horizon_days"], "dataset": result["dataset"]})
        mlflow.log_metrics(flat)
        for f in files:
            mlflow.log_artifact(str(f))
    return run.info.run_id
