"""The tag SQL on Spark (local mode) gives the same tags as on DuckDB, and the DuckDB-dialect
constructs the tag queries use come out as their Spark meaning."""

from __future__ import annotations

import os
import shutil
from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.engines import open_engine, to_spark
from features.tags import compute_tags
from pipelines.ingest import load_shop
from pipelines.synthetic import generate

AS_OF = date(2025, 12, 31)


def test_to_spark_keeps_exact_meanings():
    sql = to_spark(
        "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS q, AVG(1.0) AS a, "
        "isodow(ts) AS d, timezone('Europe/Paris', ts::TIMESTAMPTZ) AS lt, 86400e6 AS e FROM t"
    ).lower()
    assert "percentile(v, 0.9)" in sql  # exact, not percentile_approx
    assert "approx" not in sql
    assert "avg(cast(1.0 as double))" in sql  # a double, as DuckDB computes it
    assert "weekday(ts) + 1" in sql  # ISO day of week, Monday = 1
    assert "from_utc_timestamp(ts, 'europe/paris')" in sql


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown tag engine"):
        open_engine("oracle")  # type: ignore[arg-type]


def _java() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


@pytest.mark.slow
def test_spark_tags_match_duckdb_tags(tmp_path):
    pytest.importorskip("pyspark", reason="pyspark is not installed (the 'spark' extra)")
    if not _java():
        if os.environ.get("CI") == "true":
            pytest.fail("Spark needs Java 17 and CI must have it")
        pytest.skip("Spark needs Java 17, not found on this machine")
    generate(tmp_path, members=400, seed=3)
    shop = load_shop(tmp_path, AS_OF)
    for as_of in (AS_OF, date(2025, 6, 30)):
        duck = compute_tags(shop.tables, as_of, engine="duckdb")
        spark = compute_tags(shop.tables, as_of, engine="spark")
        assert len(duck) > 300 and duck["frequency"].gt(0).sum() > 100
        assert list(spark.columns) == list(duck.columns)
        assert spark["member_id"].tolist() == duck["member_id"].tolist()
        for col in duck.columns:
            if pd.api.types.is_float_dtype(duck[col]):  # sums may add in another order
                np.testing.assert_allclose(
                    spark[col].to_numpy(), duck[col].to_numpy(), rtol=1e-12, atol=0, err_msg=col
                )
            else:  # strings, tags, booleans, integers, timestamps: exactly
                pd.testing.assert_series_equal(spark[col], duck[col], obj=col)
