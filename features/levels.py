"""Growth value and member levels.

Growth value is the balance a member's level rests on, by one of the programme's two models
(setting ``levels.model``):

* ``behaviour``: points per action up to the as-of date: the first login of each day
  (``events`` with ``event_type`` "login"), the paid amount of each order times a multiplier,
  each review and each share (``event_type`` "review" / "share"). A returned or cancelled
  line (negative quantity, as the data format records it) takes its points back, so a fully
  returned order earns nothing. The balance never goes below zero.
* ``rfm``: every ``period_days`` (the last ``rfm_periods`` periods up to the as-of date), the
  member's R, F and M scores of that period (1..5, quintiles among the members known then;
  R from the days since the last order, F and M from orders and spend in the period) turn
  into that period's growth, ``points_per_score * sum(weight * (score - 3))``: positive for
  good periods, negative for poor ones, so value can fall. The balance is floored at zero.

Levels come from the growth value by thresholds (``levels.thresholds``, the programme's
regular / silver / gold / diamond) or by a target distribution (``levels.target_shares``,
bottom level first, thresholds placed at the value quantiles). A member moves up at once
and down only once they have held their level for ``protection_days``: that needs each
member's level history across runs, kept point-in-time as one Parquet snapshot per run under
``HOME/feast/offline/member_levels`` (a Feast feature view, ``member_levels``).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import LevelSettings, MemberwiseSettings

LEVELS_VIEW = "member_levels"
HISTORY_COLUMNS: tuple[str, ...] = (
    "member_id", "event_timestamp", "level", "level_rank", "earned_level", "growth_value",
    "level_since",
)  # fmt: skip


def history_dir(settings: MemberwiseSettings) -> Path:
    """Folder of level snapshots, one Parquet file per run's as-of date."""
    return settings.offline_dir / LEVELS_VIEW


def history_path(settings: MemberwiseSettings, as_of: date | str) -> Path:
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return history_dir(settings) / f"as_of={day}.parquet"


def _end(as_of: date) -> pd.Timestamp:
    return pd.Timestamp(as_of) + pd.Timedelta(days=1)


# --------------------------------------------------------------------------- growth value


def behaviour_growth(tables: dict[str, pd.DataFrame], as_of: date, cfg: LevelSettings) -> pd.Series:
    """member_id -> growth value (float, >= 0) by the behaviour model, up to the end of
    ``as_of``."""
    end = _end(as_of)
    parts: list[pd.Series] = []
    ol = tables["order_lines"]
    ol = ol[ol["ts"] < end]
    if len(ol):
        disc = ol["discount"].fillna(0.0) if "discount" in ol else 0.0
        paid = ol["quantity"] * ol["unit_price"] - np.where(ol["quantity"] > 0, disc, 0.0)
        # returned lines carry a negative quantity: their amount is taken back
        parts.append((paid * cfg.purchase_multiplier).groupby(ol["member_id"].astype(str)).sum())
    events = tables.get("events")
    if events is not None and len(events) and "event_type" in events:
        ev = events[events["ts"] < end]
        kind = ev["event_type"].astype(str).str.lower()
        login = ev[kind == "login"]
        if len(login):
            days = login.assign(day=login["ts"].dt.normalize())[["member_id", "day"]]
            first = days.drop_duplicates().groupby(days["member_id"].astype(str)).size()
            parts.append(first.groupby(level=0).sum() * cfg.login_points)
        for name, points in (("review", cfg.review_points), ("share", cfg.share_points)):
            hit = ev[kind == name]
            if len(hit):
                parts.append(hit.groupby(hit["member_id"].astype(str)).size() * float(points))
    if not parts:
        return pd.Series(dtype=float)
    total = pd.concat(parts).groupby(level=0).sum().astype(float)
    return total.clip(lower=0.0)


def _quintile(values: pd.Series, ascending: bool) -> pd.Series:
    """1..5 scores by quintile of rank, higher = better (ties share their mean rank)."""
    pct = values.rank(method="average", ascending=ascending, pct=True)
    return np.ceil(pct * 5).clip(1, 5)


def rfm_growth(tables: dict[str, pd.DataFrame], as_of: date, cfg: LevelSettings) -> pd.Series:
    """member_id -> growth value (float, >= 0) by the dynamic RFM model, summed over the last
    ``rfm_periods`` periods of ``period_days`` up to the end of ``as_of``."""
    ol = tables["order_lines"]
    end = _end(as_of)
    ol = ol[(ol["ts"] < end)]
    if ol.empty:
        return pd.Series(dtype=float)
    disc = ol["discount"].fillna(0.0) if "discount" in ol else 0.0
    lines = pd.DataFrame({
        "member_id": ol["member_id"].astype(str), "order_id": ol["order_id"].astype(str),
        "ts": ol["ts"], "value": ol["quantity"] * ol["unit_price"] - disc,
    })  # fmt: skip
    orders = lines.groupby(["member_id", "order_id"], as_index=False).agg(
        ts=("ts", "min"), value=("value", "sum")
    )
    wr, wf, wm = cfg.rfm_weights
    balance = pd.Series(0.0, index=pd.Index(sorted(orders["member_id"].unique()), name="member_id"))
    step = pd.Timedelta(days=cfg.period_days)
    for k in range(cfg.rfm_periods, 0, -1):
        p_end = end - (k - 1) * step
        p_start = p_end - step
        seen = orders[orders["ts"] < p_end]
        if seen.empty:
            continue
        last = seen.groupby("member_id")["ts"].max()
        in_p = seen[seen["ts"] >= p_start].groupby("member_id")["value"].agg(["size", "sum"])
        freq = in_p["size"].reindex(last.index, fill_value=0)
        spend = in_p["sum"].reindex(last.index, fill_value=0.0)
        recency = (p_end - last).dt.total_seconds()
        score = (
            wr * (_quintile(recency, ascending=False) - 3)
            + wf * (_quintile(freq.astype(float), ascending=True) - 3)
            + wm * (_quintile(spend.astype(float), ascending=True) - 3)
        )
        growth = (score * cfg.points_per_score).reindex(balance.index, fill_value=0.0)
        balance = (balance + growth).clip(lower=0.0)
    return balance


def growth_value(tables: dict[str, pd.DataFrame], as_of: date, cfg: LevelSettings) -> pd.Series:
    """Growth value per member_id by the configured model."""
    if cfg.model == "rfm":
        return rfm_growth(tables, as_of, cfg)
    return behaviour_growth(tables, as_of, cfg)


# --------------------------------------------------------------------------- levels


def thresholds(values: pd.Series, cfg: LevelSettings) -> tuple[float, ...]:
    """Lower bounds of each level, bottom first: the configured ones, or (``assign_by`` =
    "distribution") the growth-value quantiles giving ``target_shares``."""
    if cfg.assign_by == "thresholds" or values.empty:
        return tuple(float(t) for t in cfg.thresholds)
    cum = np.cumsum(cfg.target_shares)[:-1]
    qs = np.quantile(values.to_numpy(float), cum)
    return (0.0, *(float(q) for q in qs))


def earned_rank(values: pd.Series, bounds: tuple[float, ...]) -> np.ndarray:
    """(n,) int: the highest level whose lower bound the value reaches (0 = bottom)."""
    b = np.asarray(bounds[1:], dtype=float)
    return np.searchsorted(b, values.to_numpy(float), side="right").astype(int)


def previous_levels(settings: MemberwiseSettings, as_of: date) -> pd.DataFrame:
    """Each member's latest level snapshot strictly before ``as_of`` (point-in-time: a rerun
    at the same date does not see its own earlier answer); empty when there is none."""
    folder = history_dir(settings)
    files = sorted(folder.glob("as_of=*.parquet")) if folder.exists() else []
    files = [f for f in files if f.stem.removeprefix("as_of=") < as_of.isoformat()]
    if not files:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = frame.sort_values("event_timestamp").drop_duplicates("member_id", keep="last")
    return frame.reset_index(drop=True)


def assign_levels(
    members: pd.Series,
    value: pd.Series,
    previous: pd.DataFrame,
    as_of: date,
    cfg: LevelSettings,
) -> pd.DataFrame:
    """Levels of ``members`` (member ids) as of ``as_of`` from their growth ``value``
    (member_id -> points; absent = 0) and their ``previous`` snapshot. Returns
    :data:`HISTORY_COLUMNS`: ``earned_level`` is what the value alone gives; ``level`` is
    the earned one when it is not lower than the held one, or when the held one has been
    kept ``protection_days`` (``level_since`` counts from the day it was reached); else the
    held one."""
    ids = members.astype(str).to_numpy()
    v = value.reindex(ids).fillna(0.0).astype(float)
    bounds = thresholds(value, cfg)
    earned = earned_rank(v, bounds)
    names = np.asarray(cfg.names, dtype=object)
    prev = previous.set_index(previous["member_id"].astype(str)) if len(previous) else None
    held = np.full(len(ids), -1)
    since = pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[us]")
    if prev is not None:
        rank_map = {n: i for i, n in enumerate(cfg.names)}
        held_names = prev["level"].reindex(ids)
        held = held_names.map(rank_map).fillna(-1).astype(int).to_numpy()
        since = pd.to_datetime(prev["level_since"].reindex(ids)).astype("datetime64[us]")
        since = since.reset_index(drop=True)
    today = pd.Timestamp(as_of)
    kept_days = (today - since).dt.days.to_numpy()
    protected = (held > earned) & (kept_days < cfg.protection_days)
    rank = np.where(protected, held, earned)
    changed = rank != held
    level_since = np.where(changed, today.to_datetime64(), since.to_numpy())
    return pd.DataFrame({
        "member_id": ids,
        "event_timestamp": pd.Timestamp(as_of, tz="UTC"),
        "level": names[rank],
        "level_rank": rank.astype("int64"),
        "earned_level": names[earned],
        "growth_value": v.to_numpy(),
        "level_since": pd.to_datetime(level_since).astype("datetime64[us]"),
    })  # fmt: skip


def write_levels(
    settings: MemberwiseSettings,
    tables: dict[str, pd.DataFrame],
    members: pd.Series,
    as_of: date,
) -> pd.DataFrame:
    """Growth value and level of every member as of ``as_of``, from the shop and the level
    history; written as this run's snapshot (overwriting a rerun at the same date) and
    returned (:data:`HISTORY_COLUMNS`)."""
    cfg = settings.levels
    frame = assign_levels(
        members, growth_value(tables, as_of, cfg), previous_levels(settings, as_of), as_of, cfg
    )
    path = history_path(settings, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return frame


def level_history(settings: MemberwiseSettings, member_id: str) -> pd.DataFrame:
    """One member's level and growth value at each run, oldest first."""
    folder = history_dir(settings)
    files = sorted(folder.glob("as_of=*.parquet")) if folder.exists() else []
    rows = [pd.read_parquet(f, filters=[("member_id", "==", member_id)]) for f in files]
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    return pd.concat(rows, ignore_index=True).sort_values("event_timestamp")


def protection_end(level_since: pd.Timestamp, cfg: LevelSettings) -> pd.Timestamp:
    """The first day the held level may be lowered."""
    return pd.Timestamp(level_since) + timedelta(days=cfg.protection_days)
