"""Erasure (the right to be forgotten): suppressions every later step honours.

An erased member is recorded as a salted SHA-256 of their id, never the id itself, in
``settings.suppression_file`` (one hex digest a line). The salt is a random secret made on
the first erasure, ``salt`` next to that file (mode 0600): without it the digests cannot be
matched against guessed ids. Erasing removes the member's rows from the online store at
once (:func:`delete_online`); runs drop their input rows (:func:`erased_mask`) and scrub
tag snapshots and the SQLite online store of anything an earlier run wrote
(:func:`scrub_frame`, :func:`scrub_sqlite_online`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from features.settings import MemberwiseSettings

SALT_FILE = "salt"


def _salt_path(settings: MemberwiseSettings) -> Path:
    return settings.suppression_file.parent / SALT_FILE


def salt(settings: MemberwiseSettings, create: bool = False) -> bytes | None:
    """The home's erasure salt; made (32 random bytes, file mode 0600) when ``create`` and
    there is none yet, else None."""
    path = _salt_path(settings)
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by a concurrent erasure
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
    return value


def member_hash(salt_bytes: bytes, member_id: str) -> str:
    """The suppression digest of one member id (hex SHA-256 of salt + id)."""
    return hashlib.sha256(salt_bytes + str(member_id).encode()).hexdigest()


def suppress(settings: MemberwiseSettings, member_ids: Iterable[str]) -> list[str]:
    """Record ``member_ids`` as erased; returns their digests (already recorded ones too)."""
    key = salt(settings, create=True)
    assert key is not None
    digests = [member_hash(key, m) for m in member_ids]
    known = suppressed(settings)
    new = [d for d in dict.fromkeys(digests) if d not in known]
    if new:
        path = settings.suppression_file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write("".join(d + "\n" for d in new))
            fh.flush()
            os.fsync(fh.fileno())
    return digests


def suppressed(settings: MemberwiseSettings) -> frozenset[str]:
    """Every recorded digest."""
    path = settings.suppression_file
    if not path.exists():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


def erased_mask(settings: MemberwiseSettings, member_ids: pd.Series) -> pd.Series:
    """True where the member id is erased (same index as ``member_ids``)."""
    digests = suppressed(settings)
    key = salt(settings)
    if not digests or key is None:
        return pd.Series(False, index=member_ids.index)
    uniq = pd.unique(member_ids.astype(str))
    hit = {m for m in uniq if member_hash(key, m) in digests}
    return member_ids.astype(str).isin(hit)


def scrub_frame(settings: MemberwiseSettings, df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``df`` without erased members' rows (by its ``member_id``) and how many it dropped."""
    if "member_id" not in df or df.empty:
        return df, 0
    mask = erased_mask(settings, df["member_id"])
    n = int(mask.sum())
    return (df.loc[~mask].reset_index(drop=True) if n else df), n


def scrub_parquet(settings: MemberwiseSettings, path: Path) -> int:
    """Drop erased members from a Parquet file (rewritten through a temporary file and a
    rename, so a hard link elsewhere keeps its content); returns the rows dropped."""
    df, n = scrub_frame(settings, pd.read_parquet(path))
    if n:
        tmp = path.with_name(path.name + ".tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    return n


def _entity_key(member_id: str) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.repo import JOIN_KEY

    return EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(string_val=str(member_id))])


def _sqlite_table(store: Any) -> tuple[Path, str]:
    from feast.infra.online_stores.sqlite import _table_id

    from features.repo import TAGS_VIEW

    view = store.get_feature_view(TAGS_VIEW)
    path = Path(store.config.online_store.path)
    if not path.is_absolute():
        path = Path(store.repo_path) / path
    return path, _table_id(store.project, view)


def delete_online(store: Any, member_ids: Iterable[str]) -> int:
    """Delete the members' rows from the Feast online store (SQLite or Redis) of ``store``;
    returns how many members had rows."""
    import sqlite3

    from feast.infra.key_encoding_utils import serialize_entity_key

    version = store.config.entity_key_serialization_version
    keys = [_entity_key(m) for m in member_ids]
    kind = store.config.online_store.type
    if kind == "redis":
        from feast.infra.online_stores.helpers import _redis_key

        client = store._get_provider().online_store._get_client(store.config.online_store)
        names = [
            _redis_key(store.project, k, entity_key_serialization_version=version) for k in keys
        ]
        return int(client.delete(*names)) if names else 0
    path, table = _sqlite_table(store)
    if not path.exists():
        return 0
    blobs = [serialize_entity_key(k, entity_key_serialization_version=version) for k in keys]
    found = 0
    with sqlite3.connect(path) as con:
        for blob in blobs:
            cur = con.execute(f'DELETE FROM "{table}" WHERE entity_key = ?', (blob,))  # noqa: S608
            found += cur.rowcount > 0
    return found


def scrub_sqlite_online(settings: MemberwiseSettings, store: Any) -> int:
    """Delete every erased member's rows from a SQLite online store, matching the stored
    entity keys against the digests; returns the members removed (0 for Redis, whose rows
    go at erasure time)."""
    import sqlite3

    from feast.infra.key_encoding_utils import deserialize_entity_key

    key = salt(settings)
    digests = suppressed(settings)
    if store.config.online_store.type != "sqlite" or key is None or not digests:
        return 0
    path, table = _sqlite_table(store)
    if not path.exists():
        return 0
    version = store.config.entity_key_serialization_version
    removed = 0
    with sqlite3.connect(path) as con:
        rows = con.execute(f'SELECT DISTINCT entity_key FROM "{table}"').fetchall()  # noqa: S608
        for (blob,) in rows:
            ek = deserialize_entity_key(blob, entity_key_serialization_version=version)
            if member_hash(key, ek.entity_values[0].string_val) in digests:
                con.execute(f'DELETE FROM "{table}" WHERE entity_key = ?', (blob,))  # noqa: S608
                removed += 1
    return removed
