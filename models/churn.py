"""Churn risk: plain scikit-learn estimators, logged with MLflow's native sklearn flavour.

Both estimators take the same DataFrame of numeric feature columns (NaN allowed) and expose
``predict_proba``; column 1 is P(churned), the positive class (label 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sklearn is imported when a model is built, not when this module is
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline

RECENCY_COLUMN = "recency_days"

# Types inside the fitted estimators that skops (MLflow's default sklearn serialization)
# does not trust by default; pass as ``mlflow.sklearn.log_model(..., skops_trusted_types=...)``
# or logging fails with "The saved sklearn model references untrusted types".
SKOPS_TRUSTED_TYPES: list[str] = [
    "numpy.dtype",  # the baseline's LogisticRegression / imputer
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",  # method="sigmoid"
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


@dataclass
class ChurnConfig:
    """Gradient boosting inside a calibrated classifier; ``method`` "isotonic" or "sigmoid"."""

    method: str = "isotonic"
    cv: int = 3
    learning_rate: float = 0.05
    max_iter: int = 200
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    early_stopping: bool = False
    random_state: int = 0


def build_churn_model(config: ChurnConfig | None = None) -> CalibratedClassifierCV:
    """Unfitted ``CalibratedClassifierCV(HistGradientBoostingClassifier, method, cv)``.

    Fit on X (n_members, n_features) numeric, NaN allowed (gradient boosting routes missing
    values natively), y (n_members,) in {0, 1}. ``predict_proba(X)[:, 1]`` is the
    calibrated churn probability: the average of ``cv`` calibrated boosters, each fitted on
    ``cv - 1`` folds and calibrated on the remaining one.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

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
    return CalibratedClassifierCV(estimator=booster, method=cfg.method, cv=cfg.cv)


def build_churn_baseline(recency_column: str = RECENCY_COLUMN) -> Pipeline:
    """Unfitted Pipeline: keep only ``recency_column`` (days since the last purchase),
    impute its median, standardise, LogisticRegression. Takes the same DataFrame as
    ``build_churn_model``; the other columns are dropped."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    recency = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    select = ColumnTransformer([("recency", recency, [recency_column])], remainder="drop")
    return Pipeline([("select", select), ("classify", LogisticRegression())])
