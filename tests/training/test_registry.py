"""Registration and the champion gate, on SQLite and on a real PostgreSQL backend."""

from uuid import uuid4

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from tests.conftest import require_service
from training.registry import log_and_register, setup_tracking
from training.result import TrainResult


def _result(shipped_auc: float, baseline_auc: float) -> TrainResult:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"recency_days": rng.uniform(0, 100, 200), "frequency": rng.poisson(3, 200)})
    y = (X["recency_days"] > 50).astype(int).to_numpy()
    return TrainResult(
        name="churn",
        shipped=LogisticRegression().fit(X, y),
        baseline=DummyClassifier(strategy="prior").fit(X, y),
        metrics={"shipped": {"roc_auc": shipped_auc}, "baseline": {"roc_auc": baseline_auc}},
        primary="roc_auc",
        flavor="sklearn",
        params={"C": 1.0},
        input_example=X.head(3),
    )


def _gate_round_trip(tracking_uri: str, artifact_root: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    setup_tracking(tracking_uri, artifact_root)
    first = log_and_register(_result(0.9, 0.6), "2024-01-01")
    assert first.champion_role == "model" and first.champion_version == first.shipped_version
    second = log_and_register(_result(0.5, 0.6), "2024-02-01")  # a weak model stays out
    assert second.champion_role == "baseline"
    client = MlflowClient()
    champ = client.get_model_version_by_alias("memberwise-churn", "champion")
    assert str(champ.version) == second.baseline_version and champ.tags["role"] == "baseline"
    chall = client.get_model_version_by_alias("memberwise-churn", "challenger")
    assert str(chall.version) == second.shipped_version
    model = mlflow.sklearn.load_model("models:/memberwise-churn@champion")
    assert isinstance(model, DummyClassifier)
    run = client.get_run(second.run_id)
    assert run.data.metrics["shipped.roc_auc"] == 0.5
    assert run.data.metrics["shipped_beats_baseline"] == 0.0


def test_champion_gate_on_sqlite(tmp_path):
    _gate_round_trip(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri())


@pytest.mark.services
def test_champion_gate_on_postgres(tmp_path):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    db = f"memberwise_test_{uuid4().hex[:10]}"
    admin = psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {db}")
    try:
        _gate_round_trip(
            f"postgresql://postgres@127.0.0.1:5432/{db}", (tmp_path / "artifacts").as_uri()
        )
    finally:
        import mlflow

        mlflow.set_tracking_uri(None)
        from sqlalchemy import create_engine  # drop pooled connections before DROP DATABASE

        create_engine(f"postgresql://postgres@127.0.0.1:5432/{db}").dispose()
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
