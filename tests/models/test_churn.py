"""Churn estimators on a synthetic frame where churn depends non-linearly on two features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.churn import (
    SKOPS_TRUSTED_TYPES,
    ChurnConfig,
    build_churn_baseline,
    build_churn_model,
)


def churn_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn is likely when |activity_change| > 1 XOR gap_ratio > 0.5 (no linear signal in
    either alone); recency adds a weak monotone effect; ``noise`` is irrelevant."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    recency = rng.uniform(0, 365, n)
    logit = -1.5 + 3.0 * ((np.abs(a) > 1) ^ (b > 0.5)) + 0.002 * recency
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame(
        {"recency_days": recency, "activity_change": a, "gap_ratio": b, "noise": rng.normal(size=n)}
    )
    return X, y


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over equal-count bins of p, weighted by bin size."""
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    return float(
        sum(
            abs(p[idx == k].mean() - y[idx == k].mean()) * np.mean(idx == k)
            for k in range(bins)
            if (idx == k).any()
        )
    )


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread():
    """Tiny data gains nothing from threads, and OpenMP spin-waits badly when the CPU is
    shared (a parallel test run): gradient boosting runs on one thread here."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data():
    return churn_frame(3000, seed=0), churn_frame(3000, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    (X, y), _ = data
    return build_churn_model(ChurnConfig()).fit(X, y), build_churn_baseline().fit(X, y)


def test_model_beats_recency_baseline(data, fitted):
    _, (Xt, yt) = data
    model, baseline = fitted
    auc_model = roc_auc_score(yt, model.predict_proba(Xt)[:, 1])
    auc_base = roc_auc_score(yt, baseline.predict_proba(Xt)[:, 1])
    assert auc_model > 0.75
    assert auc_model > auc_base + 0.15


def test_probabilities_are_calibrated(data, fitted):
    (X, y), (Xt, yt) = data
    model, _ = fitted
    cfg = ChurnConfig()
    raw = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        early_stopping=False,
        random_state=cfg.random_state,
    ).fit(X, y)
    p, p_raw = model.predict_proba(Xt)[:, 1], raw.predict_proba(Xt)[:, 1]
    assert brier_score_loss(yt, p) < brier_score_loss(yt, p_raw)
    assert expected_calibration_error(yt, p) < 0.04


def test_positive_class_is_churned(fitted):
    for est in fitted:
        assert list(est.classes_) == [0, 1]


def test_works_with_nans(data):
    (X, y), (Xt, _) = data
    rng = np.random.default_rng(2)
    X, Xt = X.mask(rng.random(X.shape) < 0.2), Xt.mask(rng.random(Xt.shape) < 0.2)
    for est in (build_churn_model(ChurnConfig(max_iter=50)), build_churn_baseline()):
        p = est.fit(X, y).predict_proba(Xt)
        assert p.shape == (len(Xt), 2)
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def test_baseline_reads_recency_only(data, fitted):
    _, (Xt, _) = data
    _, baseline = fitted
    shuffled = Xt.assign(activity_change=0.0, gap_ratio=np.nan, noise=Xt["noise"][::-1].to_numpy())
    np.testing.assert_array_equal(baseline.predict_proba(Xt), baseline.predict_proba(shuffled))


def test_rejects_unknown_calibration_method():
    with pytest.raises(ValueError, match="isotonic"):
        build_churn_model(ChurnConfig(method="beta"))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_skops_trusted_types_cover_both_estimators(data, method):
    """MLflow's sklearn flavour saves with skops, which refuses types it does not trust."""
    sio = pytest.importorskip("skops.io")
    (X, y), _ = data
    for est in (build_churn_model(ChurnConfig(method=method, max_iter=5)), build_churn_baseline()):
        blob = sio.dumps(est.fit(X.head(300), y[:300]))
        assert set(sio.get_untrusted_types(data=blob)) <= set(SKOPS_TRUSTED_TYPES)
        sio.loads(blob, trusted=SKOPS_TRUSTED_TYPES)
