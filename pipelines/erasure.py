"""Erasure in a run and from the command line (`memberwise erase ID...`).

The suppressions themselves (salted digests) are features.erasure; this module applies them
to what a run reads and writes: the shop's input rows (dropped and counted as erased in the
run report), the tag snapshots and the SQLite online store a run carries over from the
previous generation.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

from features import erasure, repo
from features.member_store import MemberStore
from features.settings import MemberwiseSettings
from pipelines.ingest import ShopData
from serving.logs import audit


def drop_erased(shop: ShopData, settings: MemberwiseSettings) -> dict[str, Any]:
    """Remove erased members' rows from every table of ``shop`` (kept and quarantined rows)
    in place; returns ``{"members": n, "rows": {table: n}}`` for the run report."""
    rows: dict[str, int] = {}
    members: set[str] = set()
    for part in (shop.tables, shop.quarantine):
        for name, df in part.items():
            if "member_id" not in df or df.empty:
                continue
            mask = erasure.erased_mask(settings, df["member_id"])
            if mask.any():
                members |= set(df.loc[mask, "member_id"].astype(str))
                part[name] = df.loc[~mask].reset_index(drop=True)
                if part is shop.tables:
                    rows[name] = rows.get(name, 0) + int(mask.sum())
                    rep = shop.report.get(name)
                    if rep is not None and hasattr(rep, "kept"):
                        rep.kept -= int(mask.sum())
    return {"members": len(members), "rows": rows}


def scrub_snapshots(settings: MemberwiseSettings) -> int:
    """Drop erased members from every tag snapshot in ``settings``' feature repo and from its
    member table; returns the rows dropped."""
    paths = sorted(repo.tags_source_path(settings).glob("*.parquet"))
    paths += sorted(settings.members_dir.glob("*.parquet"))
    return sum(erasure.scrub_parquet(settings, p) for p in paths)


def scrub_online(settings: MemberwiseSettings, store: Any) -> int:
    """Remove erased members from the (SQLite) online store of ``store``."""
    return erasure.scrub_sqlite_online(settings, store)


def erase(settings: MemberwiseSettings, member_ids: Sequence[str]) -> dict[str, Any]:
    """Erase ``member_ids``: record their suppressions, delete them from the committed
    online store at once and scrub the committed tag snapshots and member table. Returns
    ``{"erased": n, "online": members that had online rows, "snapshot_rows": n}``."""
    ids = list(dict.fromkeys(str(m) for m in member_ids))
    digests = erasure.suppress(settings, ids)
    online = 0
    if (settings.feast_dir / "feature_store.yaml").exists():
        with contextlib.redirect_stdout(io.StringIO()):
            online = erasure.delete_online(repo.feature_store(settings), ids)
    rows = scrub_snapshots(settings) if settings.feast_dir.exists() else 0
    store_rows = MemberStore(settings).forget(ids)  # segments, exports, the console: at once
    audit("erasure", None, settings, members=len(ids), digests=digests, source="cli")
    return {"erased": len(ids), "online": online, "snapshot_rows": rows, "member_store": store_rows}
