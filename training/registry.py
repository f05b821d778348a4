"""Log a trained candidate and its baseline to MLflow, register both, move ``champion``.

Each model has one registered model (``memberwise-<name>``). A run logs the parameters,
the shipped model's and the baseline's metrics on the same held-out data, its figures
(``plots/*.png``, see ``training.plots``), and both models (with signatures) as versions of
that registered model, saved as ``models.artifact`` describes: products, coupon and send
time as pyfunc models from code, churn with the scikit-learn flavour. Every logged model
carries the ``models`` package as code and the pinned versions of the packages it needs
(:func:`requirements`), so ``models:/memberwise-NAME@champion`` loads in a fresh process.
Each version is tagged with its role, as-of date and, for the models that read member
features, the Feast feature service that feeds them (``feast.feature_service``, the tag
Feast's own MLflow integration resolves a model's features by) and a hash of its feature
list. ``champion`` points at the shipped model only when it beats the baseline on the
primary metric; otherwise at the baseline, so a weak model never reaches members.
``challenger`` always points at the newest shipped model so the two can be compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

import models
from features import repo
from models.registry import CHALLENGER, CHAMPION, registered_name
from training.plots import figures
from training.result import TrainResult

EXPERIMENT = "memberwise"
# the distributions a logged model needs to load and predict (MLflow adds itself); the
# model's own code travels with it as ``code_paths``, so the project is not one of them
REQUIRED = ("numpy", "pandas", "scipy", "scikit-learn", "skops")
MODELS_PACKAGE = Path(models.__file__).parent
# models that read member features: (Feast feature service, its feature list)
FEATURE_SERVICES: dict[str, tuple[str, list[str]]] = {
    "churn": (repo.CHURN_SERVICE, repo.CHURN_FEATURES),
    "coupon": (repo.COUPON_SERVICE, repo.COUPON_FEATURES),
    "send_time": (repo.SEND_TIME_SERVICE, repo.SEND_TIME_FEATURES),
}
# MLflow settings for model logging (set unless the environment sets them): the model's
# environment is its pinned requirements.txt, not whatever uv project the command runs in
MLFLOW_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_UV_AUTO_DETECT": "false",
    "MLFLOW_LOG_UV_FILES": "false",
}


def requirements() -> list[str]:
    """``REQUIRED`` pinned to the installed versions (``numpy==2.3.1``, ...)."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIRED]


def feature_lineage(name: str) -> dict[str, str]:
    """Tags naming the Feast feature service a model reads and a hash of its feature list
    (empty for a model without one)."""
    if name not in FEATURE_SERVICES:
        return {}
    service, features = FEATURE_SERVICES[name]
    digest = hashlib.sha256(",".join(features).encode()).hexdigest()[:12]
    return {"feast.feature_service": service, "feature_list_sha256": digest}


class _NoPipVersion(logging.Filter):
    """Drops MLflow's warning that it cannot find pip: uv environments have none, and the
    pip pin it would write only matters to conda, which these models do not use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to resolve installed pip version" not in record.getMessage()


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
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    env_logger = logging.getLogger("mlflow.utils.environment")
    if not any(isinstance(f, _NoPipVersion) for f in env_logger.filters):
        env_logger.addFilter(_NoPipVersion())
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


def _signature(example: pd.DataFrame, output: pd.DataFrame, params: dict[str, Any] | None) -> Any:
    """The model signature of ``example`` -> ``output``. MLflow's hint that integer columns
    cannot hold missing values concerns inputs; for the outputs (``hour_of_week``), which
    are never missing, it is silenced."""
    from mlflow.models import ModelSignature, infer_signature

    inputs = infer_signature(example, params=params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        outputs = infer_signature(output).inputs
    return ModelSignature(inputs=inputs.inputs, outputs=outputs, params=inputs.params)


def _log_one(result: TrainResult, model: Any, role: str) -> str | None:
    """Log ``model`` under artifact name ``role`` and register it; returns the version.
    MLflow's own "Successfully registered model ... / Created version ..." lines are kept out
    of the run's output (the run prints its own summary); anything else it writes passes."""
    import contextlib
    import io
    import sys

    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            return _log_one_quietly(result, model, role)
    finally:
        for line in buffer.getvalue().splitlines():
            if not _REGISTRY_CHATTER.match(line):
                print(line, file=sys.stderr)


_REGISTRY_CHATTER = re.compile(
    r"^(Successfully registered model|Created version|Registered model '.*' already exists)"
)


def _log_one_quietly(result: TrainResult, model: Any, role: str) -> str | None:
    import mlflow
    from mlflow.models import infer_signature

    reg = registered_name(result.name)
    common: dict[str, Any] = {
        "name": role,
        "registered_model_name": reg,
        "code_paths": [str(MODELS_PACKAGE)],
        "pip_requirements": requirements(),
    }
    if result.flavor == "sklearn":
        from models.churn import SKOPS_TRUSTED_TYPES

        X = result.input_example
        sig = infer_signature(X, model.predict_proba(X)) if X is not None else None
        info = mlflow.sklearn.log_model(
            model, signature=sig, input_example=X, pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES, **common,
        )  # fmt: skip
    else:
        from models import pyfunc

        example = pyfunc.input_example(model)
        params = pyfunc.params_of(model)
        sig = _signature(example, pyfunc.predict_frame(model, example, params), params)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.npz"
            model.save(path)
            info = mlflow.pyfunc.log_model(
                python_model=str(pyfunc.CODE), artifacts={pyfunc.ARTIFACT: str(path)},
                model_config={"family": pyfunc.family_of(model)}, signature=sig,
                input_example=example, **common,
            )  # fmt: skip
    return str(info.registered_model_version) if info.registered_model_version else None


def log_and_register(
    result: TrainResult, as_of: str, tags: dict[str, str] | None = None, aliases: bool = True
) -> Registration:
    """One MLflow run per model: params, both models' metrics, both registered. With
    ``aliases`` false the aliases are left where they are, for the caller to move later
    (:func:`alias_moves`, :func:`move_aliases`)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    reg = registered_name(result.name)
    with mlflow.start_run(run_name=f"{result.name}-{as_of}") as run:
        lineage = feature_lineage(result.name)
        mlflow.set_tags({"model": result.name, "as_of": as_of, **lineage, **(tags or {})})
        mlflow.log_params({k: v for k, v in result.params.items() if v is not None})
        if lineage:
            mlflow.log_param("feature_service", lineage["feast.feature_service"])
        for role, m in result.metrics.items():
            mlflow.log_metrics({f"{role}.{k}": v for k, v in _clean(m).items()})
        gate = result.selection
        mlflow.log_text(json.dumps({"metrics": result.metrics, "notes": result.notes,
                                    "primary": result.primary, "policies": result.policies,
                                    "gate": None if gate is None else {
                                        "champion": gate.champion, "reason": gate.reason,
                                        "z": gate.z, "units": gate.n_units,
                                        "table": gate.as_records()}},
                                   indent=2, default=str),
                        "comparison.json")  # fmt: skip
        if gate is not None:
            mlflow.log_metrics({f"gate.{mlflow_metric_name(r.name)}": r.estimate
                                for r in gate.rows if r.estimate == r.estimate})  # fmt: skip
        for artifact_file, fig in figures(result).items():
            mlflow.log_figure(fig, artifact_file)
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
    reasons = champion_reasons(result)
    for version, role in ((shipped_v, "model"), (baseline_v, "baseline")):
        if version is not None:
            client.set_model_version_tag(reg, version, "role", role)
            client.set_model_version_tag(
                reg,
                version,
                "policy",
                result.policies.get("shipped" if role == "model" else role, role),
            )
            client.set_model_version_tag(reg, version, "reason", reasons[role])
            client.set_model_version_tag(reg, version, "as_of", as_of)
            for key, value in lineage.items():
                client.set_model_version_tag(reg, version, key, value)
    registration = Registration(
        name=result.name,
        run_id=run.info.run_id,
        shipped_version=shipped_v,
        baseline_version=baseline_v,
        champion_version=champion_v,
        champion_role="model" if wins else "baseline",
        metrics=result.metrics,
    )
    if aliases:
        move_aliases(alias_moves(registration))
    return registration


def alias_moves(reg: Registration) -> list[tuple[str, str, str]]:
    """The alias moves a registration asks for: (registered model, alias, version);
    ``champion`` to the winner, ``challenger`` to the newest shipped model."""
    name = registered_name(reg.name)
    moves = []
    if reg.champion_version is not None:
        moves.append((name, CHAMPION, reg.champion_version))
    if reg.shipped_version is not None:
        moves.append((name, CHALLENGER, reg.shipped_version))
    return moves


def move_aliases(moves: list[tuple[str, str, str]]) -> None:
    """Point each (registered model, alias) at its version, in the tracking URI set."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for name, alias, version in moves:
        client.set_registered_model_alias(name, alias, version)


def mlflow_metric_name(name: str) -> str:
    """``name`` with what MLflow refuses in a metric name (brackets, "=", ",") as "_": policy
    names such as ``hybrid_tuned(item_weight=1.5)`` become metric keys (run and backtest)."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def champion_reasons(result: TrainResult) -> dict[str, str]:
    """Why each registered role would serve (stored on the model version, so the API and
    ``score`` can say which policy serves and why)."""
    gate = result.selection
    if gate is None:
        why = "; ".join(result.notes) or "no held-out comparison"
        return {"model": why, "baseline": why}
    if gate.role == "model":
        return {"model": gate.reason, "baseline": f"the simple policy {gate.champion} had to beat"}
    shipped = result.policies.get("shipped")
    rows = {r.name: r for r in gate.rows}
    why = rows[shipped].verdict if shipped in rows else "not among the candidates the gate compared"
    return {"model": f"not the champion: {why}", "baseline": gate.reason}


def summary_frame(regs: list[Registration]) -> pd.DataFrame:
    """One row per model: primary metric of both, and which one is champion."""
    rows = []
    for r in regs:
        rows.append({"model": r.name, "champion": r.champion_role,
                     "champion_version": r.champion_version,
                     **{f"{role}.{k}": v for role, m in r.metrics.items() for k, v in m.items()}})  # fmt: skip
    return pd.DataFrame(rows)
