"""Publish the run's member table (HOME/members/members.parquet) to the member store that
segment queries, profiles, exports and the console read (features/member_store.py)."""

from __future__ import annotations

import pyarrow.parquet as pq

from features import member_table
from features.member_store import MemberStore
from features.settings import MemberwiseSettings


def publish_members(settings: MemberwiseSettings) -> int:
    """Load ``settings.members_dir / members.parquet`` into the member store (replacing the
    previous table atomically). Returns the members loaded. Raises FileNotFoundError when the
    run wrote no member table, ValueError when it lacks contract columns."""
    path = member_table.path(settings.members_dir)
    if not path.exists():
        raise FileNotFoundError(f"no member table at {path}: the run writes it before publishing")
    return MemberStore(settings).load(pq.read_table(path))
