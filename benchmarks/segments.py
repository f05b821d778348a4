"""Segment queries on a large member table: count + breakdowns + KPIs, and a page of 1,000
members, on the DuckDB member store and (when reachable) PostgreSQL.

    python benchmarks/segments.py [--members 1000000] [--repeat 5] [--postgres URL | --no-postgres]

Builds ``--members`` random members honouring the member-table contract, loads them into a
fresh store in a temporary home (PostgreSQL: a fresh schema, dropped afterwards) and prints,
for each query, the median of ``--repeat`` runs, the target (1 s) and two ratios: to the
target, and to a reference measured in the same run on the same database (a bare
``SELECT COUNT(*)`` over the table, the cheapest full scan).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.member_store import MemberStore  # noqa: E402
from features.settings import MemberwiseSettings  # noqa: E402
from tests.member_fixtures import random_members  # noqa: E402

TARGET_S = 1.0
PG = "postgresql://postgres@127.0.0.1:5432/test"
PREDICATE = {
    "all": [
        {"feature": "tags", "op": "in", "value": ["dormant", "price_sensitive"]},
        {"feature": "churn_risk", "op": ">=", "value": 0.3},
        {"not": {"feature": "value_tier", "op": "==", "value": "low"}},
    ]
}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    out: object = None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench(store: MemberStore, label: str, repeat: int) -> None:
    ref, _ = timed(lambda: store._rows("SELECT COUNT(*) FROM members"), repeat)
    expr = store.parse(PREDICATE)
    rows = [
        ("count + breakdowns + KPIs, every member", lambda: store.summary(None)),
        ("count + breakdowns + KPIs, predicate", lambda: store.summary(expr)),
        ("page of 1,000, predicate", lambda: store.page(expr, limit=1000)),
        (
            "page of 1,000 after a cursor",
            lambda: store.page(expr, cursor=store.page(expr, limit=1000).next_cursor, limit=1000),
        ),
        ("lookalike 1,000 of the predicate", lambda: store.lookalike(expr, 1000)),
    ]
    print(f"\n{label}: reference SELECT COUNT(*) {ref * 1000:.1f} ms")
    print(f"  {'query':44s} {'median ms':>10s} {'/target':>8s} {'/reference':>10s}  answer")
    for name, fn in rows:
        t, out = timed(fn, repeat)
        answer = out.count if hasattr(out, "kpis") else len(getattr(out, "members", out))  # type: ignore[union-attr,arg-type]
        print(f"  {name:44s} {t * 1000:10.1f} {t / TARGET_S:8.2f} {t / ref:10.1f}  {answer}")


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--postgres", default=PG, help="PostgreSQL URL (a fresh schema is used)")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    table = random_members(args.members, seed=7)
    print(f"{args.members:,} members generated in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as home:
        # measured, not cut short: the query bound is lifted for the benchmark
        settings = MemberwiseSettings(home=home, segments={"query_timeout_s": 120})
        store = MemberStore(settings)
        t0 = time.perf_counter()
        store.load(table)
        print(f"DuckDB: loaded in {time.perf_counter() - t0:.1f} s")
        bench(store, f"DuckDB ({args.members:,} members)", args.repeat)

        if args.no_postgres or not pg_reachable():
            print("\nPostgreSQL: skipped (--no-postgres or not reachable on 127.0.0.1:5432)")
            return
        import psycopg

        base = args.postgres
        schema = f"mw_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as con:
            con.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in base else "?"
            pg = MemberStore(settings, url=f"{base}{sep}options=-csearch_path%3D{schema}")
            t0 = time.perf_counter()
            pg.load(table)
            print(f"\nPostgreSQL: loaded in {time.perf_counter() - t0:.1f} s")
            bench(pg, f"PostgreSQL ({args.members:,} members)", args.repeat)
        finally:
            with psycopg.connect(base, autocommit=True) as con:
                con.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
