"""Where the tag SQL runs: DuckDB in the process, or Spark (local mode or a cluster).

The tag queries (features/tags.py) are written once, in DuckDB's dialect. :class:`DuckDBEngine`
runs them as they are; :class:`SparkEngine` transpiles them to Spark SQL with sqlglot
(:func:`to_spark`) and runs them on a Spark session, so the step past one machine is the
setting ``stores.tag_engine = "spark"`` (and ``stores.spark_master``), not a second copy of
the tag logic. Both engines see naive UTC timestamps (Spark's ``TIMESTAMP_NTZ``, session time
zone UTC) and return pandas frames.

The queries keep to what both engines mean the same way: doubles where a value is
fractional (:func:`to_spark` makes the decimal literals DuckDB treats as exact doubles),
microsecond differences with ``date_diff('microsecond', a, b)``, exact percentiles
(``percentile_cont(q) WITHIN GROUP (ORDER BY x)``), and ties broken explicitly
(``ROW_NUMBER`` over a full ordering) so neither engine picks a row at random.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, Protocol

import pandas as pd

EngineName = Literal["duckdb", "spark"]


class TagEngine(Protocol):
    """A SQL engine the tag queries run on: tables in, pandas frames out."""

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Make ``frame`` queryable as ``name``."""

    def create(self, name: str, sql: str) -> None:
        """Keep the result of ``sql`` (DuckDB dialect) as the table ``name``."""

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` (DuckDB dialect) and return its rows."""

    def close(self) -> None:
        """Release what the engine holds for these queries."""


class DuckDBEngine:
    """An in-memory DuckDB connection (UTC)."""

    def __init__(self) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self.con.register(name, frame)

    def create(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def close(self) -> None:
        self.con.close()


def _spark_transform(node: Any) -> Any:
    """Rewrite the few DuckDB constructs sqlglot does not map to their Spark equivalent."""
    from sqlglot import exp

    if isinstance(node, exp.Literal) and not node.is_string:
        text = str(node.this)
        if "." in text and "e" not in text.lower():  # DuckDB: exact decimal; Spark: DECIMAL
            return exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE"))
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        # sqlglot writes Spark's approximate percentile; Spark's percentile() is exact
        column = node.expression.expressions[0].this
        return exp.Anonymous(this="percentile", expressions=[column.copy(), node.this.this.copy()])
    if isinstance(node, exp.DayOfWeekIso):  # ISO day of week, Monday = 1
        return exp.Add(
            this=exp.Anonymous(this="weekday", expressions=[node.this.copy()]),
            expression=exp.Literal.number(1),
        )
    if (
        isinstance(node, exp.Anonymous)
        and str(node.this).lower() == "timezone"
        and len(node.expressions) == 2
    ):  # DuckDB timezone(zone, ts::TIMESTAMPTZ): the UTC instant as wall time in the zone
        zone, ts = node.expressions
        if isinstance(ts, exp.Cast):
            ts = ts.this
        return exp.Anonymous(this="from_utc_timestamp", expressions=[ts.copy(), zone.copy()])
    return node


def to_spark(sql: str) -> str:
    """``sql`` in DuckDB's dialect as Spark SQL (one statement)."""
    import sqlglot

    tree = sqlglot.parse_one(sql, read="duckdb")
    return tree.transform(_spark_transform).sql(dialect="spark")


@lru_cache(maxsize=4)
def spark_session(master: str, shuffle_partitions: int = 8) -> Any:
    """The process's Spark session for the tag queries (naive UTC timestamps, no UI)."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("memberwise-tags")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


class SparkEngine:
    """Spark SQL through a session on ``master`` (``local[*]``, ``spark://host:7077``, ...).

    Tables registered from pandas become temporary views; ``create`` caches its result so
    the later queries reuse it."""

    def __init__(self, master: str = "local[*]", shuffle_partitions: int = 8) -> None:
        self.spark = spark_session(master, shuffle_partitions)
        self.views: list[str] = []

    def register(self, name: str, frame: pd.DataFrame) -> None:
        frame = frame.copy()
        for col in frame.columns:  # Arrow carries pandas' nullable strings as plain strings
            if isinstance(frame[col].dtype, pd.StringDtype | pd.CategoricalDtype):
                frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
        schema = None
        if frame.empty:  # nothing to infer types from: say them
            schema = ", ".join(f"`{c}` {_spark_type(frame[c].dtype)}" for c in frame.columns)
        self.spark.createDataFrame(frame, schema=schema).createOrReplaceTempView(name)
        self.views.append(name)

    def create(self, name: str, sql: str) -> None:
        self.spark.sql(to_spark(sql)).cache().createOrReplaceTempView(name)
        self.views.append(name)

    def query(self, sql: str) -> pd.DataFrame:
        df = self.spark.sql(to_spark(sql)).toPandas()
        for col in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[col]):
                df[col] = df[col].astype("datetime64[us]")
        return df

    def close(self) -> None:
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.spark.catalog.clearCache()
        self.views.clear()


def _spark_type(dtype: Any) -> str:
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "TIMESTAMP_NTZ"
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        return "BIGINT"
    if pd.api.types.is_float_dtype(dtype):
        return "DOUBLE"
    return "STRING"


def open_engine(
    name: EngineName = "duckdb", spark_master: str = "local[*]", shuffle_partitions: int = 8
) -> TagEngine:
    """A fresh engine of kind ``name`` (settings ``stores.tag_engine``, ``stores.spark_master``,
    ``stores.spark_shuffle_partitions``)."""
    if name == "spark":
        return SparkEngine(spark_master, shuffle_partitions)
    if name == "duckdb":
        return DuckDBEngine()
    raise ValueError(f"unknown tag engine {name!r}: use 'duckdb' or 'spark'")
