"""Load the champion models from the MLflow registry (once, at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from features.settings import MemberwiseSettings

MODEL_NAMES = ("products", "churn", "coupon", "send_time")


class ModelsNotReady(RuntimeError):
    """No champion is registered yet: `memberwise run` has not been run for this home."""


@dataclass
class Champions:
    """The fast in-process objects behind each registered ``@champion``."""

    products: Any
    churn: Any
    coupon: Any
    send_time: Any
    versions: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)


def load_champions(settings: MemberwiseSettings, alias: str = "champion") -> Champions:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient()
    loaded: dict[str, Any] = {}
    versions: dict[str, str] = {}
    roles: dict[str, str] = {}
    for name in MODEL_NAMES:
        reg = f"memberwise-{name}"
        try:
            mv = client.get_model_version_by_alias(reg, alias)
        except MlflowException as exc:
            raise ModelsNotReady(
                f"no '{alias}' version of {reg} in {settings.tracking_uri}: "
                "run `memberwise run --data DIR --as-of DATE` first"
            ) from exc
        uri = f"models:/{reg}@{alias}"
        if name == "churn":
            loaded[name] = mlflow.sklearn.load_model(uri)
        else:
            loaded[name] = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
        versions[name] = str(mv.version)
        roles[name] = mv.tags.get("role", "model")
    return Champions(**loaded, versions=versions, roles=roles)
