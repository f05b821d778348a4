"""`memberwise score`: batch decisions for every member, for marketing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features import repo
from features.settings import MemberwiseSettings
from models.registry import load_champions


def latest_as_of(settings: MemberwiseSettings) -> str:
    path = settings.home_dir / "latest_run.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no completed run in {settings.home_dir}: run `memberwise run` first"
        )
    return json.loads(path.read_text())["as_of"]


def score_members(
    settings: MemberwiseSettings, now: datetime | None = None, n_products: int | None = None,
    progress: Callable[[str], None] = print,
) -> pd.DataFrame:  # fmt: skip
    """One row per member of the latest snapshot: member_id, churn_risk, coupon_id (None
    for no coupon), coupon_reason, expected_incremental_margin, send_channel, send_at
    (UTC), send_at_local, products (best first; ``n_products``, default the settings'
    ``serving.default_products``), tags, plus segment columns."""
    now = now or datetime.now(UTC)
    n_products = n_products or settings.serving.default_products
    as_of = latest_as_of(settings)
    champions = load_champions(settings.tracking_uri)
    store = repo.feature_store(settings)
    snapshot = pd.read_parquet(repo.snapshot_path(settings, as_of), columns=["member_id"])
    ent = snapshot.assign(event_timestamp=pd.Timestamp(as_of, tz="UTC"))
    refs: list[str] = []
    for name in (repo.CHURN_SERVICE, repo.COUPON_SERVICE, repo.SEND_TIME_SERVICE,
                 repo.PROFILE_SERVICE):  # fmt: skip
        for proj in store.get_feature_service(name).feature_view_projections:
            refs += [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
    refs = list(dict.fromkeys(refs))
    progress(f"reading features of {len(ent):,} members as of {as_of}")
    df = store.get_historical_features(entity_df=ent, features=refs).to_df()
    df = df.sort_values("member_id").reset_index(drop=True)
    members = df["member_id"].astype(str).tolist()

    progress("scoring churn, coupons, send times and products")
    churn = champions.churn.predict_proba(df[repo.CHURN_FEATURES].astype(float))[:, 1]
    decisions = champions.coupon.decide_many(df[repo.COUPON_FEATURES].to_numpy(float))
    sends = [
        champions.send_time.next_send(m, now, segment=s, timezone=tz)
        for m, s, tz in zip(members, df["rfm_segment"], df["timezone"], strict=True)
    ]
    recs = champions.products.recommend_many(members, n=n_products)
    out = pd.DataFrame({
        "member_id": members,
        "churn_risk": churn.astype(float),
        "coupon_id": [c for c, _, _ in decisions],
        "expected_incremental_margin": np.array([m for _, m, _ in decisions], dtype=float),
        "coupon_reason": [r for _, _, r in decisions],
        "send_channel": [s.channel for s in sends],
        "send_at": pd.to_datetime([s.at_utc for s in sends], utc=True),
        "send_at_local": [s.at_local.isoformat() for s in sends],
        "send_confidence": [float(s.confidence) for s in sends],
        "products": [[p for p, _, _ in r] for r in recs],
        "tags": [[t for t in (x or "").split(",") if t] for x in df["tags"]],
        "rfm_segment": df["rfm_segment"],
        "lifecycle_stage": df["lifecycle_stage"],
        "value_tier": df["value_tier"],
    })  # fmt: skip
    return out


def write_scores(settings: MemberwiseSettings, out: Path, **kwargs) -> pd.DataFrame:
    df = score_members(settings, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    return df
