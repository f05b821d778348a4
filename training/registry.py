"""Log a trained candidate and its baseline to MLflow, register both, move ``champion``.

Each model has one registered model (``memberwise-<name>``). A run logs the parameters,
the shipped model's and the baseline's metrics on the same held-out data, and both models
(with signatures) as versions of that registered model. ``champion`` points at the
shipped model only when it beats the baseline on the primary metric; otherwise at the
baseline, so a weak model never reaches members. ``challenger`` always points at the
newest shipped model so the two can be compared.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.registry import CHALLENGER, CHAMPION, registered_name
from training.result import TrainResult

EXPERIMENT = "memberwise"
# what a model needs at load time: this project (models/ holds the classes) and its stack
PIP_REQUIREMENTS = ["memberwise", "numpy", "pandas", "scikit-learn", "skops", "implicit"]


@dataclass
class Registration:
    name: str
    run_id: str
    shipped_version: str | None
    baseline_version: str | None
    champion_version: str | None
    champion_role: str
    metrics: dict[str, dict[str, float]]


def setup_tracking(tracking_uri: str, artifact_root: str) -> str:
    """Point MLflow at the home's backend; returns the experiment id."""
    import logging
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    return {k.replace("@", "_at_"): float(v) for k, v in metrics.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))}  # fmt: skip


def _log_one(result: TrainResult, model: Any, role: str) -> str | None:
    """Log ``model`` under artifact name ``role`` and register it; returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    reg = registered_name(result.name)
    if result.flavor == "sklearn":
        from models.churn import SKOPS_TRUSTED_TYPES

        X = result.input_example
        sig = infer_signature(X, model.predict_proba(X)[:, 1]) if X is not None else None
        info = mlflow.sklearn.log_model(
            model, name=role, signature=sig, registered_model_name=reg, input_example=X,
            pip_requirements=PIP_REQUIREMENTS, skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )  # fmt: skip
    else:
        from models import pyfunc as wrappers

        wrapper_cls = {
            "products": wrappers.ProductsPyfunc,
            "coupon": wrappers.CouponPyfunc,
            "send_time": wrappers.SendTimePyfunc,
        }[result.name]
        example = wrappers.input_example(model)
        params = wrappers.PRODUCTS_PARAMS if result.name == "products" else None
        if result.name == "products":
            out = wrappers.products_frame(model, example, params)
        elif result.name == "coupon":
            out = wrappers.coupon_frame(model, example)
        else:
            out = wrappers.send_time_frame(model, example)
        sig = infer_signature(example, out, params=params)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model"
            model.save(path)
            info = mlflow.pyfunc.log_model(
                name=role, python_model=wrapper_cls(), artifacts={"model": str(path)},
                signature=sig, input_example=example, registered_model_name=reg,
                pip_requirements=PIP_REQUIREMENTS,
            )  # fmt: skip
    return str(info.registered_model_version) if info.registered_model_version else None


def log_and_register(
    result: TrainResult, as_of: str, tags: dict[str, str] | None = None
) -> Registration:
    """One MLflow run per model: params, both models' metrics, both registered."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    reg = registered_name(result.name)
    with mlflow.start_run(run_name=f"{result.name}-{as_of}") as run:
        mlflow.set_tags({"model": result.name, "as_of": as_of, **(tags or {})})
        mlflow.log_params({k: v for k, v in result.params.items() if v is not None})
        for role, m in result.metrics.items():
            mlflow.log_metrics({f"{role}.{k}": v for k, v in _clean(m).items()})
        mlflow.log_text(json.dumps({"metrics": result.metrics, "notes": result.notes,
                                    "primary": result.primary}, indent=2, default=str),
                        "comparison.json")  # fmt: skip
        shipped_v = (
            _log_one(result, result.shipped, "model") if result.shipped is not None else None
        )
        baseline_v = (
            _log_one(result, result.baseline, "baseline") if result.baseline is not None else None
        )
        wins = result.shipped_wins and shipped_v is not None
        champion_v = shipped_v if wins else baseline_v
        mlflow.set_tag("champion_role", "model" if wins else "baseline")
        mlflow.log_metric("shipped_beats_baseline", float(wins))
    for version, role in ((shipped_v, "model"), (baseline_v, "baseline")):
        if version is not None:
            client.set_model_version_tag(reg, version, "role", role)
            client.set_model_version_tag(reg, version, "as_of", as_of)
    if champion_v is not None:
        client.set_registered_model_alias(reg, CHAMPION, champion_v)
    if shipped_v is not None:
        client.set_registered_model_alias(reg, CHALLENGER, shipped_v)
    return Registration(
        name=result.name,
        run_id=run.info.run_id,
        shipped_version=shipped_v,
        baseline_version=baseline_v,
        champion_version=champion_v,
        champion_role="model" if wins else "baseline",
        metrics=result.metrics,
    )


def summary_frame(regs: list[Registration]) -> pd.DataFrame:
    """One row per model: primary metric of both, and which one is champion."""
    rows = []
    for r in regs:
        rows.append({"model": r.name, "champion": r.champion_role,
                     "champion_version": r.champion_version,
                     **{f"{role}.{k}": v for role, m in r.metrics.items() for k, v in m.items()}})  # fmt: skip
    return pd.DataFrame(rows)
