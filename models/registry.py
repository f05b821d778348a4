"""The read side of the model registry: names, aliases and loading, in one place.

Every model is registered in MLflow as ``memberwise-<name>``; the ``champion`` alias is
what members get, ``challenger`` the newest trained model. Serving, ``score`` and the
backtest all load through :func:`load_model` / :func:`load_champions`, so they can never
read a model differently. mlflow is imported inside the functions (it is heavy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODEL_NAMES: tuple[str, ...] = ("products", "churn", "coupon", "send_time", "similar")
PREFIX = "memberwise-"
CHAMPION = "champion"
CHALLENGER = "challenger"
SKLEARN_MODELS = frozenset({"churn"})  # logged with MLflow's sklearn flavour (skops)


class ModelsNotReady(RuntimeError):
    """No champion is registered yet: `memberwise run` has not been run for this home."""


def registered_name(model: str) -> str:
    """``products`` -> ``memberwise-products``."""
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; one of {MODEL_NAMES}")
    return f"{PREFIX}{model}"


def model_uri(model: str, alias: str = CHAMPION) -> str:
    """``models:/memberwise-NAME@alias``."""
    return f"models:/{registered_name(model)}@{alias}"


@dataclass
class Champions:
    """The fast in-process objects behind each registered alias, with their versions and
    roles (``model`` or ``baseline``)."""

    products: Any
    churn: Any
    coupon: Any
    send_time: Any
    similar: Any = None  # models.similar.SimilarProducts: bought together and similar products
    versions: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    # the policy each champion is ("hybrid", "buy_again", "recency_rule" ...) and why the
    # promotion gate chose it, from the model version's tags
    policies: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def _point_at(tracking_uri: str) -> Any:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient()


def load_model(
    model: str, alias: str = CHAMPION, tracking_uri: str | None = None, location: str | None = None
) -> Any:
    """The fast object behind ``models:/memberwise-NAME@alias`` (a fitted scikit-learn
    estimator for churn, the unwrapped memberwise model for the others); ``location``, when
    given, is the model's artifact folder to read instead (see :func:`home_location`)."""
    import mlflow

    if tracking_uri is not None:
        _point_at(tracking_uri)
    uri = location or model_uri(model, alias)
    if model in SKLEARN_MODELS:
        return mlflow.sklearn.load_model(uri)
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def home_location(client: Any, tracking_uri: str, mv: Any) -> str | None:
    """A model version's artifact folder inside the home that holds the tracking database.

    MLflow records absolute artifact URIs; in a home that was copied or moved they still
    name the original. For a SQLite database ``.../mlflow/mlflow.db`` whose experiment
    root is elsewhere, the same relative path under ``.../mlflow/artifacts`` is returned
    (read-only: nothing is rewritten). None when the recorded location is the home's own
    or the backend is not such a file."""
    from pathlib import Path

    from mlflow.utils.file_utils import local_file_uri_to_path

    if not tracking_uri.startswith("sqlite:///"):
        return None
    root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    stored = str(getattr(mv, "storage_location", "") or "")
    run = client.get_run(mv.run_id) if mv.run_id else None
    exp = client.get_experiment(run.info.experiment_id) if run is not None else None
    old = str(exp.artifact_location) if exp is not None else ""
    if not stored or not old or not stored.startswith(old) or old == root.as_uri():
        return None
    local = root / stored[len(old) :].lstrip("/")
    return str(local) if local.exists() else local_file_uri_to_path(stored)


def load_champions(
    tracking_uri: str, alias: str = CHAMPION, pinned: dict[str, str] | None = None
) -> Champions:
    """Every model's ``alias`` version; :class:`ModelsNotReady` when one is missing.

    ``pinned`` maps registered model names to the version to load instead of the alias
    (a run that has staged its alias moves but not committed them yet)."""
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith("sqlite:///"):
        from pathlib import Path

        if not Path(tracking_uri.removeprefix("sqlite:///")).exists():
            # MLflow would create an empty database here; a home never gets one from serving
            raise ModelsNotReady(
                "the home has no MLflow database (mlflow/mlflow.db): run `memberwise run "
                "--data DIR --as-of DATE` into it, or set stores.mlflow_tracking_uri"
            )
    client = _point_at(tracking_uri)
    loaded: dict[str, Any] = {}
    versions: dict[str, str] = {}
    roles: dict[str, str] = {}
    policies: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for name in MODEL_NAMES:
        reg = registered_name(name)
        try:
            if pinned and reg in pinned:
                mv = client.get_model_version(reg, pinned[reg])
            else:
                mv = client.get_model_version_by_alias(reg, alias)
        except MlflowException as exc:
            raise ModelsNotReady(
                f"no '{alias}' version of {reg}: run `memberwise run --data DIR --as-of DATE` first"
            ) from exc
        location = home_location(client, tracking_uri, mv) or f"models:/{reg}/{mv.version}"
        loaded[name] = load_model(name, alias, location=location)
        versions[name] = str(mv.version)
        roles[name] = mv.tags.get("role", "model")
        policies[name] = mv.tags.get("policy", roles[name])
        reasons[name] = mv.tags.get("reason", "")
    return Champions(**loaded, versions=versions, roles=roles, policies=policies, reasons=reasons)
