"""What the console shows, read from the home the app serves: the member table (or, before
a run has written one, the latest tag snapshot), the latest run's report, the tag rules and
the champions. Pure reads; every function takes the settings or a frame explicitly."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import member_table, repo
from features.member_store import Summary
from features.rules import (
    RuleError,
    check_types,
    feature_kinds,
    live_rules_path,
    parse_rule,
    rules_version,
    to_mask,
    validate_rules,
)
from features.settings import MemberwiseSettings
from serving.routes.profile import level_history as profile_level_history

BREAKDOWNS = ("lifecycle_stage", "level", "value_tier", "preferred_channel")
"""Columns the overview and the segment builder break members down by (those present)."""

OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


# --------------------------------------------------------------------------- members
def member_table_path(settings: MemberwiseSettings) -> Path:
    return member_table.path(settings.members_dir)


def latest_as_of(settings: MemberwiseSettings) -> str | None:
    latest = settings.home_dir / "latest_run.json"
    if not latest.exists():
        return None
    return str(json.loads(latest.read_text())["as_of"])


@lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    if "tags" in frame and frame["tags"].map(lambda v: isinstance(v, str)).any():
        frame["tags"] = frame["tags"].map(lambda v: [t for t in str(v or "").split(",") if t])
    return frame


def members(settings: MemberwiseSettings) -> pd.DataFrame | None:
    """One row per member as of the latest run: the member table when the run wrote one,
    else the tag snapshot; None before any run. Cached until the file changes."""
    path = member_table_path(settings)
    if not path.exists():
        as_of = latest_as_of(settings)
        if as_of is None:
            return None
        path = repo.snapshot_path(settings, as_of)
        if not path.exists():
            return None
    return _read(str(path), path.stat().st_mtime)


def search(frame: pd.DataFrame, text: str, limit: int = 50) -> pd.DataFrame:
    """Members whose id contains ``text`` (case-insensitive, literal), at most ``limit``."""
    ids = frame["member_id"].astype(str)
    hit = ids.str.contains(text.strip(), case=False, regex=False) if text.strip() else ids != ""
    return frame.loc[hit].sort_values("member_id").head(limit)


# --------------------------------------------------------------------------- KPIs
@dataclass(frozen=True)
class Kpi:
    name: str
    value: float | None
    unit: str  # "money", "share", "count", "number"
    why_missing: str | None = None


def _share(mask: pd.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None


def kpis(frame: pd.DataFrame) -> list[Kpi]:
    """The programme's figures over ``frame`` (one row per member): ARPU, AOV, repurchase
    rate, share active in the last 30 days, retention of new members after 7/30/90 days,
    mean expected value over 12 months. A figure whose column is absent says so."""
    n = len(frame)
    out = [Kpi("members", float(n), "count")]
    revenue = frame["monetary"].fillna(0).sum() if "monetary" in frame else None
    orders = frame["frequency"].fillna(0).sum() if "frequency" in frame else None
    out.append(Kpi("ARPU", revenue / n if revenue is not None and n else None, "money"))
    out.append(Kpi("AOV", revenue / orders if revenue is not None and orders else None, "money"))
    if "frequency" in frame:
        out.append(Kpi("repurchase rate", _share(frame["frequency"].fillna(0) >= 2), "share"))
    active = None
    for col in ("orders_30d", "events_30d"):
        if col in frame:
            hit = frame[col].fillna(0) > 0
            active = hit if active is None else active | hit
    out.append(
        Kpi("active in the last 30 days", _share(active) if active is not None else None, "share")
    )
    for days in (7, 30, 90):
        col = f"retained_{days}d"
        if col in frame:
            known = frame[col].dropna().astype(bool)
            out.append(Kpi(f"retention after {days} days", _share(known), "share"))
        else:
            out.append(Kpi(f"retention after {days} days", None, "share",
                           "the member table of this run has no retention columns"))  # fmt: skip
    if "clv_12m" in frame:
        out.append(Kpi("mean expected value, 12 months", float(frame["clv_12m"].mean()), "money"))
    return out


def breakdowns(frame: pd.DataFrame) -> dict[str, list[tuple[str, int, float]]]:
    """Members by each of :data:`BREAKDOWNS` present: (value, count, share) largest first."""
    out: dict[str, list[tuple[str, int, float]]] = {}
    n = max(len(frame), 1)
    for col in BREAKDOWNS:
        if col in frame:
            counts = frame[col].fillna("none").astype(str).value_counts()
            out[col] = [(str(k), int(v), v / n) for k, v in counts.items()]
    return out


def tag_prevalence(frame: pd.DataFrame) -> list[tuple[str, int, float]]:
    """Each rule tag with the members it holds for, most common first."""
    if "tags" not in frame:
        return []
    counts = frame["tags"].explode().dropna().value_counts()
    n = max(len(frame), 1)
    return [(str(k), int(v), v / n) for k, v in counts.items()]


# --------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Condition:
    feature: str
    op: str
    value: str


def predicate(conditions: Sequence[Condition], frame: pd.DataFrame) -> dict[str, Any]:
    """The rule-language mapping (``{all: [...]}``) for the builder's rows. Values are typed
    from the column they compare with; ``in`` lists are comma-separated. Raises RuleError
    naming the row for an unknown feature, operator or a value of the wrong type."""
    kinds = feature_kinds(frame)
    items: list[dict[str, Any]] = []
    for i, c in enumerate(conditions, start=1):
        if c.feature not in kinds:
            raise RuleError(f"condition {i}: unknown feature {c.feature!r}")
        if c.op not in OPS:
            raise RuleError(f"condition {i}: unknown operator {c.op!r}")
        parts = [p.strip() for p in c.value.split(",")] if c.op.endswith("in") else [c.value]
        try:
            typed = [_typed(p, kinds[c.feature]) for p in parts]
        except ValueError as exc:
            raise RuleError(f"condition {i}: {exc}") from None
        items.append({"feature": c.feature, "op": c.op,
                      "value": typed if c.op.endswith("in") else typed[0]})  # fmt: skip
    return {"all": items}


def _typed(text: str, kind: str) -> Any:
    text = text.strip()
    if kind == "number":
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{text!r} is not a finite number")
        return int(v) if v.is_integer() else v
    if kind == "bool":
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    return text


def select(frame: pd.DataFrame, rule: Mapping[str, Any]) -> pd.DataFrame:
    """The members ``rule`` holds for (parsed and type-checked, never evaluated as code)."""
    if not rule.get("all"):
        return frame
    expr = parse_rule(dict(rule))
    problems = check_types(expr, feature_kinds(frame))
    if problems:
        raise problems[0]
    return frame.loc[to_mask(expr, frame)]


def numeric_features(frame: pd.DataFrame) -> list[str]:
    kinds = feature_kinds(frame)
    return sorted(k for k in kinds if k in frame.columns)


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class RulesView:
    path: Path
    text: str
    version: str
    problems: list[RuleError]


def rules_path(settings: MemberwiseSettings) -> Path:
    """The rules in force for the home (``memberwise run --tags``, ``tags.rules_file``, or the
    defaults)."""
    return live_rules_path(settings)


def live_rules(settings: MemberwiseSettings, frame: pd.DataFrame | None) -> RulesView:
    path = rules_path(settings)
    text = path.read_text()
    return RulesView(path, text, rules_version(path), check_text(text, frame))


def check_text(text: str, frame: pd.DataFrame | None) -> list[RuleError]:
    """Every problem of a rules file's text (with line numbers), [] when it is valid."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=True) as f:
        f.write(text)
        f.flush()
        kinds = {**feature_kinds(), **feature_kinds(frame)} if frame is not None else None
        return validate_rules(f.name, kinds)[1]


# --------------------------------------------------------------------------- run and models
def run_report(settings: MemberwiseSettings) -> dict[str, Any] | None:
    """The latest run's report (run.json), or None before any run."""
    latest = settings.home_dir / "latest_run.json"
    if not latest.exists():
        return None
    as_of = json.loads(latest.read_text())["as_of"]
    path = settings.reports_dir / str(as_of) / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def data_health(report: Mapping[str, Any] | None) -> list[tuple[str, int, int, int]]:
    """(table, kept, quarantined, erased) per input table of the latest run."""
    if not report:
        return []
    ingest = report.get("ingest") or {}
    erased = (ingest.get("erased") or {}).get("rows") or {}  # rows of erased members, by table
    out = []
    for name, rep in ingest.items():
        if isinstance(rep, Mapping) and "kept" in rep:  # a table (not the erasure summary)
            out.append((name, int(rep.get("kept", 0)), int(rep.get("quarantined", 0)),
                        int(erased.get(name, 0))))  # fmt: skip
    return out


def plots(settings: MemberwiseSettings) -> list[Path]:
    """The PNG plots the latest training runs logged, newest first (at most 12)."""
    root = settings.mlflow_dir / "artifacts"
    if not root.exists():
        return []
    found = sorted(root.rglob("*.png"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:12]


def engagement_grid(value: Any) -> np.ndarray | None:
    """A 7 x 24 grid (Monday first, local hours) of a member's engagements from the
    ``engagement_how`` column (JSON ``{hour_of_week: count}``), or None when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    counts = json.loads(value) if isinstance(value, str) else dict(value)
    grid = np.zeros(168)
    for how, c in counts.items():
        if 0 <= int(how) < 168:
            grid[int(how)] += float(c)
    return grid.reshape(7, 24)


def tag_reasons(row: Mapping[str, Any], settings: MemberwiseSettings) -> list[tuple[str, str]]:
    """(tag, why it holds) for each tag holding for the member: the run's own sentences
    (``tag_reasons``) when the member table has them, else the live rules evaluated on the
    member's row; a tag whose rule needs a column the row lacks is listed without one."""
    tags = row.get("tags")
    held = [str(t) for t in (tags if isinstance(tags, (list, tuple, np.ndarray)) else [])]
    given = row.get("tag_reasons")
    if isinstance(given, str) and given:
        reasons = json.loads(given)
        return [(t, str(reasons.get(t, "")).removeprefix(f"{t}: ")) for t in held]
    from features.rules import evaluate_tags, load_rules

    try:
        rules = load_rules(rules_path(settings))
        ev = evaluate_tags(pd.DataFrame([dict(row)]), rules)
    except (RuleError, ValueError):
        return [(t, "") for t in held]
    out = []
    for col in ev.columns:
        if col.endswith("_reason") and ev[col].iloc[0]:
            name = col.removesuffix("_reason")
            why = str(ev[col].iloc[0])
            label = name.replace(".", " ")
            out.append((name, why.removeprefix(f"{label}: ").removeprefix(f"{name}: ")))
    return out


def level_history(settings: MemberwiseSettings, member_id: str) -> list[dict[str, Any]]:
    """The member's level and growth value at each run (oldest first), [] when not kept."""
    return [p.model_dump() for p in profile_level_history(settings, member_id)]


# --------------------------------------------------------------------------- member store
KPI_UNITS = (
    ("members", "members", "count"), ("arpu", "ARPU", "money"), ("aov", "AOV", "money"),
    ("repurchase_rate", "repurchase rate", "share"),
    ("active_30d_share", "active in the last 30 days", "share"),
    ("retention_7d", "retention after 7 days", "share"),
    ("retention_30d", "retention after 30 days", "share"),
    ("retention_90d", "retention after 90 days", "share"),
    ("mean_clv_12m", "mean expected value, 12 months", "money"),
)  # fmt: skip


def store_kpis(summary: Summary) -> list[Kpi]:
    """The member store's KPIs as the console lists them."""
    k = summary.kpis
    return [Kpi(label, getattr(k, name), unit,
                None if getattr(k, name) is not None else "no member it is defined over")
            for name, label, unit in KPI_UNITS]  # fmt: skip


def store_breakdowns(summary: Summary) -> dict[str, list[tuple[str, int, float]]]:
    """The member store's breakdowns as (value, count, share), largest first."""
    n = max(summary.count, 1)
    return {col: [(v if v is not None else "none", c, c / n) for v, c in rows]
            for col, rows in summary.breakdowns.items()}  # fmt: skip


def store_features(kinds: Mapping[str, str]) -> list[str]:
    """Columns the segment builder offers: every number, string, bool and list column but
    the bookkeeping ones."""
    skip = {"member_id", "as_of", "tag_reasons", "tag_version"}
    return sorted(c for c, k in kinds.items() if c not in skip)


def store_predicate(conditions: Sequence[Condition], kinds: Mapping[str, str]) -> dict[str, Any] | None:  # fmt: skip
    """The predicate tree for the builder's rows, values typed from the member store's columns
    (a list column takes names). None: no condition, every member. Raises RuleError naming
    the row for an unknown feature, operator or a value of the wrong type."""
    items: list[dict[str, Any]] = []
    for i, c in enumerate(conditions, start=1):
        kind = kinds.get(c.feature)
        if kind is None:
            raise RuleError(f"condition {i}: unknown feature {c.feature!r}")
        if c.op not in OPS:
            raise RuleError(f"condition {i}: unknown operator {c.op!r}")
        parts = [p.strip() for p in c.value.split(",")] if c.op.endswith("in") else [c.value]
        try:
            typed = [_typed(p, "string" if kind == "list" else kind) for p in parts]
        except ValueError as exc:
            raise RuleError(f"condition {i}: {exc}") from None
        items.append({"feature": c.feature, "op": c.op,
                      "value": typed if c.op.endswith("in") else typed[0]})  # fmt: skip
    return {"all": items} if items else None
