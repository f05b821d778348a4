"""The member table, written at the end of a run (contract: features/member_table.py).

Steps: decide churn and coupon for every member with the champions (the decision core, as
the API does), compose the member insight (value, cluster, abuse risk, churn driver), then
evaluate every rule of the tag rules in force on the result, including the rules on model
scores (``churn_risk``, ``clv_12m``, ``abuse_risk``), and join levels and the KPI inputs.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd

from features import member_table, repo
from features.levels import history_path
from features.rules import TagRules, evaluate_tags, live_rules_path, load_rules, tag_names
from features.settings import MemberwiseSettings
from features.tags import reference_instant
from pipelines import steps
from pipelines.ingest import ShopData
from pipelines.progress import Reporter, silent
from training.insight import member_insight

RETENTION_DAYS = (7, 30, 90)
ACTIVE_DAYS = 30


def decide_all(
    settings: MemberwiseSettings,
    tags: pd.DataFrame,
    as_of: date,
    pinned: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``models.decision.decisions_frame`` for every member of the tag frame, by the
    registered champions (one product each: the table needs the churn and coupon parts);
    ``pinned``: registered model name to the champion version a run has staged but not
    committed yet (models.registry.load_champions)."""
    from datetime import UTC

    from models.decision import Decider, decisions_frame
    from models.registry import load_champions

    champions = load_champions(settings.tracking_uri, pinned=pinned)
    decider = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES,
                      as_of=as_of.isoformat(), abuse_threshold=settings.insight.abuse_threshold)  # fmt: skip
    now = datetime.combine(as_of, time.min, tzinfo=UTC)
    return decisions_frame(decider.decide_many(tags, now, n_products=1))


def order_dates(shop: ShopData, as_of: date) -> pd.DataFrame:
    """member_id, orders, first_order_date, last_order_date, joined_date, active_30d and
    retained_7d/30d/90d (see the contract) from the shop's purchases up to ``as_of``."""
    end = pd.Timestamp(reference_instant(as_of))
    p = steps.purchases(shop)
    p = p[p["ts"] < end].assign(member_id=lambda d: d["member_id"].astype(str))
    p = p.sort_values(["member_id", "ts"])
    g = p.groupby("member_id")["ts"]
    out = pd.DataFrame({"orders": g.size(), "first": g.min(), "last": g.max()})
    second = p.groupby("member_id")["ts"].nth(1)
    second = pd.Series(second.to_numpy(), index=p.loc[second.index, "member_id"].to_numpy())
    out["second"] = second.reindex(out.index)
    for days in RETENTION_DAYS:
        window = pd.Timedelta(days=days)
        known = out["first"] + window <= end
        kept = (out["second"] - out["first"]) <= window
        out[f"retained_{days}d"] = pd.Series(kept.fillna(False), dtype="boolean").where(known)
    out["active_30d"] = out["last"] >= end - pd.Timedelta(days=ACTIVE_DAYS)
    members = shop.get("members")
    if members is not None and "signup_ts" in members:
        signup = (
            members.assign(member_id=members["member_id"].astype(str))
            .groupby("member_id")["signup_ts"]
            .min()
        )
        out = out.join(signup.rename("signup"), how="outer")
    else:
        out["signup"] = pd.NaT
    out["joined"] = out[["signup", "first"]].min(axis=1)
    for c, src in (("first_order_date", "first"), ("last_order_date", "last"),
                   ("joined_date", "joined")):  # fmt: skip
        out[c] = pd.to_datetime(out[src]).dt.date
    out["orders"] = out["orders"].fillna(0).astype("int64")
    out["active_30d"] = out["active_30d"].astype("boolean").fillna(False).astype(bool)
    out.index.name = "member_id"
    cols = ["orders", "first_order_date", "last_order_date", "joined_date", "active_30d",
            *(f"retained_{d}d" for d in RETENTION_DAYS)]  # fmt: skip
    return out[cols].reset_index()


def member_frame(
    settings: MemberwiseSettings,
    shop: ShopData,
    tags: pd.DataFrame,
    decisions: pd.DataFrame,
    as_of: date,
    levels: pd.DataFrame,
    rules: TagRules,
) -> pd.DataFrame:
    """The member table as a frame (see :func:`write_member_table`)."""
    ids = tags["member_id"].astype(str)
    frame = tags.reset_index(drop=True).copy()
    frame["member_id"] = ids.to_numpy()
    dec = decisions.assign(member_id=decisions["member_id"].astype(str)).set_index("member_id")
    frame["churn_risk"] = dec["churn_risk"].reindex(frame["member_id"]).to_numpy(float)
    insight = member_insight(frame, shop.tables, as_of, settings).frame.set_index("member_id")
    for c in insight.columns:
        if c not in frame.columns:
            frame[c] = insight[c].reindex(frame["member_id"]).to_numpy()
    # every rule, the ones on model scores included
    ev = evaluate_tags(frame, rules)
    plain = tag_names(rules)
    held = ev[plain].to_numpy(bool) if plain else np.zeros((len(frame), 0), bool)
    names = np.asarray(plain, dtype=object)
    reason_cols = ev[[f"{t}_reason" for t in plain]].to_numpy(object) if plain else held
    frame["tags"] = [list(names[row]) for row in held]
    frame["tag_reasons"] = [
        json.dumps({str(n): str(r) for n, r, h in zip(names, rs, row, strict=True) if h})
        for row, rs in zip(held, reason_cols, strict=True)
    ]
    for t in plain:
        frame[t] = ev[t].to_numpy(bool)
    for g in rules.groups:
        frame[g.name] = ev[g.name].to_numpy(object)
    frame["tag_version"] = rules.version
    frame["as_of"] = as_of.isoformat()
    lv = levels.assign(member_id=levels["member_id"].astype(str)).set_index("member_id")
    frame["level"] = lv["level"].reindex(frame["member_id"]).to_numpy(object)
    frame["growth_value"] = lv["growth_value"].reindex(frame["member_id"]).fillna(0.0).to_numpy()
    frame["lifecycle"] = frame.get("lifecycle_stage")
    for c in ("r_score", "f_score", "m_score"):
        frame[c] = pd.array(frame[c].round(), dtype="Int64")
    coupon = dec["coupon_id"].reindex(frame["member_id"]).to_numpy(object)
    margin = dec["expected_incremental_margin"].reindex(frame["member_id"]).to_numpy(float)
    abuse = frame.get("coupon_abuse_risk")
    if abuse is not None:  # the decision core keeps these members out of coupon offers
        out = np.asarray(abuse.fillna(False), dtype=bool)
        coupon = np.where(out, None, coupon)
        margin = np.where(out, np.nan, margin)
    frame["coupon_id"] = coupon
    frame["expected_incremental_margin"] = margin
    if "preferred_channel" not in frame or frame["preferred_channel"].isna().all():
        frame["preferred_channel"] = dec["send_channel"].reindex(frame["member_id"]).to_numpy()
    frame["spend"] = frame["monetary"].astype(float)
    kpi = order_dates(shop, as_of).set_index("member_id").reindex(frame["member_id"])
    for c in kpi.columns:
        frame[c] = kpi[c].to_numpy()
    frame["orders"] = pd.Series(frame["orders"]).fillna(0).astype("int64").to_numpy()
    frame["active_30d"] = pd.Series(frame["active_30d"]).fillna(False).astype(bool).to_numpy()
    for d in RETENTION_DAYS:
        frame[f"retained_{d}d"] = pd.array(frame[f"retained_{d}d"], dtype="boolean")
    first = [c for c in member_table.COLUMNS]
    rest = [c for c in frame.columns if c not in member_table.COLUMNS and c != "event_timestamp"]
    return frame[first + rest]


def write_member_table(
    settings: MemberwiseSettings,
    shop: ShopData,
    tags: pd.DataFrame,
    decisions: pd.DataFrame,
    as_of: date,
    levels: pd.DataFrame | None = None,
    rules: TagRules | None = None,
) -> Path:
    """Write ``settings.members_dir / members.parquet``: one row per member of ``tags`` (the
    tag frame of ``as_of``), every column of ``features.member_table.COLUMNS`` and the tag
    frame's own columns. ``decisions``: ``models.decision.decisions_frame`` for those members
    (churn_risk, coupon_id, expected_incremental_margin, send_channel); ``levels``: the
    level snapshot of the run (default: read from the level history of ``as_of``);
    ``rules``: the tag rules (default: those in force, features.rules.live_rules_path).
    Returns the path."""
    rules = rules or load_rules(live_rules_path(settings))
    if levels is None:
        levels = pd.read_parquet(history_path(settings, as_of))
    frame = member_frame(settings, shop, tags, decisions, as_of, levels, rules)
    missing = member_table.missing_columns(frame)
    if missing:  # pragma: no cover - member_frame builds every column
        raise ValueError(f"the member table lacks {missing}")
    path = member_table.path(settings.members_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def members_step(
    settings: MemberwiseSettings,
    shop: ShopData,
    tags: pd.DataFrame,
    as_of: date,
    progress: Reporter = silent,
    pinned: dict[str, str] | None = None,
) -> Path:
    """Decide for every member with the champions (``pinned``: see :func:`decide_all`) and
    write the member table."""
    progress(f"deciding churn and coupon for {len(tags):,} members")
    decisions = decide_all(settings, tags, as_of, pinned)
    progress("composing member insight, model-score tags and levels")
    path = write_member_table(settings, shop, tags, decisions, as_of)
    progress(f"member table: {path}")
    return path
