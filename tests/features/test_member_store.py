"""The member store on both back-ends (DuckDB file, the machine's PostgreSQL in a schema of
its own): figures on a hand-made table whose answers are known, pages, saved segments,
exports, lookalikes, and predicates that never become SQL text."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.member_store import MemberStore, QueryTimeout, SegmentNotFound, StoreEmpty
from features.predicates import PredicateError, to_sql
from features.settings import MemberwiseSettings
from pipelines.publish import publish_members
from tests.conftest import require_service
from tests.member_fixtures import handmade_members

PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"mw_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.services)])
def store(request, tmp_path) -> MemberStore:
    settings = MemberwiseSettings(home=tmp_path)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    s = MemberStore(settings, url=url)
    s.load(handmade_members())
    return s


def ids(store: MemberStore, tree) -> list[str]:
    return [m["member_id"] for m in store.page(store.parse(tree), limit=100).members]


def test_summary_figures_are_the_hand_computed_ones(store):
    s = store.summary()
    assert s.count == 5
    k = s.kpis
    assert k.arpu == pytest.approx(1000 / 5)
    assert k.aov == pytest.approx(1000 / 10)
    assert k.repurchase_rate == pytest.approx(2 / 4)  # of the four buyers, M2 and M5
    assert k.active_30d_share == pytest.approx(2 / 5)
    assert k.retention_7d == pytest.approx(1 / 3)  # M2 of M1, M2, M4 (M3, M5 unknown)
    assert k.mean_clv_12m == pytest.approx((20 + 400 + 5 + 30 + 800) / 5)
    assert dict(s.breakdowns["level"]) == {"bronze": 2, "silver": 1, "gold": 1, "platinum": 1}
    assert dict(s.breakdowns["preferred_channel"])[None] == 1
    vip = store.summary(store.parse({"feature": "tags", "op": "==", "value": "vip"}))
    assert vip.count == 2 and vip.kpis.arpu == pytest.approx(425.0)
    assert dict(vip.breakdowns["value_tier"]) == {"high": 2}


def test_predicates_over_lists_scalars_and_combinators(store):
    assert ids(store, {"feature": "tags", "op": "==", "value": "dormant"}) == ["M1", "M4"]
    assert ids(store, {"feature": "tags", "op": "!=", "value": "dormant"}) == ["M2", "M3", "M5"]  # fmt: skip
    assert ids(store, {"feature": "tags", "op": "in", "value": ["vip", "price_sensitive"]}) == ["M2", "M4", "M5"]  # fmt: skip
    assert ids(store, {"feature": "tags", "op": "not in", "value": ["vip", "dormant"]}) == ["M3"]  # fmt: skip
    tree = {"all": [{"any": ["churn_risk >= 0.7", {"feature": "level", "value": "platinum"}]},
                    {"not": {"feature": "value_tier", "op": "==", "value": "medium"}}]}  # fmt: skip
    assert ids(store, tree) == ["M1", "M5"]
    # NULL compares false, and NOT is the complement
    assert ids(store, {"feature": "preferred_channel", "op": "!=", "value": "email"}) == ["M2", "M5"]  # fmt: skip
    assert ids(store, {"not": {"feature": "preferred_channel", "op": "==", "value": "email"}}) == ["M2", "M4", "M5"]  # fmt: skip
    assert ids(store, {"feature": "spend", "op": "between", "value": [50, 300]}) == ["M1", "M2", "M4"]  # fmt: skip
    assert ids(store, {"feature": "retained_7d", "value": True}) == ["M2"]


@pytest.mark.parametrize(
    ("tree", "node"),
    [
        (
            {"all": [{"feature": "spend", "op": ">", "value": 1}, {"feature": "nope", "value": 1}]},
            "$.all[1]",
        ),  # fmt: skip
        ({"any": [{"not": {"feature": "spend", "op": "~", "value": 1}}]}, "$.any[0].not"),
        ({"feature": "spend", "op": ">", "value": "a lot"}, "$"),
        ({"feature": "tags", "op": ">", "value": "vip"}, "$"),
        ({"all": []}, "$.all"),
        ({"feature": "spend; DROP TABLE members", "value": 1}, "$"),
        ({"feature": "spend", "op": ">", "value": {"__import__": "os"}}, "$"),
        ([1, 2], "$"),
    ],
)
def test_a_bad_predicate_names_its_node(store, tree, node):
    with pytest.raises(PredicateError) as err:
        store.parse(tree)
    assert err.value.node == node


def test_values_are_bound_never_spliced(store):
    evil = "x' OR 1=1; DROP TABLE members; --"
    expr = store.parse({"feature": "member_id", "op": "==", "value": evil})
    for dialect in ("duckdb", "postgres"):
        c = to_sql(expr, store.kinds(), dialect)  # type: ignore[arg-type]
        assert evil not in c.sql and c.params == [evil]
    assert store.count(expr) == 0
    assert store.count() == 5  # the table is still there


def test_cursor_pages_cover_every_member_once(store):
    seen, cursor = [], None
    while True:
        page = store.page(None, cursor=cursor, limit=2)
        seen += [m["member_id"] for m in page.members]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["M1", "M2", "M3", "M4", "M5"]
    store.settings.segments.max_page_size = 3
    assert len(store.page(None, limit=1000).members) == 3


def test_saved_segments_are_versioned(store):
    v1 = store.save_segment("vips", {"feature": "tags", "op": "==", "value": "vip"}, "top")
    v2 = store.save_segment("vips", {"feature": "tags", "op": "in", "value": ["vip", "dormant"]})
    assert (v1.version, v1.count, v2.version, v2.count) == (1, 2, 2, 4)
    assert store.segment("vips").version == 2
    assert store.segment("vips", 1).predicate == {"feature": "tags", "op": "==", "value": "vip"}
    assert [s.name for s in store.segments()] == ["vips"]
    # saved segments survive a new member table
    store.load(handmade_members())
    assert [v.version for v in store.versions("vips")] == [2, 1]
    assert store.delete_segment("vips") == 2
    with pytest.raises(SegmentNotFound):
        store.segment("vips")
    with pytest.raises(ValueError, match="segment name"):
        store.save_segment("bad/name", {"feature": "spend", "op": ">", "value": 1})
    with pytest.raises(PredicateError):
        store.save_segment("bad", {"feature": "nope", "value": 1})


def test_exports_stream_the_segment_as_csv_and_parquet(store):
    store.settings.segments.export_batch_rows = 2  # several batches
    expr = store.parse({"feature": "spend", "op": ">", "value": 0})
    chunks = list(store.export(expr, "csv"))
    assert len(chunks) >= 2
    csv = pd.read_csv(io.BytesIO(b"".join(chunks)))
    assert list(csv["member_id"]) == ["M1", "M2", "M4", "M5"]
    assert csv.set_index("member_id").loc["M4", "tags"] == "dormant,price_sensitive"
    table = pq.read_table(io.BytesIO(b"".join(store.export(expr, "parquet"))))
    assert table.column("member_id").to_pylist() == ["M1", "M2", "M4", "M5"]
    assert table.column("tags").to_pylist()[1] == ["high_frequency", "vip"]
    store.settings.segments.export_max_rows = 3
    capped = pd.read_csv(io.BytesIO(b"".join(store.export(expr, "csv"))))
    assert len(capped) == 3


def test_lookalike_ranks_nearest_and_excludes_the_seed(store):
    seed = store.parse({"feature": "member_id", "value": "M2"})
    found = store.lookalike(seed, size=2)
    assert [m for m, _ in found] == ["M5", "M4"] or found[0][0] == "M5"
    assert all(m != "M2" for m, _ in found) and len(found) == 2
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert store.lookalike(store.parse({"feature": "spend", "op": ">", "value": 1e9}), 3) == []


def test_member_and_search(store):
    m = store.member("M4")
    assert m is not None and m["tags"] == ["dormant", "price_sensitive"]
    assert store.member("nobody") is None
    assert [r["member_id"] for r in store.search("m_")] == []  # "_" is literal
    assert [r["member_id"] for r in store.search("m5")] == ["M5"]
    assert dict(store.tag_prevalence())["dormant"] == 2


def test_load_refuses_a_table_without_contract_columns(store):
    with pytest.raises(ValueError, match="contract columns"):
        store.load(handmade_members().drop(columns=["spend"]))
    assert store.count() == 5  # the old table stays
    store.load(handmade_members().iloc[:3])
    assert store.count() == 3 and store.member("M5") is None  # readers see the new table


def test_an_empty_store_says_so(tmp_path):
    s = MemberStore(MemberwiseSettings(home=tmp_path))
    with pytest.raises(StoreEmpty):
        s.summary()
    assert s.segments() == []


def test_a_slow_duckdb_query_is_cancelled(tmp_path):
    settings = MemberwiseSettings(home=tmp_path)
    s = MemberStore(settings)
    s.load(handmade_members())
    settings.segments.query_timeout_s = 0.05
    with pytest.raises(QueryTimeout), s._connect() as con:
        con.execute("SELECT COUNT(*) FROM range(10000000000) a")


def test_publish_members_loads_the_run_table(tmp_path):
    settings = MemberwiseSettings(home=tmp_path)
    with pytest.raises(FileNotFoundError):
        publish_members(settings)
    settings.members_dir.mkdir(parents=True)
    handmade_members().to_parquet(settings.members_dir / "members.parquet", index=False)
    assert publish_members(settings) == 5
    assert MemberStore(settings).count() == 5
    assert (settings.state_dir / "members.duckdb").exists()
    assert json.loads(MemberStore(settings).member("M2")["tag_reasons"])["vip"]


def test_forget_removes_members_at_once_and_keeps_the_rest(store):
    before = store.count()
    assert store.forget(["M2", "nobody"]) == 1
    assert store.member("M2") is None
    assert store.count() == before - 1
    assert "M2" not in ids(store, None)
    assert store.forget(["M2"]) == 0  # idempotent
    assert store.member("M1") is not None
