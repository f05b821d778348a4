"""One-file model artifacts: a ``.npz`` holding a ``kind``, arrays and, for most models, a
JSON ``meta`` string; always read with ``allow_pickle=False``."""

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
