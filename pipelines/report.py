"""`memberwise report`: the programme's KPIs by segment (tag) and the new-member retention
cohorts, from the member table, as JSON and PNG in ``HOME/reports/members/AS_OF`` and logged
to MLflow.

KPIs (the programme's usual definitions, over the member table's KPI inputs): members, share of all
members (the tag's prevalence), ARPU (spend / members), AOV (spend / orders), repurchase rate
(members with 2+ orders / members with 1+), share active in the last 30 days, 7/30/90-day
retention of new members (among members whose first order is old enough), mean expected
value over 12 months. Cohorts: members by the month of their first order, with the share
retained at 7, 30 and 90 days.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import member_table
from features.settings import MemberwiseSettings

ALL = "all members"


def _share(mask: pd.Series) -> float | None:
    known = mask.dropna()
    return float(known.astype(bool).mean()) if len(known) else None


def kpis(frame: pd.DataFrame) -> dict[str, Any]:
    """The KPIs of one segment (rows of the member table)."""
    n = len(frame)
    orders = float(frame["orders"].sum()) if n else 0.0
    spend = float(frame["spend"].sum()) if n else 0.0
    buyers = int((frame["orders"] >= 1).sum())
    out: dict[str, Any] = {
        "members": n,
        "arpu": spend / n if n else None,
        "aov": spend / orders if orders else None,
        "repurchase_rate": float((frame["orders"] >= 2).sum()) / buyers if buyers else None,
        "active_30d": _share(frame["active_30d"]) if n else None,
        "mean_clv_12m": float(frame["clv_12m"].mean())
        if n and frame["clv_12m"].notna().any()
        else None,  # fmt: skip
    }
    for d in (7, 30, 90):
        out[f"retention_{d}d"] = _share(frame[f"retained_{d}d"]) if n else None
    return out


def segments(table: pd.DataFrame, segment: str | None = None) -> dict[str, pd.DataFrame]:
    """Segment name -> its rows: every tag that appears (or only ``segment``), and all
    members. A segment is a tag name, or ``column=value`` for a label column (e.g.
    ``level=gold``, ``lifecycle=dormant``)."""
    tags = table["tags"].map(lambda t: list(t) if t is not None else [])
    out: dict[str, pd.DataFrame] = {ALL: table}
    names = [segment] if segment else sorted({t for ts in tags for t in ts})
    for name in names:
        if "=" in name:
            col, value = name.split("=", 1)
            if col not in table.columns:
                raise ValueError(f"unknown column {col!r} in segment {name!r}")
            out[name] = table[table[col].astype(str) == value]
        else:
            out[name] = table[tags.map(lambda ts, n=name: n in ts).to_numpy(bool)]
    return out


def prevalence(table: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """For each tag name: members holding it and their share of all members."""
    tags = table["tags"].map(lambda t: set(t) if t is not None else set())
    n = max(len(table), 1)
    rows = []
    for name in names:
        k = int(tags.map(lambda ts, x=name: x in ts).sum())
        rows.append({"tag": name, "members": k, "share": k / n})
    return rows


def cohorts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """New-member retention by the month of the first order."""
    t = table[table["first_order_date"].notna()]
    if t.empty:
        return []
    month = pd.to_datetime(t["first_order_date"]).dt.to_period("M").astype(str)
    rows = []
    for m, g in t.groupby(month):
        row: dict[str, Any] = {"cohort": m, "members": len(g)}
        for d in (7, 30, 90):
            row[f"retained_{d}d"] = _share(g[f"retained_{d}d"])
        rows.append(row)
    return rows


def build_report(table: pd.DataFrame, segment: str | None = None) -> dict[str, Any]:
    segs = segments(table, segment)
    names = sorted({t for ts in table["tags"] for t in (ts if ts is not None else [])})
    return {
        "as_of": str(table["as_of"].iloc[0]) if len(table) else None,
        "tag_version": str(table["tag_version"].iloc[0]) if len(table) else None,
        "members": len(table),
        "segments": {name: kpis(rows) for name, rows in segs.items()},
        "prevalence": prevalence(table, names),
        "cohorts": cohorts(table),
    }


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    prev = report["prevalence"]
    a.barh([p["tag"] for p in prev], [p["share"] for p in prev], color="#4c72b0")
    a.set_xlim(0, 1)
    a.set_title("tag prevalence (share of members)")
    co = report["cohorts"]
    if co:
        grid = np.array([[c[f"retained_{d}d"] if c[f"retained_{d}d"] is not None else np.nan
                          for d in (7, 30, 90)] for c in co], dtype=float)  # fmt: skip
        im = b.imshow(grid, aspect="auto", vmin=0, vmax=max(0.01, float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0), cmap="Blues")  # fmt: skip
        b.set_yticks(range(len(co)), [c["cohort"] for c in co])
        b.set_xticks(range(3), ["7 days", "30 days", "90 days"])
        fig.colorbar(im, ax=b)
    b.set_title("new-member retention by first-order month")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(
    settings: MemberwiseSettings, segment: str | None = None, log: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Write ``report.json`` and ``report.png`` under ``HOME/reports/members/AS_OF`` from the
    member table and log both to MLflow (experiment ``member_report``). Raises
    FileNotFoundError before any run, ValueError for an unknown segment column."""
    path = member_table.path(settings.members_dir)
    if not path.exists():
        raise FileNotFoundError(f"no member table in {settings.members_dir}: run `memberwise run` first")  # fmt: skip
    table = pd.read_parquet(path)
    report = build_report(table, segment)
    out = settings.reports_dir / "members" / str(report["as_of"])
    out.mkdir(parents=True, exist_ok=True)
    name = "report" if segment is None else f"report-{_safe(segment)}"
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    png = out / f"{name}.png"
    _plot(report, png)
    if log:
        import mlflow

        from training.registry import setup_tracking

        setup_tracking(settings.tracking_uri, settings.artifact_root)
        mlflow.set_experiment("member_report")
        with mlflow.start_run(run_name=f"member-report-{report['as_of']}"):
            mlflow.set_tags({"as_of": str(report["as_of"]),
                             "tag_version": str(report["tag_version"]),
                             "segment": segment or ALL})  # fmt: skip
            for p in report["prevalence"]:
                mlflow.log_metric(f"prevalence.{_safe(p['tag'])}", p["share"])
            for k, v in report["segments"][ALL].items():
                if v is not None:
                    mlflow.log_metric(f"all.{k}", float(v))
            mlflow.log_artifact(str(json_path))
            mlflow.log_artifact(str(png))
    return json_path, report


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
