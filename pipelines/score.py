"""`memberwise score`: batch decisions for every member, for marketing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features import member_table, repo
from features.settings import MemberwiseSettings
from models.decision import Decider, decisions_frame
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
    """One row per member of the latest snapshot, decided by the decision core
    (``models.decision``, the same as the API): member_id, churn_risk, coupon_id (None for
    no coupon), coupon_reason, expected_incremental_margin, send_channel, send_at (UTC),
    send_at_local, products (best first; ``n_products``, default the settings'
    ``serving.default_products``; a member with no purchase gets what members of their
    country buy most, as in the API), tags, segment columns and every part's role, version,
    reason, serving policy and the promotion gate's reason for it (``<part>_policy``,
    ``<part>_gate_reason``; see ``models.decision.decisions_frame``)."""
    now = now or datetime.now(UTC)
    if n_products is None:
        n_products = settings.serving.default_products
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

    progress("deciding products, coupons, send times and churn risk")
    decider = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, as_of=as_of)
    return with_member_table(
        decisions_frame(decider.decide_many(df, now, n_products=n_products)), settings
    )


def with_member_table(scores: pd.DataFrame, settings: MemberwiseSettings) -> pd.DataFrame:
    """``scores`` with each member's ``tags`` (every rule of the rules in force, those on
    model scores included), ``level`` and ``growth_value`` from the run's member table
    (features.member_table); unchanged when the run wrote none."""
    path = member_table.path(settings.members_dir)
    if not path.exists():
        return scores
    table = pd.read_parquet(path, columns=["member_id", "tags", "level", "growth_value"])
    table = table.assign(member_id=table["member_id"].astype(str)).set_index("member_id")
    ids = scores["member_id"].astype(str)
    out = scores.copy()
    known = ids.isin(table.index).to_numpy()
    given = table["tags"].reindex(ids).to_numpy(object)
    out["tags"] = [list(g) if k else t for k, g, t in zip(known, given, out["tags"], strict=True)]
    out["level"] = table["level"].reindex(ids).to_numpy(object)
    out["growth_value"] = table["growth_value"].reindex(ids).to_numpy(float)
    return out


def write_scores(settings: MemberwiseSettings, out: Path, **kwargs) -> pd.DataFrame:
    df = score_members(settings, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    return df
