"""A campaign's target members: the member table's rows a segment selects.

:func:`target_members` is the one place campaigns ask "who is in this segment"; it reads
the member table (``features.member_table``, written by a run) and evaluates an inline
predicate in the tag-rule language (``features.rules``: parsed and type-checked, never run
as code). A saved segment's name is resolved through the member store
(``features.member_store.MemberStore.segment``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from features import member_table, repo
from features.rules import RuleError, check_types, feature_kinds, parse_rule, to_mask
from features.settings import MemberwiseSettings


class NoMembers(LookupError):
    """No member table (nor tag snapshot) to select from yet."""


def member_frame(settings: MemberwiseSettings) -> pd.DataFrame:
    """The member table, else the latest run's tag snapshot. Raises :class:`NoMembers`."""
    path = member_table.path(settings.members_dir)
    if not path.exists():
        latest = settings.home_dir / "latest_run.json"
        if latest.exists():
            as_of = str(json.loads(latest.read_text())["as_of"])
            path = Path(repo.snapshot_path(settings, as_of))
    if not path.exists():
        raise NoMembers("no member table yet: run `memberwise run` first")
    frame = pd.read_parquet(path)
    if "lifecycle" not in frame and "lifecycle_stage" in frame:
        frame["lifecycle"] = frame["lifecycle_stage"]
    return frame


def saved_segment(settings: MemberwiseSettings, name: str) -> Any:
    """The predicate of the saved segment ``name`` in the member store (a rule tree, as
    ``features.rules.parse_rule`` reads it). Raises LookupError when it is unknown."""
    from features.member_store import MemberStore

    return MemberStore(settings).segment(name).predicate


def select(frame: pd.DataFrame, predicate: str | Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows of ``frame`` where ``predicate`` (compact text or a rule tree) holds (None or
    blank: every row).
    Raises RuleError for a predicate that does not parse or names an unknown feature."""
    if predicate is None or (isinstance(predicate, str) and not predicate.strip()):
        return frame
    expr = parse_rule(dict(predicate) if isinstance(predicate, Mapping) else predicate)
    problems = check_types(expr, feature_kinds(frame))
    if problems:
        raise problems[0]
    return frame.loc[to_mask(expr, frame)]


def target_members(
    settings: MemberwiseSettings, segment_or_predicate: str | None, *, saved: bool = False
) -> pd.DataFrame:
    """The member table's rows in the segment: ``segment_or_predicate`` is an inline
    predicate, or with ``saved=True`` a saved segment's name. Raises :class:`NoMembers`,
    LookupError (unknown saved segment) or RuleError (bad predicate)."""
    frame = member_frame(settings)
    predicate = saved_segment(settings, segment_or_predicate) if saved and segment_or_predicate \
        else segment_or_predicate  # fmt: skip
    return select(frame, predicate).reset_index(drop=True)


__all__ = ["NoMembers", "RuleError", "member_frame", "saved_segment", "select", "target_members"]
