"""Event-to-visible latency: from sending POST /v1/events until a read of the member's
online features shows the event, against a plain online read measured in the same run.

Usage: python benchmarks/events.py --home HOME [--events 300] [--broker none|redis|nats]

In process, through the app (FastAPI TestClient, no network): each iteration posts a
purchase for a member of the latest tag snapshot and then reads the member's online row
until ``recency_days`` is 0; the time from the POST to that read is the event-to-visible
latency. The reference is one online read of the same row. Prints p50 / p99 of both and
their ratio. The home's online store is changed (members get purchases): use a copy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--broker", default="none", choices=["none", "redis", "nats"])
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from features import repo
    from features.settings import MemberwiseSettings
    from serving.app import create_app
    from serving.events import read_row

    settings = MemberwiseSettings(home=args.home, events={"broker": args.broker})
    as_of = json.loads((settings.home_dir / "latest_run.json").read_text())["as_of"]
    members = pd.read_parquet(repo.snapshot_path(settings, as_of), columns=["member_id"])
    ids = members["member_id"].astype(str).tolist()  # one purchase each, while they last
    store = repo.feature_store(settings)
    visible, reads = [], []
    with TestClient(create_app(settings)) as client:
        for i in range(args.events):
            member = ids[i % len(ids)]
            t0 = time.perf_counter()
            read_row(store, member)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = client.post("/v1/events", json={"member_id": member, "type": "purchase",
                                                "amount": 10.0})  # fmt: skip
            r.raise_for_status()
            while (read_row(store, member) or {}).get("recency_days") != 0:
                if time.perf_counter() - t0 > 10:
                    raise SystemExit(f"member {i} never showed the purchase")
            visible.append(time.perf_counter() - t0)
    v, rd = np.array(visible) * 1000, np.array(reads) * 1000
    print(f"events: {len(v)}  broker: {args.broker}  home: {args.home}")
    print(
        f"event-to-visible  p50 {np.percentile(v, 50):7.2f} ms  p99 {np.percentile(v, 99):7.2f} ms"
    )
    print(
        f"online read (ref) p50 {np.percentile(rd, 50):7.2f} ms  p99 {np.percentile(rd, 99):7.2f} ms"
    )
    print(f"ratio p50 {np.percentile(v, 50) / np.percentile(rd, 50):.1f}x")


if __name__ == "__main__":
    main()
