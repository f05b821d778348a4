"""How every memberwise model is saved, logged and loaded — one convention, no pickle.

1. **The artifact.** A model class of ours (products, coupon, send time) saves itself with
   ``model.save(path)`` to ONE ``.npz`` file written by :func:`write_npz`: a ``kind``
   naming the class (``"hybrid"``, ``"popularity"``, ``"coupon_policy"``, ...), plain
   arrays, and a JSON ``meta`` string for config and names. Any fitted scikit-learn part
   inside it is stored as skops bytes. It is read back by the family's loader
   (``load_recommender``, ``load_coupon_policy``, ``load_send_time``), which calls
   :func:`read_npz` (``allow_pickle=False``) and :func:`class_for` to choose the class from
   the kind and refuse any other family's artifact.
2. **In MLflow.** Such a model is logged as a pyfunc *model from code*: ``python_model``
   is the file ``models/mlflow_model.py`` (it calls ``mlflow.models.set_model`` on the
   wrapper in ``models.pyfunc``), ``artifacts={"model": <the .npz>}`` and
   ``model_config={"family": ...}``; ``load_context`` loads the artifact once. A plain
   scikit-learn estimator (churn) has a native MLflow flavour and uses it instead
   (``mlflow.sklearn``, serialized with skops and its trusted types in ``models.churn``).
   Either way the registered model carries this ``models`` package as ``code_paths`` and
   pinned requirements of real packages, so it loads in a fresh process by
   ``models:/memberwise-NAME@alias`` (see ``models.registry``).

Nothing in a registered model is a pickle: MLflow itself refuses to load one unless told to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_npz(
    path: Path, kind: str, arrays: Mapping[str, np.ndarray], meta: Any | None = None
) -> None:
    """Write ``arrays`` plus ``kind`` (and ``meta`` as JSON) to exactly ``path`` (no suffix
    is added), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"kind": np.array(kind), **arrays}
    if meta is not None:
        out["meta"] = np.array(json.dumps(meta))
    with path.open("wb") as f:
        np.savez(f, **out)


def read_npz(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, every array by name) of an artifact; kind is "" when it has none."""
    with np.load(Path(path), allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    return str(z.get("kind", "")), z


def meta_of(z: Mapping[str, np.ndarray]) -> Any:
    """The decoded JSON ``meta`` of an artifact read by ``read_npz``."""
    return json.loads(str(z["meta"]))


def class_for(kinds: Mapping[str, type], kind: str, base: type, path: Path, what: str) -> Any:
    """The class registered for ``kind``; a clear ValueError when the artifact is not ``what``
    or holds another subclass than ``base``."""
    target = kinds.get(kind)
    if target is None:
        raise ValueError(f"{path} is not a {what} artifact (kind {kind!r})")
    if not issubclass(target, base):
        raise ValueError(f"{path} holds a {target.__name__}, not a {base.__name__}")
    return target
