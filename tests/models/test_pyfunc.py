"""The MLflow wrapper, logged from code: log into a temporary SQLite tracking store, load
back, predict, and unwrap the fast object that serving uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models import pyfunc
from models.coupon import CouponConfig, CouponPolicy, NoCouponPolicy
from models.products import HybridConfig, HybridRecommender, PopularityRecommender
from models.send_time import GlobalSendTimeModel, SendTimeModel

pytestmark = pytest.mark.filterwarnings(
    "ignore:OpenBLAS is configured:RuntimeWarning",
    "ignore:Hint. Inferred schema contains integer:UserWarning",
)

AS_OF = np.datetime64("2025-06-30", "us")
FEATURES = ["price_sensitive", "tenure_days"]


def products_world() -> tuple[HybridRecommender, PopularityRecommender]:
    rng = np.random.default_rng(0)
    m = np.array([f"m{i}" for i in rng.integers(0, 40, 600)])
    group = np.array([int(x[1:]) % 2 for x in m])
    p = np.array([f"{'AB'[g]}{k}" for g, k in zip(group, rng.integers(0, 8, 600), strict=True)])
    ts = AS_OF - rng.integers(1, 200, 600).astype("timedelta64[D]")
    q = np.ones(600)
    fit = {"member_ids": m, "product_ids": p, "ts": ts, "quantity": q, "as_of": AS_OF}
    hybrid = HybridRecommender(
        HybridConfig(factors=4, iterations=5, repeat_min_buyers=3, num_threads=1)
    )
    return hybrid.fit(**fit), PopularityRecommender().fit(**fit)


def coupon_world() -> CouponPolicy:
    rng = np.random.default_rng(0)
    n = 600
    ps, tenure = (rng.random(n) < 0.5).astype(float), rng.uniform(0, 1000, n)
    arm = rng.choice(np.array(["", "A", "B"]), n)
    y = np.where(ps == 1, 2.0, 20.0) + np.where(arm == "A", 12 * ps - 4, 0) - 10 * (arm == "B")
    policy = CouponPolicy(CouponConfig())
    return policy.fit(np.column_stack([ps, tenure]), arm, y + rng.normal(0, 1, n), FEATURES)


def send_time_world() -> SendTimeModel:
    rng = np.random.default_rng(0)
    m = np.array([f"m{i}" for i in rng.integers(0, 30, 500)])
    ch = rng.choice(np.array(["email", "sms", "web"]), 500)
    ts = AS_OF - (rng.random(500) * 90 * 86400e6).astype("timedelta64[us]")
    tz = {f"m{i}": ["UTC", "America/New_York", "Asia/Tokyo"][i % 3] for i in range(30)}
    seg = {f"m{i}": "loyal" if i % 2 else "new" for i in range(30)}
    return SendTimeModel().fit(m, ch, ts, tz, seg)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One SQLite tracking store for the module (its first initialisation is slow)."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.create_experiment("models-pyfunc", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    yield root
    mlflow.set_tracking_uri(previous)


def log(model, tmp_path, example: pd.DataFrame, **kw):
    """Save ``model`` and log it as a model from code, as the trainer does."""
    import mlflow

    path = tmp_path / "model.npz"
    model.save(path)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(pyfunc.CODE),
        artifacts={pyfunc.ARTIFACT: str(path)},
        model_config={"family": pyfunc.family_of(model)},
        input_example=example,
        **kw,
    )


def log_and_load(tracking, model, tmp_path, example: pd.DataFrame, **kw):
    """Log ``model`` and load it back through MLflow."""
    import mlflow

    return mlflow.pyfunc.load_model(log(model, tmp_path, example, **kw).model_uri)


def context(path, family: str) -> SimpleNamespace:
    """What MLflow hands ``load_context``."""
    return SimpleNamespace(artifacts={"model": str(path)}, model_config={"family": family})


def test_products_wrapper(tracking, tmp_path):
    from mlflow.models import infer_signature

    hybrid, _ = products_world()
    members = ["m1", "m2", "m3", "someone-new"]
    example = pyfunc.input_example(hybrid)
    out = pyfunc.predict_frame(hybrid, example, pyfunc.params_of(hybrid))
    sig = infer_signature(example, out, params=pyfunc.params_of(hybrid))
    loaded = log_and_load(tracking, hybrid, tmp_path, example, signature=sig)
    out = loaded.predict(pd.DataFrame({"member_id": members}), params={"n": 3})
    assert list(out.columns) == ["member_id", "product_ids", "scores", "reasons"]
    expected = hybrid.recommend_many(members, n=3)
    assert [list(x) for x in out["product_ids"]] == [[p for p, _, _ in r] for r in expected]
    assert [list(x) for x in out["reasons"]] == [[w for _, _, w in r] for r in expected]
    fast = loaded.unwrap_python_model().model
    assert isinstance(fast, HybridRecommender)
    assert fast.recommend_many(members, n=5) == hybrid.recommend_many(members, n=5)
    assert fast.known_member("m1") and not fast.known_member("someone-new")


def test_coupon_wrapper(tracking, tmp_path):
    policy = coupon_world()
    loaded = log_and_load(tracking, policy, tmp_path, pyfunc.input_example(policy))
    frame = pd.DataFrame(
        {
            "member_id": ["a", "b", "c"],
            "price_sensitive": [1.0, 0.0, np.nan],
            "tenure_days": [10.0, 500.0, 20.0],
        }
    )
    out = loaded.predict(frame)
    assert list(out.columns) == ["member_id", "coupon_id", "expected_incremental_margin", "reason"]
    assert out["coupon_id"].tolist()[:2] == ["A", None]
    X = frame[FEATURES].to_numpy(float)
    fast = loaded.unwrap_python_model().model
    assert isinstance(fast, CouponPolicy)
    assert fast.decide_many(X) == policy.decide_many(X)
    assert [fast.decide(x) for x in X] == [policy.decide(x) for x in X]
    margins = [m for _, m, _ in policy.decide_many(X)]
    np.testing.assert_allclose(out["expected_incremental_margin"], margins)


def test_send_time_wrapper(tracking, tmp_path):
    model = send_time_world()
    loaded = log_and_load(tracking, model, tmp_path, pyfunc.input_example(model))
    frame = pd.DataFrame(
        {
            "member_id": ["m1", "m2", "someone-new"],
            "channel": [None, "push", None],
            "segment": [None, None, "loyal"],
            "timezone": [None, None, "Europe/Paris"],
        }
    )
    out = loaded.predict(frame)
    assert list(out.columns)[:4] == ["member_id", "channel", "hour_of_week", "confidence"]
    expected = model.best_many(
        ["m1", "m2", "someone-new"],
        [None, "push", None],
        [None, None, "loyal"],
        [None, None, "Europe/Paris"],
    )
    assert out["hour_of_week"].tolist() == [s.hour_of_week for s in expected]
    assert out["channel"].tolist() == [s.channel for s in expected]
    assert out["source"].tolist() == ["member", "member", "segment"]
    fast = loaded.unwrap_python_model().model
    now = datetime(2025, 11, 1, tzinfo=UTC)
    assert fast.next_send("m1", now) == model.next_send("m1", now)
    assert fast.best_many(["m1", "x"]) == model.best_many(["m1", "x"])


@pytest.mark.parametrize(
    ("family", "baseline"),
    [
        ("products", lambda: products_world()[1]),
        (
            "coupon",
            lambda: NoCouponPolicy().fit(np.zeros((0, 2)), np.array([]), np.array([]), FEATURES),
        ),
        (
            "send_time",
            lambda: GlobalSendTimeModel().fit(
                np.array(["m"]),
                np.array(["email"]),
                np.array(["2025-01-07T19:00"], dtype="datetime64[us]"),
            ),
        ),
    ],
)
def test_baselines_load_through_the_same_wrapper(family, baseline, tmp_path):
    model = baseline()
    assert pyfunc.family_of(model) == family
    model.save(tmp_path / "model.npz")
    wrapper = pyfunc.MemberwisePyfunc()
    wrapper.load_context(context(tmp_path / "model.npz", family))
    assert type(wrapper.model) is type(model)
    out = wrapper.predict(None, pyfunc.input_example(model))
    assert out["member_id"].tolist() == pyfunc.input_example(model)["member_id"].tolist()


def test_wrapper_refuses_another_family(tmp_path):
    coupon_world().save(tmp_path / "model.npz")
    wrapper = pyfunc.MemberwisePyfunc()
    with pytest.raises(ValueError, match="coupon_policy"):
        wrapper.load_context(context(tmp_path / "model.npz", "products"))
    with pytest.raises(KeyError, match="family"):
        wrapper.load_context(SimpleNamespace(artifacts={"model": "x"}, model_config=None))


def test_logged_models_hold_code_not_pickles(tracking, tmp_path):
    """The logged model is the wrapper's source file plus the .npz: MLflow does not warn
    about CloudPickle and nothing in the model folder is a pickle."""
    import logging

    import mlflow

    policy = coupon_world()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("mlflow").addHandler(handler)
    try:
        info = log(policy, tmp_path, pyfunc.input_example(policy))
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
    assert not [m for m in seen if "CloudPickle" in m], seen
    folder = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    files = [p.name for p in Path(folder).rglob("*") if p.is_file()]
    assert "mlflow_model.py" in files and "model.npz" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
