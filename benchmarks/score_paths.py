"""Where `memberwise score` spends its time, part by part, in one process.

Usage: python benchmarks/score_paths.py --home HOME

Reads the latest snapshot's features as `memberwise score` does, then times each part of
the batch decision (churn, coupon, products, the per-member composition with its send
times, the output frame). The composition is timed twice in the same run: with the send
time's next-moment arithmetic computed per member (its memo bypassed) and memoised (once
per hour of week and time zone), so the figure is a before / after on the same data.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    a = ap.parse_args()

    import models.send_time as st
    from features import repo
    from features.settings import MemberwiseSettings
    from models.decision import Decider, decisions_frame
    from models.registry import load_champions
    from pipelines.score import latest_as_of

    settings = MemberwiseSettings(home=a.home)
    as_of = latest_as_of(settings)
    times: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        return out

    champions = timed("load champions", lambda: load_champions(settings.tracking_uri))
    store = repo.feature_store(settings)
    snapshot = pd.read_parquet(repo.snapshot_path(settings, as_of), columns=["member_id"])
    ent = snapshot.assign(event_timestamp=pd.Timestamp(as_of, tz="UTC"))
    refs: list[str] = []
    for name in (repo.CHURN_SERVICE, repo.COUPON_SERVICE, repo.SEND_TIME_SERVICE,
                 repo.PROFILE_SERVICE):  # fmt: skip
        for proj in store.get_feature_service(name).feature_view_projections:
            refs += [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
    refs = list(dict.fromkeys(refs))
    df = timed("read features (Feast offline)",
               lambda: store.get_historical_features(entity_df=ent, features=refs).to_df())  # fmt: skip
    df = df.sort_values("member_id").reset_index(drop=True)
    decider = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, as_of=as_of)
    now = datetime.now(UTC)
    members = df["member_id"].astype(str).tolist()
    timed("churn (vectorised)", lambda: decider._churn_many(df[decider.churn_features]))
    timed("coupon (vectorised)",
          lambda: champions.coupon.decide_many(df[decider.coupon_features].to_numpy(float)))  # fmt: skip
    timed("products.recommend_many",
          lambda: champions.products.recommend_many(members, n=10, segments=None))  # fmt: skip

    memo = st.next_moment
    st.next_moment = memo.__wrapped__  # before: the arithmetic once per member
    try:
        timed("decide_many, send time per member", lambda: decider.decide_many(df, now))
    finally:
        st.next_moment = memo
    memo.cache_clear()
    decisions = timed("decide_many, send time memoised", lambda: decider.decide_many(df, now))
    timed("decisions_frame", lambda: decisions_frame(decisions))
    print(json.dumps({"members": len(df), "seconds": times}, indent=2))


if __name__ == "__main__":
    main()
