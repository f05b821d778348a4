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


def _apply(settings, as_of=AS_OF):
    tags = compute_tags(_world(), as_of)
    path = repo.snapshot_path(settings, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags.to_parquet(path, index=False)
    repo.write_repo(settings)
    store = repo.feature_store(settings)
    repo.apply(store)
    repo.materialize(store, as_of)
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


def _recency(store) -> float:
    got = store.get_online_features(
        features=[f"{repo.TAGS_VIEW}:recency_days"], entity_rows=[{"member_id": "a"}]
    ).to_dict()
    return got["recency_days"][0]


def _recency_in_snapshot(settings, as_of) -> float:
    snap = pd.read_parquet(repo.snapshot_path(settings, as_of)).set_index("member_id")
    return float(snap.loc["a", "recency_days"])


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
        # Redis keeps the newer of two writes; going back to an earlier as-of date must
        # still leave that date's values online (the view's rows are rebuilt).
        later = date(2024, 9, 30)
        assert _recency(_apply(settings, later)) == _recency_in_snapshot(settings, later)
        store = _apply(settings)
        _check(store)
        assert _recency(store) == _recency_in_snapshot(settings, AS_OF)
    finally:
        store.teardown()
