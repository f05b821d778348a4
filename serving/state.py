"""What the app loads once at start-up and shares with every request: the decision core
over the champion models, and a reader of members' online features."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import pyarrow.parquet as pq

from features import repo
from features.settings import MemberwiseSettings
from models.decision import Decider
from models.registry import Champions, load_champions
from serving.vocabulary import LifecycleStage, RfmSegment, Tag, ValueTier

log = logging.getLogger(__name__)

# every feature service the decision reads: churn, coupon and send-time inputs, and the
# member's profile (tags, lifecycle stage, value tier, RFM segment)
SERVICES: tuple[str, ...] = (
    repo.CHURN_SERVICE, repo.COUPON_SERVICE, repo.SEND_TIME_SERVICE, repo.PROFILE_SERVICE,
)  # fmt: skip


class FeatureReader(Protocol):
    def member(self, member_id: str) -> dict[str, Any] | None:
        """One member's features by name, or None for a member the store lacks."""
        ...


@dataclass
class OnlineFeatures:
    """Reads members' features from the Feast online store, by the decision's services."""

    store: Any
    refs: list[str]

    @classmethod
    def open(cls, settings: MemberwiseSettings) -> OnlineFeatures:
        store = repo.feature_store(settings)
        refs: list[str] = []
        for name in SERVICES:
            for proj in store.get_feature_service(name).feature_view_projections:
                refs += [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
        reader = cls(store, list(dict.fromkeys(refs)))
        reader.member("_")  # one warm read so the first storefront request pays no set-up cost
        return reader

    def member(self, member_id: str) -> dict[str, Any] | None:
        resp = self.store.get_online_features(
            features=self.refs, entity_rows=[{"member_id": member_id}]
        ).to_dict()
        values = {k: v[0] for k, v in resp.items() if k != "member_id"}
        if all(v is None for v in values.values()):
            return None
        return values


def decider_for(champions: Champions, as_of: str | None) -> Decider:
    """The decision core over ``champions``, reading the feature services' model inputs."""
    return Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, as_of=as_of)


@dataclass
class AppState:
    settings: MemberwiseSettings
    decider: Decider | None = None
    features: FeatureReader | None = None
    as_of: str | None = None
    error: str | None = None
    precomputed: int = 0

    @property
    def ready(self) -> bool:
        return self.features is not None and self.decider is not None

    @property
    def champions(self) -> Champions | None:
        return self.decider.champions if self.decider is not None else None

    def load(self) -> None:
        """Load every champion and open the feature store; records the error if any."""
        try:
            champions = load_champions(self.settings.tracking_uri)
            latest = self.settings.home_dir / "latest_run.json"
            as_of = json.loads(latest.read_text())["as_of"] if latest.exists() else None
            snapshot = self._snapshot(as_of)
            decider = decider_for(champions, as_of)
            features = OnlineFeatures.open(self.settings)
            if snapshot is not None:
                check_vocabulary(snapshot, live_tag_names(self.settings))
                try:
                    self.precomputed = decider.precompute(snapshot)
                except Exception:  # an optimisation only: requests then decide themselves
                    log.exception("churn and coupon decisions not precomputed")
            self.decider, self.features, self.as_of = decider, features, as_of
            self.error = None
        except Exception as exc:  # reported by /readyz and the 503s; /healthz still answers
            self.error = f"{type(exc).__name__}: {exc}"

    def _snapshot(self, as_of: str | None) -> pd.DataFrame | None:
        """The latest tag snapshot's decision inputs and vocabulary columns, or None when
        there is none or it has more than ``serving.coupon_precompute_max_members`` rows."""
        if as_of is None:
            return None
        path = repo.snapshot_path(self.settings, as_of)
        if not path.exists():
            return None
        limit = self.settings.serving.coupon_precompute_max_members
        if pq.read_metadata(path).num_rows > limit:
            return None
        cols = [*repo.CHURN_FEATURES, *repo.COUPON_FEATURES, *VOCABULARY_COLUMNS]
        return pq.read_table(path, columns=list(dict.fromkeys(cols))).to_pandas()

    def member_features(self, member_id: str) -> dict[str, Any] | None:
        """Online features of one member by name, or None for a member the store lacks."""
        assert self.features is not None
        return self.features.member(member_id)


VOCABULARY_COLUMNS = ("lifecycle_stage", "value_tier", "rfm_segment", "tags")


def live_tag_names(settings: MemberwiseSettings) -> list[str]:
    """The plain tags of the rules file in force for the home ([] when it cannot be read)."""
    from features.rules import RulesInvalid, live_rules_path, load_rules, tag_names

    try:
        return tag_names(load_rules(live_rules_path(settings)))
    except (OSError, RulesInvalid):
        return []


def check_vocabulary(snapshot: pd.DataFrame, custom_tags: Sequence[str] = ()) -> None:
    """Every stage, tier, segment and tag in the snapshot is one the API's enums know, tags
    also those of the rules in force (``custom_tags``: a marketer's own tag names);
    otherwise a ValueError saying which (the tag configuration changed since the run)."""
    allowed: dict[str, set[str]] = {
        "lifecycle_stage": {str(v) for v in LifecycleStage},
        "value_tier": {str(v) for v in ValueTier},
        "rfm_segment": {str(v) for v in RfmSegment},
        "tags": {str(v) for v in Tag} | {str(t) for t in custom_tags},
    }
    for col, known in allowed.items():
        values = snapshot[col].dropna().astype(str)
        if col == "tags":
            values = values.str.split(",").explode()
            values = values[values != ""]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"the tag snapshot has {col} values {unknown} the configuration does not know "
                f"(known: {sorted(known)}): rerun `memberwise run` with this configuration"
            )


def as_float(v: Any) -> float:
    """An online feature value as a float (None -> NaN)."""
    return float("nan") if v is None else float(v)
