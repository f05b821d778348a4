"""Registration and the champion gate, on SQLite and on a real PostgreSQL backend."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from tests.conftest import REPO, require_service
from training.registry import log_and_register, setup_tracking
from training.result import TrainResult


def _result(shipped_auc: float, baseline_auc: float) -> TrainResult:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"recency_days": rng.uniform(0, 100, 200), "frequency": rng.poisson(3, 200).astype(float)}
    )
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


# ---------------------------------------------------------------- every model, end to end
FRESH_PROCESS = """
import json, sys
import mlflow, numpy as np, pandas as pd

uri, inputs = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)
out = {}
for name, path in inputs.items():
    model = mlflow.pyfunc.load_model(f"models:/memberwise-{name}@champion")
    pred = model.predict(pd.read_json(path, orient="split", dtype=False))
    if isinstance(pred, pd.DataFrame):
        out[name] = {"columns": list(pred.columns), "rows": len(pred),
                     "first": pred.iloc[0].astype(str).tolist()}
    else:
        pred = np.asarray(pred)
        out[name] = {"shape": list(pred.shape), "row_sums": pred.sum(axis=1).tolist()}
import models
out["models_package"] = models.__file__
print(json.dumps(out))
"""


def _churn_frame(n: int = 240) -> tuple[pd.DataFrame, np.ndarray]:
    """Members whose churn is known from recency: the purchase tags BG/NBD reads, plus
    frequency."""
    rng = np.random.default_rng(1)
    first = rng.uniform(30, 700, n)
    recency = first * rng.uniform(0, 1, n)
    days = rng.integers(1, 12, n).astype(float)
    X = pd.DataFrame({"recency_days": recency, "first_purchase_days": first,
                      "purchase_days": days, "frequency": days})  # fmt: skip
    return X, (recency > 200).astype(int)


def _every_model() -> list[TrainResult]:
    from models.churn import ChurnConfig, build_churn_baseline, build_churn_model
    from models.coupon import NoCouponPolicy
    from models.send_time import GlobalSendTimeModel
    from tests.models.test_pyfunc import coupon_world, products_world, send_time_world

    hybrid, popular = products_world()
    X, y = _churn_frame()
    churn = build_churn_model(ChurnConfig(cv=2, max_iter=20, min_samples_leaf=5)).fit(X, y)
    send_time = send_time_world()
    world = {"member_ids": send_time._members, "channels": np.array(["email"] * 30)}
    stamps = np.datetime64("2025-06-01T19:00", "us") + np.arange(30).astype("timedelta64[h]")
    global_hour = GlobalSendTimeModel().fit(world["member_ids"], world["channels"], stamps)
    arm = np.array(["", "A", "B"] * 20)
    return [
        TrainResult(
            "products",
            hybrid,
            popular,
            {"shipped": {"ndcg@10": 0.3}, "baseline": {"ndcg@10": 0.1}},
            "ndcg@10",
        ),
        TrainResult(
            "churn",
            churn,
            build_churn_baseline().fit(X, y),
            {"shipped": {"roc_auc": 0.9}, "baseline": {"roc_auc": 0.7}},
            "roc_auc",
            flavor="sklearn",
            input_example=X.head(3),
            evaluation={
                "y_true": y,
                "shipped": churn.predict_proba(X)[:, 1],
                "baseline": np.full(len(y), y.mean()),
            },
        ),
        TrainResult(
            "coupon",
            coupon_world(),
            NoCouponPolicy(),
            {"shipped": {"incremental_margin": 2.0}, "baseline": {"incremental_margin": 0.0}},
            "incremental_margin",
            evaluation={"arm": arm, "net_margin": (arm == "A") * 5.0 + np.arange(60)},
        ),
        TrainResult(
            "send_time",
            send_time,
            global_hour,
            {"shipped": {"hit_rate_1h": 0.4}, "baseline": {"hit_rate_1h": 0.2}},
            "hit_rate_1h",
        ),
        TrainResult(
            "similar",
            _similar(0.5),
            _similar(0.0),
            {"shipped": {"hit_rate@10": 0.5}, "baseline": {"hit_rate@10": 0.4}},
            "hit_rate@10",
        ),
    ]


def _similar(power: float):
    from models.similar import NeighboursConfig, ProductNeighbours, SimilarProducts

    rows = np.array(["o1", "o1", "o2", "o2", "o3", "o3", "o3"])
    prods = np.array(["p1", "p2", "p1", "p2", "p1", "p3", "p2"])
    cfg = NeighboursConfig(popularity_power=power)
    return SimilarProducts(
        ProductNeighbours(cfg).fit(rows, prods), ProductNeighbours(cfg).fit(rows, prods)
    )


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """All four models and their baselines registered through ``log_and_register`` into a
    temporary SQLite home, with everything MLflow logged and warned while doing it."""
    import logging
    import warnings

    import mlflow

    root = tmp_path_factory.mktemp("mlflow-home")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    setup_tracking(uri, (root / "artifacts").as_uri())

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                self.messages.append(record.getMessage())

    collect = Collect()
    logging.getLogger("mlflow").addHandler(collect)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = _every_model()
            regs = {r.name: log_and_register(r, "2025-06-30") for r in results}
    finally:
        logging.getLogger("mlflow").removeHandler(collect)
    said = collect.messages + [str(w.message) for w in caught]
    yield SimpleNamespace(uri=uri, root=root, regs=regs, said=said, results=results)
    mlflow.set_tracking_uri(None)


def test_every_champion_loads_and_predicts_in_a_fresh_process(registered, tmp_path):
    inputs = {
        "products": pd.DataFrame({"member_id": ["m1", "m2", "someone-new"]}),
        "churn": _churn_frame()[0].head(4),
        "coupon": pd.DataFrame(
            {
                "member_id": ["a", "b"],
                "price_sensitive": [1.0, np.nan],
                "tenure_days": [10.0, 500.0],
            }
        ),
        "send_time": pd.DataFrame({"member_id": ["m1", "x"], "channel": [None, "sms"]}),
        "similar": pd.DataFrame({"product_id": ["p1", "unknown"]}),
    }
    paths = {}
    for name, frame in inputs.items():
        paths[name] = str(tmp_path / f"{name}.json")
        frame.to_json(paths[name], orient="split", index=False)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, registered.uri, json.dumps(paths)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["products"]["columns"] == ["member_id", "product_ids", "scores", "reasons"]
    assert out["products"]["rows"] == 3 and out["products"]["first"][0] == "m1"
    assert out["coupon"]["columns"] == [
        "member_id", "coupon_id", "expected_incremental_margin", "reason"
    ]  # fmt: skip
    assert out["coupon"]["rows"] == 2 and out["coupon"]["first"][1] == "A"
    assert out["send_time"]["columns"][:4] == ["member_id", "channel", "hour_of_week", "confidence"]
    assert out["send_time"]["rows"] == 2
    assert out["similar"]["columns"] == ["product_id", "bought_together", "similar"]
    assert out["similar"]["rows"] == 2 and out["similar"]["first"][1].startswith("['p2'")
    assert out["churn"]["shape"] == [4, 2]  # P(stays), P(churns) per member
    np.testing.assert_allclose(out["churn"]["row_sums"], 1.0)
    # the model's own copy of the code was imported, not this checkout
    assert not out["models_package"].startswith(str(REPO)), out["models_package"]


def test_models_need_only_installed_packages(registered, tmp_path):
    """No registered model asks for a package that is not installed here (nor for this
    project itself, which no index has: its code travels with the model)."""
    from importlib import metadata

    import mlflow
    from mlflow import MlflowClient
    from packaging.requirements import Requirement

    client = MlflowClient()
    seen = 0
    for name in registered.regs:
        for mv in client.search_model_versions(f"name = 'memberwise-{name}'"):
            folder = mlflow.artifacts.download_artifacts(
                f"models:/memberwise-{name}/{mv.version}",
                dst_path=str(tmp_path / name / str(mv.version)),
            )
            text = (Path(folder) / "requirements.txt").read_text()
            reqs = [Requirement(line) for line in text.splitlines() if line.strip()]
            assert reqs, f"{name} v{mv.version} has an empty requirements.txt"
            for req in reqs:
                assert req.name != "memberwise"
                installed = metadata.version(req.name)  # raises when not installed
                assert not req.specifier or req.specifier.contains(installed), (name, req)
            assert (Path(folder) / "code" / "models" / "pyfunc.py").exists()
            assert not list(Path(folder).rglob("*.pkl")), "a registered model holds a pickle"
            seen += 1
    assert seen == 10  # five models, each shipped model and its baseline


def test_runs_log_figures_and_the_feature_service(registered):
    from mlflow import MlflowClient

    from features import repo

    client = MlflowClient()
    for name, reg in registered.regs.items():
        pngs = [f.path for f in client.list_artifacts(reg.run_id, "plots")]
        assert "plots/metrics.png" in pngs and all(p.endswith(".png") for p in pngs)
        assert len(pngs) == (1 if name in ("products", "similar") else 2), pngs
        tags = client.get_model_version("memberwise-" + name, reg.champion_version).tags
        service = tags.get("feast.feature_service")
        expected = {"churn": repo.CHURN_SERVICE, "coupon": repo.COUPON_SERVICE,
                    "send_time": repo.SEND_TIME_SERVICE}.get(name)  # fmt: skip
        assert service == expected, (name, tags)
        if expected:
            assert client.get_run(reg.run_id).data.params["feature_service"] == expected


def test_logging_is_quiet(registered):
    noisy = ("CloudPickle", "pip version", "Failed to", "untrusted")
    assert not [m for m in registered.said if any(n in m for n in noisy)], registered.said


def test_load_model_returns_the_fast_objects(registered):
    from models.churn import BetaGeoFeatures  # noqa: F401  (a trusted skops type)
    from models.products import HybridRecommender
    from models.registry import load_champions

    champions = load_champions(registered.uri)
    assert isinstance(champions.products, HybridRecommender)
    assert hasattr(champions.churn, "predict_proba")
    assert type(champions.coupon).__name__ == "CouponPolicy"
    assert type(champions.send_time).__name__ == "SendTimeModel"
    assert champions.roles == dict.fromkeys(champions.roles, "model")
