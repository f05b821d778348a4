"""Latency of the storefront call, against /healthz measured in the same run.

Usage: python benchmarks/bench_api.py --home demo-home [--requests 2000]

Starts the API with uvicorn on a free local port, sends sequential requests from one
client over a kept-alive connection, and prints p50 / p95 / p99 latency of
`GET /v1/members/{id}/recommendations` and of `/healthz` (the framework's own floor), the
ratio between them, and an in-process breakdown of the hot path (feature read, products,
coupon, send time) without HTTP.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1000
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}  # fmt: skip


def _members(home: Path, k: int) -> list[str]:
    snaps = sorted((home / "feast" / "offline" / "member_tags").glob("as_of=*.parquet"))
    ids = pd.read_parquet(snaps[-1], columns=["member_id"])["member_id"].tolist()
    rng = np.random.default_rng(0)
    return [str(x) for x in rng.choice(ids, size=k, replace=True)]


def in_process(home: Path, members: list[str]) -> dict[str, dict[str, float]]:
    from features import repo
    from features.settings import MemberwiseSettings
    from serving.state import AppState, as_float

    settings = MemberwiseSettings(home=home)
    state = AppState(settings=settings)
    state.load()
    assert state.ready, state.error
    ch = state.champions
    parts: dict[str, list[float]] = {"features": [], "products": [], "coupon": [], "send_time": []}
    now = datetime.now(UTC)
    for m in members:
        t0 = time.perf_counter()
        f = state.member_features(m) or {}
        t1 = time.perf_counter()
        ch.products.recommend(m, n=settings.serving.default_products)
        t2 = time.perf_counter()
        ch.coupon.decide(np.array([as_float(f.get(c)) for c in repo.COUPON_FEATURES]))
        t3 = time.perf_counter()
        ch.send_time.next_send(m, now, segment=f.get("rfm_segment"), timezone=f.get("timezone"))
        t4 = time.perf_counter()
        for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[k].append(dt)
    return {k: _pct(v) for k, v in parts.items()}


def over_http(home: Path, members: list[str]) -> dict[str, dict[str, float]]:
    port = _free_port()
    env = {**os.environ, "MEMBERWISE_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.main:app", "--port", str(port),
         "--log-level", "warning"], env=env,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("API did not become ready")
            for m in members[:50]:  # warm-up
                client.get(f"/v1/members/{m}/recommendations")
            rec, health = [], []
            for m in members:
                t0 = time.perf_counter()
                r = client.get(f"/v1/members/{m}/recommendations")
                rec.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                t0 = time.perf_counter()
                client.get("/healthz")
                health.append(time.perf_counter() - t0)
        return {"recommendations": _pct(rec), "healthz": _pct(health)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    members = _members(args.home, args.requests)
    print(f"members sampled: {len(members)} (with replacement) from {args.home}")
    parts = in_process(args.home, members)
    print("\nin-process hot path, ms per member:")
    for k, v in parts.items():
        print(f"  {k:<10} p50 {v['p50']:.3f}  p95 {v['p95']:.3f}  p99 {v['p99']:.3f}")
    http = over_http(args.home, members)
    print("\nover HTTP (uvicorn, 1 worker, sequential keep-alive client), ms:")
    for k, v in http.items():
        print(f"  {k:<16} p50 {v['p50']:.3f}  p95 {v['p95']:.3f}  p99 {v['p99']:.3f}")
    r, h = http["recommendations"], http["healthz"]
    print(f"\nratio recommendations / healthz: p50 {r['p50'] / h['p50']:.2f}x  "
          f"p99 {r['p99'] / h['p99']:.2f}x")  # fmt: skip
    print(f"recommendations p50 minus healthz p50: {r['p50'] - h['p50']:.3f} ms "
          f"(the work of the call itself)")  # fmt: skip


if __name__ == "__main__":
    main()
