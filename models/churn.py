"""Churn risk: plain scikit-learn estimators, logged with MLflow's native sklearn flavour.

Both estimators take the same DataFrame of numeric feature columns (NaN allowed) and expose
``predict_proba``; column 1 is P(churned), the positive class (label 1: no purchase within
the horizon).

- the shipped model: BG/NBD's view of each member (``BetaGeoFeatures``) appended to the
  tags, a gradient-boosted classifier on top, calibrated by cross-validation;
- the baseline it must beat to reach members: BG/NBD alone (``BetaGeoChurn``), the peer a
  data scientist would reach for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from models.bgnbd import BetaGeoModel

if TYPE_CHECKING:  # sklearn's estimators are imported when a model is built
    from sklearn.calibration import CalibratedClassifierCV

# Tag columns BG/NBD reads: distinct purchase days, days since the first and since the last
# purchase (as in features.tags). x = purchase_days - 1, t_x = first - last, T = first.
PURCHASE_DAYS, FIRST_PURCHASE_DAYS, RECENCY_DAYS = (
    "purchase_days", "first_purchase_days", "recency_days",
)  # fmt: skip
BG_NBD_OUTPUTS = ("bg_nbd_p_no_purchase", "bg_nbd_p_alive", "bg_nbd_expected_purchases")

# Types inside the fitted estimators that skops (MLflow's default sklearn serialization)
# does not trust by default; pass as ``mlflow.sklearn.log_model(..., skops_trusted_types=...)``
# or logging fails with "The saved sklearn model references untrusted types".
SKOPS_TRUSTED_TYPES: list[str] = [
    "models.churn.BetaGeoFeatures",
    "models.churn.BetaGeoChurn",
    "models.churn.RecencyChurn",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",  # method="sigmoid"
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


def _rfm(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, known) from the tag columns; ``known`` marks members with a purchase."""
    missing = [c for c in (PURCHASE_DAYS, FIRST_PURCHASE_DAYS, RECENCY_DAYS) if c not in X]
    if missing:
        raise ValueError(f"BG/NBD features need the tag columns {missing}")
    days = X[PURCHASE_DAYS].to_numpy(np.float64)
    first = X[FIRST_PURCHASE_DAYS].to_numpy(np.float64)
    last = X[RECENCY_DAYS].to_numpy(np.float64)
    known = np.isfinite(days) & np.isfinite(first) & np.isfinite(last) & (days >= 1)
    T = np.where(known, np.maximum(first, 0.0), 0.0)
    x = np.where(known, np.floor(days) - 1.0, 0.0)
    tx = np.where(known & (x > 0), np.clip(first - last, 0.0, T), 0.0)
    return x, tx, T, known


class BetaGeoFeatures(TransformerMixin, BaseEstimator):
    """Appends BG/NBD's view of each member to a frame of tags.

    ``fit`` estimates the population's BG/NBD parameters from the members with a purchase;
    ``transform`` returns the frame with BG_NBD_OUTPUTS added: P(no purchase in the next
    ``horizon_days``), P(alive) and the expected number of purchases in that horizon (NaN
    for members without a purchase, or when nobody in the fit made a repeat purchase).
    """

    def __init__(self, horizon_days: int = 90) -> None:
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y: Any = None) -> BetaGeoFeatures:
        x, tx, T, known = _rfm(X)
        self.params_: dict[str, float] | None = None
        if known.any() and (x[known] > 0).any():
            self.params_ = BetaGeoModel().fit(x[known], tx[known], T[known]).to_dict()
        seen = self._outputs(X)
        self.usable_ = [c for c in BG_NBD_OUTPUTS if np.isfinite(seen[c].to_numpy()).any()]
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = self._outputs(X)
        for c in BG_NBD_OUTPUTS:
            if c not in self.usable_:
                out[c] = 0.0
        return out

    def _outputs(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for c in BG_NBD_OUTPUTS:
            out[c] = np.nan
        if self.params_ is None:
            return out
        x, tx, T, known = _rfm(X)
        if known.any():
            bg = BetaGeoModel.from_dict(self.params_)
            h = float(self.horizon_days)
            k = (x[known], tx[known], T[known])
            with np.errstate(all="ignore"):
                values = (
                    bg.predict_no_purchase_probability(h, *k),
                    bg.conditional_probability_alive(*k),
                    bg.conditional_expected_purchases(h, *k),
                )
            for c, v in zip(BG_NBD_OUTPUTS, values, strict=True):
                out.loc[known, c] = np.where(np.isfinite(v), v, np.nan)
        return out


class BetaGeoChurn(ClassifierMixin, BaseEstimator):
    """BG/NBD as a churn classifier: ``predict_proba[:, 1]`` is P(no purchase within
    ``horizon_days``), fitted on the purchase history alone (``y`` only sets the rate given
    to members BG/NBD cannot score: no purchase yet, or no repeat buying in the fit)."""

    def __init__(self, horizon_days: int = 90) -> None:
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y: Any) -> BetaGeoChurn:
        y = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.features_ = BetaGeoFeatures(self.horizon_days).fit(X)
        self.prior_ = float(y.mean()) if y.size else 0.5
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.features_._outputs(X)[BG_NBD_OUTPUTS[0]].to_numpy(np.float64)
        p = np.where(np.isfinite(p), p, self.prior_)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class ChurnConfig:
    """A small gradient-boosted model inside a calibrated classifier; ``method`` "isotonic"
    or "sigmoid". The defaults were chosen on the online_retail and synthetic backtests
    (see docs/evaluation); shallow trees with many members per leaf carry over best."""

    method: str = "isotonic"
    cv: int = 3
    learning_rate: float = 0.03
    max_iter: int = 300
    max_leaf_nodes: int = 7
    min_samples_leaf: int = 50
    l2_regularization: float = 1.0
    early_stopping: bool = False
    bg_nbd_features: bool = True  # append BetaGeoFeatures (needs the purchase tag columns)
    horizon_days: int = 90
    random_state: int = 0


def build_churn_model(config: ChurnConfig | None = None) -> CalibratedClassifierCV:
    """Unfitted ``CalibratedClassifierCV([BetaGeoFeatures ->] HistGradientBoosting)``.

    Fit on X (n_members, n_features) numeric, NaN allowed (gradient boosting routes missing
    values natively), y (n_members,) in {0, 1}. ``predict_proba(X)[:, 1]`` is the
    calibrated churn probability: the average of ``cv`` calibrated models, each fitted on
    ``cv - 1`` folds and calibrated on the remaining one.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    cfg = config if config is not None else ChurnConfig()
    if cfg.method not in ("isotonic", "sigmoid"):
        raise ValueError(f"ChurnConfig.method must be 'isotonic' or 'sigmoid', not {cfg.method!r}")
    booster = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate,
        max_iter=cfg.max_iter,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
        l2_regularization=cfg.l2_regularization,
        early_stopping=cfg.early_stopping,
        random_state=cfg.random_state,
    )
    estimator: Any = booster
    if cfg.bg_nbd_features:
        estimator = Pipeline([("bg_nbd", BetaGeoFeatures(cfg.horizon_days)), ("boost", booster)])
    return CalibratedClassifierCV(estimator=estimator, method=cfg.method, cv=cfg.cv)


def build_churn_baseline(horizon_days: int = 90) -> BetaGeoChurn:
    """Unfitted BG/NBD churn classifier over the same frame as ``build_churn_model``."""
    return BetaGeoChurn(horizon_days)


class RecencyChurn(ClassifierMixin, BaseEstimator):
    """The rule a programme writes first: the longer since the last purchase, the likelier
    the member is gone. ``predict_proba[:, 1]`` is the churn rate of members with that
    recency in the fit (a monotone step function of ``recency_days``, plain numpy arrays);
    members without a purchase get the overall rate."""

    def __init__(self, n_bins: int = 20) -> None:
        self.n_bins = n_bins

    def fit(self, X: pd.DataFrame, y: Any) -> RecencyChurn:
        y = np.asarray(y, dtype=np.float64)
        r = X[RECENCY_DAYS].to_numpy(np.float64)
        ok = np.isfinite(r)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.prior_ = float(y.mean()) if y.size else 0.5
        if ok.sum() < 2:
            self.edges_, self.rates_ = np.zeros(0), np.full(1, self.prior_)
            return self
        edges = np.unique(np.quantile(r[ok], np.linspace(0, 1, self.n_bins + 1)[1:-1]))
        b = np.searchsorted(edges, r[ok], side="right")
        sums = np.bincount(b, weights=y[ok], minlength=len(edges) + 1)
        counts = np.bincount(b, minlength=len(edges) + 1)
        rates = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        # monotone in recency: running maximum (empty bins take the previous bin's rate)
        rates = pd.Series(rates).ffill().fillna(self.prior_).cummax().to_numpy()
        self.edges_, self.rates_ = edges, rates
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        r = X[RECENCY_DAYS].to_numpy(np.float64)
        b = np.searchsorted(self.edges_, np.nan_to_num(r, nan=0.0), side="right")
        p = np.where(np.isfinite(r), self.rates_[np.minimum(b, len(self.rates_) - 1)], self.prior_)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
