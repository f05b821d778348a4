"""Churn estimators: the booster on a frame where churn depends non-linearly on two
features, and the BG/NBD parts on simulated BG/NBD customers with a planted extra effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.churn import (
    BG_NBD_OUTPUTS,
    SKOPS_TRUSTED_TYPES,
    BetaGeoFeatures,
    ChurnConfig,
    build_churn_baseline,
    build_churn_model,
)
from tests.models.test_bgnbd import CDNOW, simulate

PLAIN = ChurnConfig(bg_nbd_features=False)  # the booster alone, for frames without purchase tags


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
    return build_churn_model(PLAIN).fit(X, y)


def test_model_learns_the_interaction(data, fitted):
    _, (Xt, yt) = data
    assert roc_auc_score(yt, fitted.predict_proba(Xt)[:, 1]) > 0.75


def test_probabilities_are_calibrated(data, fitted):
    (X, y), (Xt, yt) = data
    model = fitted
    cfg = PLAIN
    raw = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        l2_regularization=cfg.l2_regularization,
        early_stopping=False,
        random_state=cfg.random_state,
    ).fit(X, y)
    p, p_raw = model.predict_proba(Xt)[:, 1], raw.predict_proba(Xt)[:, 1]
    assert brier_score_loss(yt, p) < brier_score_loss(yt, p_raw)
    assert expected_calibration_error(yt, p) < 0.04


def test_positive_class_is_churned(fitted, bg_world):
    (X, y), _ = bg_world
    assert list(fitted.classes_) == [0, 1]
    assert list(build_churn_baseline().fit(X, y).classes_) == [0, 1]


def test_works_with_nans(data):
    (X, y), (Xt, _) = data
    rng = np.random.default_rng(2)
    X, Xt = X.mask(rng.random(X.shape) < 0.2), Xt.mask(rng.random(Xt.shape) < 0.2)
    p = (
        build_churn_model(ChurnConfig(max_iter=50, bg_nbd_features=False))
        .fit(X, y)
        .predict_proba(Xt)
    )
    assert p.shape == (len(Xt), 2)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


HORIZON_DAYS = 273  # the 39-week CDNOW holdout


def bg_world(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """BG/NBD customers (CDNOW parameters, in days) as tag columns, plus a planted effect
    BG/NBD cannot see: members with ``discount_share`` > 0.6 stop buying (a shop ending a
    deal they came for). Churned = no purchase in the next HORIZON_DAYS."""
    rng = np.random.default_rng(seed)
    s = simulate(n, CDNOW, HORIZON_DAYS / 7, seed)
    discount = rng.uniform(0, 1, n)
    future = np.where(discount > 0.6, 0, s["future"])
    X = pd.DataFrame({
        "purchase_days": s["x"] + 1.0,
        "first_purchase_days": s["T"] * 7,
        "recency_days": (s["T"] - s["tx"]) * 7,
        "discount_share": discount,
    })  # fmt: skip
    return X, (future == 0).astype(int)


@pytest.fixture(scope="module", name="bg_world")
def bg_world_fixture():
    return bg_world(12_000, seed=1), bg_world(12_000, seed=2)


def test_bg_nbd_features_recover_the_parameters(bg_world):
    (X, _), _ = bg_world
    params = BetaGeoFeatures(HORIZON_DAYS).fit(X).params_
    days = {**CDNOW, "alpha": CDNOW["alpha"] * 7}
    for k, v in days.items():
        assert params[k] == pytest.approx(v, rel=0.2), k


def test_bg_nbd_features_leave_non_buyers_blank(bg_world):
    (X, _), _ = bg_world
    feats = BetaGeoFeatures(HORIZON_DAYS).fit(X)
    odd = pd.DataFrame({"purchase_days": [0.0, np.nan, 3.0], "first_purchase_days": [np.nan, 5.0, 50.0],
                        "recency_days": [np.nan, 1.0, 10.0], "discount_share": 0.0})  # fmt: skip
    out = feats.transform(odd)
    assert out.loc[:1, list(BG_NBD_OUTPUTS)].isna().all().all()
    assert out.loc[2, list(BG_NBD_OUTPUTS)].notna().all()
    assert list(out.columns[:4]) == list(odd.columns)
    with pytest.raises(ValueError, match="purchase_days"):
        feats.transform(odd.drop(columns="purchase_days"))


def test_baseline_is_bg_nbd_and_the_model_adds_what_it_cannot_see(bg_world):
    """BG/NBD ranks the simulated customers well on its own; the shipped model keeps that
    and learns the planted discount effect, so it must rank better and be calibrated."""
    (X, y), (Xt, yt) = bg_world
    base = build_churn_baseline(HORIZON_DAYS).fit(X, y)
    model = build_churn_model(ChurnConfig(horizon_days=HORIZON_DAYS)).fit(X, y)
    p_base, p_model = base.predict_proba(Xt)[:, 1], model.predict_proba(Xt)[:, 1]
    keep = Xt["discount_share"] <= 0.6  # where BG/NBD's story is the whole truth
    assert roc_auc_score(yt[keep], p_base[keep]) > 0.7
    assert roc_auc_score(yt, p_model) > roc_auc_score(yt, p_base) + 0.05
    assert brier_score_loss(yt, p_model) < brier_score_loss(yt, p_base)
    assert expected_calibration_error(yt, p_model) < 0.03


def test_rejects_unknown_calibration_method():
    with pytest.raises(ValueError, match="isotonic"):
        build_churn_model(ChurnConfig(method="beta"))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_skops_trusted_types_cover_both_estimators(data, bg_world, method):
    """MLflow's sklearn flavour saves with skops, which refuses types it does not trust."""
    sio = pytest.importorskip("skops.io")
    (X, y), _ = data
    (Xb, yb), _ = bg_world
    for est, X_, y_ in (
        (build_churn_model(ChurnConfig(method=method, max_iter=5)), Xb, yb),
        (build_churn_model(ChurnConfig(method=method, max_iter=5, bg_nbd_features=False)), X, y),
        (build_churn_baseline(), Xb, yb),
    ):
        blob = sio.dumps(est.fit(X_.head(600), y_[:600]))
        assert set(sio.get_untrusted_types(data=blob)) <= set(SKOPS_TRUSTED_TYPES)
        sio.loads(blob, trusted=SKOPS_TRUSTED_TYPES)


def test_without_repeat_buyers_the_model_still_fits_and_the_baseline_gives_the_rate():
    """A young shop: nobody has bought twice yet, so BG/NBD has nothing to say."""
    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame({"purchase_days": 1.0, "first_purchase_days": rng.uniform(1, 60, n),
                      "discount_share": rng.uniform(0, 1, n)})  # fmt: skip
    X["recency_days"] = X["first_purchase_days"]
    y = (rng.random(n) < 0.3 + 0.4 * (X["discount_share"] > 0.5)).astype(int)
    feats = BetaGeoFeatures().fit(X)
    assert feats.params_ is None and feats.usable_ == []
    assert (feats.transform(X)[list(BG_NBD_OUTPUTS)] == 0.0).all().all()
    p = build_churn_model(ChurnConfig(max_iter=20)).fit(X, y).predict_proba(X)[:, 1]
    assert np.isfinite(p).all()
    base = build_churn_baseline().fit(X, y).predict_proba(X)[:, 1]
    np.testing.assert_allclose(base, y.mean())


def test_recency_rule_is_monotone_and_calibrated_on_its_bins():
    from models.churn import RecencyChurn

    rng = np.random.default_rng(0)
    r = rng.uniform(0, 300, 5000)
    y = (rng.random(5000) < r / 300).astype(int)  # churn rate grows with recency
    X = pd.DataFrame({"recency_days": r, "frequency": 1.0})
    rule = RecencyChurn().fit(X, y)
    grid = pd.DataFrame({"recency_days": [5.0, 100.0, 200.0, 295.0, np.nan], "frequency": 1.0})
    p = rule.predict_proba(grid)[:, 1]
    assert np.all(np.diff(p[:4]) >= 0)
    assert p[0] < 0.15 and p[3] > 0.85
    assert p[4] == pytest.approx(y.mean())
