"""The member store: the member table (features/member_table.py) in a database every API
replica can read, and the queries marketers run over it.

Two back-ends, chosen by ``stores.member_store_url``: unset, a DuckDB file
``STATE_DIR/members.duckdb`` (one machine); ``postgresql://...``, a PostgreSQL database shared
by every replica (the schema is the connection's ``search_path``). Both hold two tables:

    members    the member table, replaced whole by :meth:`MemberStore.load` (a new table is
               written, then renamed over the old one in one transaction: readers see the old
               table or the new one, never a mix)
    segments   saved segments: (name, version) -> predicate JSON; saving a name again adds a
               version (with DuckDB, in the SQLite file STATE_DIR/segments.sqlite, which API
               processes can write while a run holds the DuckDB file)

Every query is parameterized (predicates compile through features/predicates.py), bounded in
rows (``segments.max_page_size``, ``export_max_rows``, ``lookalike_max``) and in time
(``segments.query_timeout_s``: DuckDB interrupts the query, PostgreSQL's statement_timeout
cancels it; either raises :class:`QueryTimeout`).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import member_table
from features.predicates import ColumnKinds, Dialect, kinds_of, parse_predicate, to_sql
from features.rules import Expr
from features.settings import MemberwiseSettings

TABLE = "members"
SEGMENTS = "segments"
DUCKDB_FILE = "members.duckdb"
SEGMENTS_FILE = "segments.sqlite"
KINDS_TTL_S = 10.0
"""How long a PostgreSQL store trusts the member table's columns it read (a load elsewhere
that adds a column is seen after this)."""
BREAKDOWNS = ("value_tier", "lifecycle", "level", "preferred_channel")
"""Columns a summary breaks members down by."""
PAGE_COLUMNS = ("member_id", "level", "value_tier", "lifecycle", "rfm_segment", "churn_risk",
                "clv_12m", "preferred_channel", "tags")  # fmt: skip
"""Columns of a page of members."""
SEGMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}\Z")
ExportFormat = Literal["csv", "parquet"]


class StoreEmpty(LookupError):
    """No member table has been loaded yet (run ``memberwise run``)."""


class QueryTimeout(TimeoutError):
    """A query ran past ``segments.query_timeout_s``."""


class SegmentNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Kpis:
    """A segment's figures. Shares are 0..1; money in the shop's currency; None when the
    segment has no member the figure is defined over."""

    members: int
    arpu: float | None
    aov: float | None
    repurchase_rate: float | None
    active_30d_share: float | None
    retention_7d: float | None
    retention_30d: float | None
    retention_90d: float | None
    mean_clv_12m: float | None


@dataclass(frozen=True)
class Summary:
    count: int
    breakdowns: dict[str, list[tuple[str | None, int]]]
    kpis: Kpis


@dataclass(frozen=True)
class Page:
    members: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class SavedSegment:
    name: str
    version: int
    predicate: Any
    description: str
    created_at: str
    count: int


@dataclass
class MemberStore:
    """The member store of ``settings`` (see the module docstring)."""

    settings: MemberwiseSettings
    url: str | None = None
    _kinds: tuple[Any, dict[str, Any]] | None = field(default=None, repr=False)
    _pg_pool: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.url is None:
            self.url = self.settings.stores.member_store_url
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"stores.member_store_url must be postgresql://..., not {self.url!r}")  # fmt: skip

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.url else "duckdb"

    @property
    def path(self) -> Path:
        """The DuckDB file (DuckDB back-end)."""
        return self.settings.state_dir / DUCKDB_FILE

    @property
    def _mark(self) -> str:
        return "?" if self.dialect == "duckdb" else "%s"

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:
        """A connection for one unit of work. Reads carry the query time bound: PostgreSQL
        connections come from a pool with ``statement_timeout`` set; DuckDB reads are cursors
        of one read-only connection per file, reopened when a load has replaced the file,
        interrupted by a timer. Writes (loads, PostgreSQL only) have no time bound."""
        timeout = self.settings.segments.query_timeout_s
        if self.dialect == "postgres":
            import psycopg

            try:
                if write:
                    assert self.url is not None
                    with psycopg.connect(self.url) as con:
                        yield con
                else:
                    with self._pool().connection() as con:
                        yield con
            except psycopg.errors.QueryCanceled as exc:
                raise QueryTimeout(f"query cancelled after {timeout} s") from exc
            return
        assert not write, "DuckDB loads write a new file (see load)"
        cur = _duckdb_reader(self.path).cursor()
        timer = threading.Timer(timeout, cur.interrupt)
        timer.start()
        try:
            yield cur
        except duckdb.InterruptException as exc:
            raise QueryTimeout(f"query cancelled after {timeout} s") from exc
        finally:
            timer.cancel()
            cur.close()

    def _pool(self) -> Any:
        if self._pg_pool is None:
            from psycopg_pool import ConnectionPool

            ms = int(self.settings.segments.query_timeout_s * 1000)

            def configure(con: Any) -> None:
                con.execute(f"SET statement_timeout = {ms}")

            self._pg_pool = ConnectionPool(
                self.url, min_size=1, max_size=self.settings.segments.pool_size,
                kwargs={"autocommit": True}, configure=configure, open=True,
            )  # fmt: skip
        return self._pg_pool

    def close(self) -> None:
        """Close the PostgreSQL pool (DuckDB readers close when their file is replaced)."""
        if self._pg_pool is not None:
            self._pg_pool.close()
            self._pg_pool = None

    @contextmanager
    def _segments_db(self) -> Iterator[Any]:
        """Where saved segments live: the PostgreSQL database, or (DuckDB back-end) a SQLite
        file beside the DuckDB file, which API processes write while a run swaps members."""
        if self.dialect == "postgres":
            with self._connect(write=True) as con:
                self._ensure_segments(con)
                yield con
                con.commit()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.settings.state_dir / SEGMENTS_FILE, timeout=30)
        try:
            self._ensure_segments(con)
            yield con
            con.commit()
        finally:
            con.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connect() as con:
            try:
                return list(con.execute(sql, list(params)).fetchall())
            except Exception as exc:
                if _missing_table(exc):
                    raise StoreEmpty("no member table loaded: run `memberwise run`") from None
                raise

    # ------------------------------------------------------------------ loading
    def load(self, table: pd.DataFrame | pa.Table) -> int:
        """Replace the member table with ``table`` (one row per member, the member table
        contract's columns and any more) atomically. Returns the rows loaded."""
        arrow = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)  # fmt: skip
        missing = [c for c in member_table.COLUMNS if c not in arrow.column_names]
        if missing:
            raise ValueError(f"the member table lacks contract columns {missing}")
        arrow = _normalise(arrow)
        new = f"{TABLE}_{uuid.uuid4().hex[:12]}"
        if self.dialect == "duckdb":
            # a new file, then renamed over the old one: readers holding the old file keep
            # reading it until their next query sees the new one
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{new}.duckdb.tmp")
            try:
                with duckdb.connect(str(tmp)) as con:
                    con.register("incoming", arrow)
                    con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM incoming")
                    con.unregister("incoming")
                    con.execute(f"CREATE INDEX {TABLE}_id ON {TABLE} (member_id)")
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            self._load_postgres(arrow, new)
        self._kinds = None
        return arrow.num_rows

    def forget(self, member_ids: Sequence[str]) -> int:
        """Remove members at once (erasure; features.erasure keeps them out of later runs).
        PostgreSQL deletes the rows; DuckDB writes the table without them as a new file and
        swaps it in, as a load does. Returns the rows removed (0 when no table is loaded)."""
        ids = [str(m) for m in member_ids]
        if not ids:
            return 0
        if self.dialect == "postgres":
            with self._connect(write=True) as con:
                try:
                    cur = con.execute(f"DELETE FROM {TABLE} WHERE member_id = ANY(%s)", [ids])
                except Exception as exc:
                    if _missing_table(exc):
                        return 0
                    raise
                con.commit()
                return int(cur.rowcount or 0)
        if not self.path.exists():
            return 0
        marks = ", ".join("?" for _ in ids)
        with self._connect() as con:
            hit = con.execute(
                f"SELECT count(*) FROM {TABLE} WHERE member_id IN ({marks})", ids
            ).fetchone()[0]
            if not hit:
                return 0
            kept = con.execute(
                f"SELECT * FROM {TABLE} WHERE member_id NOT IN ({marks})", ids
            ).to_arrow_table()
        self.load(kept)
        return int(hit)

    def _load_postgres(self, arrow: pa.Table, new: str) -> None:
        cols = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in arrow.schema)
        with self._connect(write=True) as con:
            con.execute("SET statement_timeout = 0")  # loading is bounded by its size
            con.execute(f'CREATE TABLE "{new}" ({cols})')
            with con.cursor().copy(f'COPY "{new}" FROM STDIN (FORMAT csv)') as copy:  # fmt: skip
                for batch in arrow.to_batches(max_chunksize=100_000):  # no header lines
                    copy.write(_pg_csv(batch))
            con.execute(f'ALTER TABLE "{new}" ADD PRIMARY KEY (member_id)')
            con.execute(f'ANALYZE "{new}"')
            con.execute(f"DROP TABLE IF EXISTS {TABLE}")
            con.execute(f'ALTER TABLE "{new}" RENAME TO {TABLE}')
            self._ensure_segments(con)
            con.commit()

    def _ensure_segments(self, con: Any) -> None:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {SEGMENTS} (name TEXT NOT NULL, version INTEGER NOT "
            "NULL, predicate TEXT NOT NULL, description TEXT NOT NULL, created_at TEXT NOT "
            "NULL, member_count BIGINT NOT NULL, PRIMARY KEY (name, version))"
        )

    # ------------------------------------------------------------------ columns, predicates
    def kinds(self) -> ColumnKinds:
        """Member-table column -> kind ("number", "string", "bool", "list")."""
        if self.dialect == "duckdb":
            stamp = _identity(self.path)
            if self._kinds is not None and self._kinds[0] == stamp:
                return self._kinds[1]
            rows = self._rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position", [TABLE]
            )  # fmt: skip
            kinds = kinds_of([(str(a), str(b)) for a, b in rows])
            self._kinds = (stamp, kinds)
            return kinds
        now = time.monotonic()  # PostgreSQL: columns cached briefly (another replica may load)
        if self._kinds is not None and now - self._kinds[0] < KINDS_TTL_S:
            return self._kinds[1]
        rows = self._rows(
            "SELECT column_name, CASE WHEN data_type = 'ARRAY' THEN udt_name ELSE data_type END "
            "FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = current_schema() ORDER BY ordinal_position", [TABLE]
        )  # fmt: skip
        if not rows:
            raise StoreEmpty("no member table loaded: run `memberwise run`")
        kinds = kinds_of([(str(a), str(b)) for a, b in rows])
        self._kinds = (now, kinds)
        return kinds

    def parse(self, tree: Any) -> Expr | None:
        """A JSON predicate tree -> expression (None: every member). Raises PredicateError."""
        if tree is None or tree == {}:
            return None
        return parse_predicate(tree, self.kinds(), self.settings.segments.max_predicate_nodes)

    def _where(self, expr: Expr | None) -> tuple[str, list[Any]]:
        c = to_sql(expr, self.kinds(), self.dialect)
        return c.sql, c.params

    # ------------------------------------------------------------------ summary
    def count(self, expr: Expr | None = None) -> int:
        where, params = self._where(expr)
        return int(self._rows(f"SELECT COUNT(*) FROM {TABLE} WHERE {where}", params)[0][0])

    def summary(self, expr: Expr | None = None) -> Summary:
        """Count, breakdowns by :data:`BREAKDOWNS` and KPIs of the members ``expr`` holds for,
        in one scan: the database groups by every breakdown column at once (a few hundred
        groups, the columns being closed vocabularies) with additive sums per group, which
        are then folded into each breakdown and the totals."""
        where, params = self._where(expr)
        dims = [c for c in BREAKDOWNS if c in self.kinds()]

        def n_if(cond: str) -> str:
            return f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"

        sums = [
            "COUNT(*)", "SUM(spend)", "SUM(orders)", n_if("orders >= 1"), n_if("orders >= 2"),
            n_if("active_30d"),
            *(f"{n_if(f'retained_{d}d IS NOT NULL')}, {n_if(f'retained_{d}d')}" for d in (7, 30, 90)),
            "SUM(clv_12m)", "COUNT(clv_12m)",
        ]  # fmt: skip
        cols = ", ".join(f'"{d}"' for d in dims)
        group = f" GROUP BY {cols}" if dims else ""
        sql = f"SELECT {cols + ', ' if dims else ''}{', '.join(sums)} FROM {TABLE} WHERE {where}{group}"  # fmt: skip
        rows = self._rows(sql, params)
        nd = len(dims)
        width = len(rows[0]) - nd if rows else 14
        total = [0.0] * width
        counts: dict[str, dict[str | None, int]] = {d: {} for d in dims}
        for row in rows:
            vals = [float(v) if v is not None else 0.0 for v in row[nd:]]
            total = [a + b for a, b in zip(total, vals, strict=True)]
            for i, d in enumerate(dims):
                key = None if row[i] is None else str(row[i])
                counts[d][key] = counts[d].get(key, 0) + int(vals[0])
        n, spend, orders, buyers, repeat, active = total[:6]
        k7, r7, k30, r30, k90, r90, clv, n_clv = total[6:]

        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        kpis = Kpis(
            members=int(n), arpu=ratio(spend, n), aov=ratio(spend, orders),
            repurchase_rate=ratio(repeat, buyers), active_30d_share=ratio(active, n),
            retention_7d=ratio(r7, k7), retention_30d=ratio(r30, k30),
            retention_90d=ratio(r90, k90), mean_clv_12m=ratio(clv, n_clv),
        )  # fmt: skip
        breakdowns = {d: sorted(c.items(), key=lambda vc: (-vc[1], vc[0] or "")) for d, c in counts.items()}  # fmt: skip
        return Summary(int(n), breakdowns, kpis)

    # ------------------------------------------------------------------ pages
    def page(self, expr: Expr | None = None, cursor: str | None = None,
             limit: int | None = None, columns: Sequence[str] = PAGE_COLUMNS) -> Page:  # fmt: skip
        """Members ``expr`` holds for, by member id, after ``cursor`` (from the previous
        page's ``next_cursor``); at most ``segments.max_page_size``."""
        seg = self.settings.segments
        limit = min(limit or seg.page_size, seg.max_page_size)
        after = decode_cursor(cursor) if cursor else None
        table = self._batch(expr, after, limit + 1, columns)
        rows = table.slice(0, limit).to_pylist()
        more = table.num_rows > limit
        return Page(rows, encode_cursor(rows[-1]["member_id"]) if more and rows else None)

    def _batch(self, expr: Expr | None, after: str | None, limit: int,
               columns: Sequence[str] | None) -> pa.Table:  # fmt: skip
        kinds = self.kinds()
        where, params = self._where(expr)
        cols = "*" if columns is None else ", ".join(f'"{c}"' for c in columns if c in kinds)
        if after is not None:
            where = f"({where}) AND member_id > {self._mark}"
            params = [*params, after]
        sql = f"SELECT {cols} FROM {TABLE} WHERE {where} ORDER BY member_id LIMIT {int(limit)}"
        with self._connect() as con:
            if self.dialect == "duckdb":
                return con.sql(sql, params=params).to_arrow_table()
            cur = con.execute(sql, params)
            names = [d.name for d in cur.description]
            return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cur.fetchall()])  # fmt: skip

    def member(self, member_id: str) -> dict[str, Any] | None:
        """Every column of one member, or None."""
        sql = f"SELECT * FROM {TABLE} WHERE member_id = {self._mark}"
        with self._connect() as con:
            try:
                cur = con.execute(sql, [member_id])
                names = [d[0] for d in cur.description]
                row = cur.fetchone()
            except Exception as exc:
                if _missing_table(exc):
                    raise StoreEmpty("no member table loaded: run `memberwise run`") from None
                raise
        return dict(zip(names, row, strict=True)) if row is not None else None

    def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Members whose id contains ``text`` (case-insensitive, literal), by id."""
        pattern = "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"  # fmt: skip
        cols = ", ".join(f'"{c}"' for c in PAGE_COLUMNS if c in self.kinds())
        limit = min(limit, self.settings.segments.max_page_size)
        sql = (f"SELECT {cols} FROM {TABLE} WHERE lower(member_id) LIKE {self._mark} "
               f"ESCAPE '\\' ORDER BY member_id LIMIT {int(limit)}")  # fmt: skip
        with self._connect() as con:
            cur = con.execute(sql, [pattern])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def tag_prevalence(self) -> list[tuple[str, int]]:
        """(tag, members it holds for), most common first."""
        fn = "unnest(tags)"
        return [(str(t), int(n)) for t, n in self._rows(
            f"SELECT t, COUNT(*) AS n FROM (SELECT {fn} AS t FROM {TABLE}) x GROUP BY t ORDER BY n DESC, t")]  # fmt: skip

    # ------------------------------------------------------------------ export
    def export(self, expr: Expr | None, fmt: ExportFormat) -> Iterator[bytes]:
        """Every column of the members ``expr`` holds for (at most ``export_max_rows``), by
        member id, as CSV or Parquet bytes, batch by batch (keyset-paged, so each query is
        bounded and memory stays at one batch)."""
        seg = self.settings.segments
        left = seg.export_max_rows
        after: str | None = None
        sink = io.BytesIO()
        writer: Any = None
        first = True
        while left > 0:
            batch = self._batch(expr, after, min(seg.export_batch_rows, left), None)
            if batch.num_rows == 0 and not first:
                break
            if fmt == "csv":
                pacsv.write_csv(_flat(batch), sink, pacsv.WriteOptions(include_header=first))
            else:
                if writer is None:
                    writer = pq.ParquetWriter(sink, batch.schema)
                writer.write_table(batch)
            first = False
            yield _drain(sink)
            if batch.num_rows < min(seg.export_batch_rows, left):
                break
            left -= batch.num_rows
            after = str(batch.column("member_id")[-1].as_py())
        if writer is not None:
            writer.close()
            yield _drain(sink)

    # ------------------------------------------------------------------ lookalike
    def lookalike(self, seed: Expr, size: int) -> list[tuple[str, float]]:
        """The ``size`` members most like the seed segment, excluding it: nearest to the
        seed's centroid in the standardized space of ``segments.lookalike_features`` (each
        column centred and scaled over all members; missing values at the mean). Score
        ``1 / (1 + d / sqrt(k))`` for Euclidean distance ``d`` over ``k`` features, best first."""
        kinds = self.kinds()
        feats = [f for f in self.settings.segments.lookalike_features if kinds.get(f) == "number"]  # fmt: skip
        if not feats:
            raise ValueError("none of segments.lookalike_features is a numeric column")
        size = max(1, min(size, self.settings.segments.lookalike_max))
        where, params = self._where(seed)
        stats = ", ".join(f'AVG("{f}") AS m{i}, STDDEV_POP("{f}") AS s{i}' for i, f in enumerate(feats))  # fmt: skip

        def z(i: int, f: str) -> str:
            return f'COALESCE(("{f}" - st.m{i}) / NULLIF(st.s{i}, 0), 0)'

        centre = ", ".join(f"AVG({z(i, f)}) AS c{i}" for i, f in enumerate(feats))
        dist = " + ".join(f"POWER({z(i, f)} - COALESCE(sd.c{i}, 0), 2)" for i, f in enumerate(feats))  # fmt: skip
        sql = (
            f"WITH st AS (SELECT {stats} FROM {TABLE}), "
            f"sd AS (SELECT {centre}, COUNT(*) AS n FROM {TABLE}, st WHERE {where}) "
            f"SELECT member_id, SQRT({dist}) AS d FROM {TABLE}, st, sd "
            f"WHERE sd.n > 0 AND NOT ({where}) ORDER BY d, member_id LIMIT {int(size)}"
        )
        rows = self._rows(sql, [*params, *params])
        k = math.sqrt(len(feats))
        return [(str(m), 1.0 / (1.0 + float(d) / k)) for m, d in rows]

    # ------------------------------------------------------------------ saved segments
    def save_segment(self, name: str, tree: Any, description: str = "") -> SavedSegment:
        """Save ``tree`` (a predicate, checked first) under ``name`` as its next version."""
        if not SEGMENT_NAME.match(name):
            raise ValueError(f"segment name {name!r}: 1-80 letters, digits, space, _ . -")
        expr = self.parse(tree)
        count = self.count(expr)
        m = self._mark
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._segments_db() as con:
            row = con.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SEGMENTS} WHERE name = {m}", [name]).fetchone()  # fmt: skip
            version = int(row[0]) + 1
            con.execute(
                f"INSERT INTO {SEGMENTS} VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
                [name, version, json.dumps(tree), description, created, count],
            )
        return SavedSegment(name, version, tree, description, created, count)

    def segments(self) -> list[SavedSegment]:
        """The latest version of every saved segment, by name."""
        return [s for s in self._segment_rows(None, None) if s is not None]

    def segment(self, name: str, version: int | None = None) -> SavedSegment:
        """A saved segment (its latest version unless ``version``). Raises SegmentNotFound."""
        found = self._segment_rows(name, version)
        if not found:
            raise SegmentNotFound(f"no saved segment {name!r}" + (f" version {version}" if version else ""))  # fmt: skip
        return found[0]

    def versions(self, name: str) -> list[SavedSegment]:
        return self._segment_rows(name, None, every=True)

    def delete_segment(self, name: str) -> int:
        """Delete every version of ``name``; returns how many there were."""
        n = len(self.versions(name))
        if not n:
            raise SegmentNotFound(f"no saved segment {name!r}")
        with self._segments_db() as con:
            con.execute(f"DELETE FROM {SEGMENTS} WHERE name = {self._mark}", [name])
        return n

    def _segment_rows(self, name: str | None, version: int | None,
                      every: bool = False) -> list[SavedSegment]:  # fmt: skip
        m = self._mark
        conds, params = [], []
        if name is not None:
            conds.append(f"name = {m}")
            params.append(name)
        if version is not None:
            conds.append(f"version = {m}")
            params.append(version)
        elif not every:
            conds.append(f"version = (SELECT MAX(version) FROM {SEGMENTS} s2 WHERE s2.name = {SEGMENTS}.name)")  # fmt: skip
        where = " AND ".join(conds) or "1 = 1"
        with self._segments_db() as con:
            rows = con.execute(
                f"SELECT name, version, predicate, description, created_at, member_count "
                f"FROM {SEGMENTS} WHERE {where} ORDER BY name, version DESC", params
            ).fetchall()  # fmt: skip
        return [SavedSegment(r[0], int(r[1]), json.loads(r[2]), r[3], r[4], int(r[5])) for r in rows]  # fmt: skip


# --------------------------------------------------------------------------- helpers
_readers: dict[Path, tuple[tuple[int, int], duckdb.DuckDBPyConnection]] = {}
_readers_lock = threading.Lock()


def _identity(path: Path) -> tuple[int, int]:
    """(inode, mtime) of the DuckDB file: changes when a load replaces it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StoreEmpty("no member table loaded: run `memberwise run`") from None
    return st.st_ino, st.st_mtime_ns


def _duckdb_reader(path: Path) -> duckdb.DuckDBPyConnection:
    """The process's read-only connection to the DuckDB file at ``path`` (reopened when the
    file was replaced since)."""
    ident = _identity(path)
    with _readers_lock:
        known = _readers.get(path)
        if known is not None and known[0] == ident:
            return known[1]
        if known is not None:  # DuckDB shares one instance per path while any connection lives
            known[1].close()
        con = duckdb.connect(str(path), read_only=True)
        _readers[path] = (ident, con)
    return con


# a cursor is the hex of the last member id's UTF-8 bytes: every string of this pattern
# names a place in the member id order, so the API schema can state the whole contract
CURSOR_PATTERN = r"^(?:[0-9a-f]{2})*$"


def encode_cursor(member_id: str) -> str:
    return member_id.encode().hex()


def decode_cursor(cursor: str) -> str:
    """The member id a cursor points after (bytes that are not UTF-8 decode to U+FFFD, a
    place in the order like any other). Raises ValueError for text outside
    :data:`CURSOR_PATTERN`."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError(f"cursor {cursor!r} is not one this API gave")
    return bytes.fromhex(cursor).decode(errors="replace")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return ("does not exist" in text or "not found" in text) and (TABLE in text or SEGMENTS in text)  # fmt: skip


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def _normalise(arrow: pa.Table) -> pa.Table:
    """Types both databases hold: dictionary columns decoded, large strings plain, list
    columns lists of strings, timestamps without zone."""
    cols = []
    for f, col in zip(arrow.schema, arrow.columns, strict=True):
        t = f.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = t.value_type
        if pa.types.is_large_string(t):
            col = col.cast(pa.string())
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            col = col.cast(pa.list_(pa.string()))
        elif pa.types.is_null(t):
            col = col.cast(pa.string())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=arrow.column_names)


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "DOUBLE PRECISION"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_list(t):
        return "TEXT[]"
    return "TEXT"


def _pg_array(values: Any) -> str | None:
    if values is None:
        return None
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"  # fmt: skip


def _pg_csv(batch: pa.RecordBatch) -> bytes:
    cols = []
    for f, col in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_list(f.type):
            col = pa.array([_pg_array(v) for v in col.to_pylist()], pa.string())
        elif pa.types.is_floating(f.type):
            col = pa.array([None if v is None or math.isnan(v) else v for v in col.to_pylist()], f.type)  # fmt: skip
        cols.append(col)
    sink = io.BytesIO()
    table = pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def _flat(table: pa.Table) -> pa.Table:
    """List columns joined with commas (CSV has no lists; Parquet keeps them)."""
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            col = pa.array([None if v is None else ",".join(map(str, v)) for v in col.to_pylist()], pa.string())  # fmt: skip
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def from_settings(settings: MemberwiseSettings) -> MemberStore:
    """The member store ``settings`` point to."""
    return MemberStore(settings)


def rows_for_json(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with dates as ISO strings and NaN as None."""
    out = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif hasattr(v, "isoformat"):
                v = v.isoformat()
            d[k] = v
        out.append(d)
    return out
