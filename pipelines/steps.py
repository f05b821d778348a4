"""The steps of a run, each with explicit inputs and outputs.

ingest -> tag snapshots -> Feast apply + materialize -> training frames -> train ->
register. Business logic lives in features/ and training/; this module wires them.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from features import repo
from features.settings import MemberwiseSettings
from features.tags import compute_tags
from pipelines.ingest import ShopData
from pipelines.progress import Reporter, silent, track
from training.config import TrainConfig


def snapshot_dates(shop: ShopData, cfg: TrainConfig) -> dict[str, list[date]]:
    """Dates that get a tag snapshot: the as-of date, the churn label cutoffs (the latest
    one horizon before as-of, then every ``churn_cutoff_step_days`` back), and the day
    before each past coupon offer (bucketed to weeks when there are many)."""
    churn_cutoffs = [
        shop.as_of - timedelta(days=cfg.horizon_days + k * cfg.churn_cutoff_step_days)
        for k in range(max(cfg.churn_cutoffs, 1))
    ]
    offer_dates: list[date] = []
    offers = shop.get("coupon_offers")
    if offers is not None and len(offers):
        days = (offers["offered_ts"].dt.normalize() - pd.Timedelta(days=1)).dt.date.unique()
        days = sorted(d for d in days if d < shop.as_of)
        if len(days) > cfg.max_coupon_snapshots:
            days = sorted({d - timedelta(days=d.weekday()) for d in days})
            days = days[-cfg.max_coupon_snapshots :]
        offer_dates = list(days)
    return {"as_of": [shop.as_of], "churn_cutoff": churn_cutoffs, "coupon_offers": offer_dates}


def write_snapshots(
    shop: ShopData, dates: list[date], settings: MemberwiseSettings, progress: Reporter = silent
) -> dict[date, pd.DataFrame]:
    """Compute tags at each date and write one Parquet file per date (overwriting), with the
    tag rules in force for the home (features.rules.live_rules_path)."""
    from features.rules import live_rules_path, load_rules

    rules = load_rules(live_rules_path(settings))
    out_dir = repo.tags_source_path(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames: dict[date, pd.DataFrame] = {}
    for d in track(progress, sorted(set(dates)), "tag snapshots written"):
        tags = compute_tags(shop.tables, d, settings.tags, rules)
        tags.to_parquet(repo.snapshot_path(settings, d), index=False)
        frames[d] = tags
    return frames


def apply_and_materialize(settings: MemberwiseSettings, as_of: date) -> Any:
    """Write the feature repo into HOME/feast (feature_store.yaml from the settings, the
    definitions module the feast CLI reads), apply it, and load the online store up to the
    snapshot of ``as_of``: only what is new since the last run, or a rebuild when ``as_of``
    is not later than the last date loaded. Returns the FeatureStore."""
    repo.write_repo(settings)
    store = repo.feature_store(settings)
    repo.apply(store)
    repo.materialize(store, as_of)
    return store


def historical(store: Any, service: str, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of ``service`` for (member_id, event_timestamp) rows."""
    fs = store.get_feature_service(service)
    df = store.get_historical_features(entity_df=entity_df, features=fs).to_df()
    return df


def purchases(shop: ShopData) -> pd.DataFrame:
    """Purchase orders (member_id, ts) — orders with at least one positive line."""
    ol = shop.tables["order_lines"]
    pos = ol[ol["quantity"] > 0]
    return pos.groupby(["member_id", "order_id"], as_index=False)["ts"].min()


def engagements(shop: ShopData) -> pd.DataFrame:
    """Engagement moments: message opens and clicks (their channel), orders and browsing
    (channel "web", which shapes the hour profile but not the channel choice)."""
    parts = [purchases(shop)[["member_id", "ts"]].assign(channel="web")]
    ev = shop.get("events")
    if ev is not None and len(ev):
        parts.append(ev[["member_id", "ts"]].assign(channel="web"))
    msg = shop.get("messages")
    if msg is not None and len(msg):
        for col in ("opened_ts", "clicked_ts"):
            if col in msg:
                m = msg[msg[col].notna()]
                parts.append(pd.DataFrame({"member_id": m["member_id"], "ts": m[col],
                                           "channel": m["channel"]}))  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"]).astype("datetime64[us]")
    return out[out["ts"] < shop.cutoff].reset_index(drop=True)


def column_map(shop: ShopData, table: str, key: str, column: str) -> pd.Series:
    """``key`` -> ``column`` of an optional table (str index; rows where the value is missing
    dropped); empty when the table or the column is absent."""
    t = shop.get(table)
    if t is None or column not in t:
        return pd.Series(dtype=object)
    t = t[t[column].notna()]
    return pd.Series(t[column].to_numpy(), index=t[key].astype(str).to_numpy())


def member_timezones(shop: ShopData) -> dict[str, str]:
    """member -> IANA time zone (members table)."""
    return column_map(shop, "members", "member_id", "timezone").astype(str).to_dict()


def member_countries(shop: ShopData) -> dict[str, str]:
    """member -> country (the segment a member with no purchases is recommended from)."""
    return column_map(shop, "members", "member_id", "country").astype(str).to_dict()


def product_categories(shop: ShopData) -> dict[str, str]:
    """product -> category (for the recommendations' category filter)."""
    return column_map(shop, "products", "product_id", "category").astype(str).to_dict()


def margin_rates(shop: ShopData) -> pd.Series:
    """product -> margin rate (products table)."""
    return column_map(shop, "products", "product_id", "margin_rate").astype(float)


def offer_costs(shop: ShopData) -> pd.Series:
    """coupon_id -> fixed cost of making one offer (the coupons table's optional ``cost``)."""
    return column_map(shop, "coupons", "coupon_id", "cost").astype(float)


def engagement_hours(shop: ShopData) -> pd.Series:
    """member_id -> JSON ``{hour_of_week: engagements}`` over the member's engagement moments
    (:func:`engagements`), in the member's own time zone (UTC when unknown); Monday 00:00 = 0.
    Sparse, so a member costs only the hours they were seen in (the console's heatmap)."""
    from models.send_time import local_hour_of_week

    eng = engagements(shop)
    if eng.empty:
        return pd.Series(dtype=object)
    zones = member_timezones(shop)
    tz = eng["member_id"].map(zones).fillna("UTC").astype(str).to_numpy()
    how = local_hour_of_week(eng["ts"].to_numpy("datetime64[us]"), tz)
    counts = (
        pd.DataFrame({"member_id": eng["member_id"].astype(str), "how": how})
        .groupby(["member_id", "how"]).size().reset_index(name="n")
    )  # fmt: skip
    pairs = '"' + counts["how"].astype(str) + '":' + counts["n"].astype(str)
    return "{" + pairs.groupby(counts["member_id"]).agg(",".join) + "}"
