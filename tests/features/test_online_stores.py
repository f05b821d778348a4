"""The Feast repo applied and materialized into the real online stores."""

from datetime import date
from uuid import uuid4

import pandas as pd
import pytest

from features import repo
from features.settings import MemberwiseSettings
from features.tags import compute_tags
from tests.conftest import require_service

AS_OF = date(2024, 6, 30)


def _world():
    ol = pd.DataFrame({
        "order_id": ["o1", "o2", "o3"], "member_id": ["a", "a", "b"],
        "ts": pd.to_datetime(["2024-06-01 10:00", "2024-06-20 10:00", "2024-01-01 10:00"]),
        "product_id": ["p1", "p2", "p1"], "quantity": [1.0, 1.0, 1.0],
        "unit_price": [10.0, 20.0, 5.0],
    })  # fmt: skip
    return {"order_lines": ol}


def _apply(settings):
    tags = compute_tags(_world(), AS_OF)
    path = repo.tags_source_path(settings)
    path.mkdir(parents=True, exist_ok=True)
    tags.to_parquet(path / f"as_of={AS_OF}.parquet", index=False)
    store = repo.feature_store(settings)
    store.apply(repo.definitions(settings))
    store.materialize(
        start_date=pd.Timestamp("2000-01-01", tz="UTC").to_pydatetime(),
        end_date=pd.Timestamp("2024-07-01", tz="UTC").to_pydatetime(),
    )
    return store


def _check(store):
    svc = store.get_feature_service(repo.COUPON_SERVICE)
    got = store.get_online_features(
        features=svc, entity_rows=[{"member_id": "a"}, {"member_id": "nobody"}]
    ).to_dict()
    assert got["frequency"] == [2.0, None]
    assert got["monetary"] == [30.0, None]
    hist = store.get_historical_features(
        entity_df=pd.DataFrame({"member_id": ["a", "b"],
                                "event_timestamp": pd.to_datetime(["2024-07-01"] * 2, utc=True)}),
        features=store.get_feature_service(repo.CHURN_SERVICE),
    ).to_df().set_index("member_id")  # fmt: skip
    assert hist.loc["b", "frequency"] == 1.0
    assert set(repo.CHURN_FEATURES) <= set(hist.columns)


def test_sqlite_online_store_serves_the_latest_snapshot(tmp_path):
    store = _apply(MemberwiseSettings(home=tmp_path))
    _check(store)
    assert (tmp_path / "feast" / "feature_store.yaml").exists()


@pytest.mark.services
def test_redis_online_store(tmp_path):
    require_service("Redis", "127.0.0.1", 6379)
    settings = MemberwiseSettings(
        home=tmp_path,
        stores={"online_store": "redis", "feast_project": f"mw_test_{uuid4().hex[:8]}"},
    )
    store = _apply(settings)
    try:
        _check(store)
    finally:
        store.teardown()
