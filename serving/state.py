"""What the app loads once at start-up and shares with every request: the decision core
over the champion models, and a reader of members' online features."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
import pyarrow.parquet as pq

from features import repo
from features.settings import MemberwiseSettings
from models.decision import Decider
from models.registry import Champions, load_champions
from serving.fallback import Breaker, GuardedReader, MemberRead, Profiles
from serving.vocabulary import DegradedReason, LifecycleStage, RfmSegment, Tag, ValueTier

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
    """Reads members' features from the Feast online store, by the decision's services,
    through the provider's ``online_read`` (one key lookup, no per-call registry work)."""

    store: Any
    refs: list[str]
    view: Any = None  # the tags feature view, resolved once from the registry

    @classmethod
    def open(cls, settings: MemberwiseSettings, warm: bool = True) -> OnlineFeatures:
        """Open the store (registry lookups only). ``warm``: one read so the first request
        pays no set-up cost; a failing warm read is left to the circuit breaker."""
        store = serving_store(settings)
        refs: list[str] = []
        for name in SERVICES:
            for proj in store.get_feature_service(name).feature_view_projections:
                refs += [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
        reader = cls(store, list(dict.fromkeys(refs)), store.get_feature_view(repo.TAGS_VIEW))
        if warm:
            try:
                reader.member(PROBE_MEMBER)
            except Exception as exc:  # the store may be down: reads then degrade and retry
                log.warning("online store not answering at start-up: %s", type(exc).__name__)
        return reader

    def member(self, member_id: str) -> dict[str, Any] | None:
        if self.view is None:  # opened by hand without the view: Feast's full read path
            resp = self.store.get_online_features(
                features=self.refs, entity_rows=[{"member_id": member_id}]
            ).to_dict()
            values = {k: v[0] for k, v in resp.items() if k != "member_id"}
            return None if all(v is None for v in values.values()) else values
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        key = EntityKey(join_keys=[repo.JOIN_KEY], entity_values=[Value(string_val=member_id)])
        names = [r.split(":", 1)[1] for r in self.refs]
        [(_, row)] = self.store.provider.online_read(
            config=self.store.config, table=self.view, entity_keys=[key], requested_features=names
        )
        if not row:
            return None
        values = {n: feast_value_type_to_python_type(row[n]) if n in row else None for n in names}
        return None if all(v is None for v in values.values()) else values


def serving_store(settings: MemberwiseSettings) -> Any:
    """The home's FeatureStore for serving reads: a Redis online store is reached with
    socket timeouts of ``serving.store_timeout_ms`` and no client-side retries, so a read
    of a dead or hung Redis fails fast instead of blocking a thread for seconds."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    config = repo.store_config(settings)
    if settings.stores.online_store == "redis":
        t = settings.serving.store_timeout_ms / 1000
        config["online_store"]["connection_string"] += (
            f",socket_timeout={t},socket_connect_timeout={t},retry=null"
        )
    return FeatureStore(
        config=RepoConfig(**config, repo_path=settings.feast_dir),
        repo_path=str(settings.feast_dir),
    )


def decider_for(champions: Champions, as_of: str | None) -> Decider:
    """The decision core over ``champions``, reading the feature services' model inputs."""
    return Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, as_of=as_of)


@dataclass
class AppState:
    """The loaded champions (``decider``), the online reader (``features``; None while the
    store cannot be opened) and what degraded answers are built from (``profiles``).

    Ready when the models are loaded: with the online store down or slow, member answers
    come from fallbacks (:mod:`serving.fallback`) and ``degraded_reason`` says why.
    ``decider`` is replaced whole by a reload (:mod:`serving.reload`), so a request that
    took it once is answered by one set of models.
    """

    settings: MemberwiseSettings
    decider: Decider | None = None
    features: FeatureReader | None = None
    as_of: str | None = None
    error: str | None = None
    precomputed: int = 0
    profiles: Profiles = field(default_factory=Profiles)
    store_error: str | None = None
    _guard: GuardedReader | None = field(default=None, init=False, repr=False)
    _forgotten: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def ready(self) -> bool:
        return self.decider is not None

    @property
    def champions(self) -> Champions | None:
        return self.decider.champions if self.decider is not None else None

    @property
    def degraded_reason(self) -> DegradedReason | None:
        """Why member answers are degraded now (None: they are not)."""
        if self.features is None:
            return DegradedReason.STORE_NOT_CONNECTED
        return self._guard.last_reason if self._guard is not None else None

    def probe_store(self) -> DegradedReason | None:
        """One guarded read of a member no store has (the trial read of an open circuit
        once its reset time has passed): what ``degraded_reason`` then says."""
        if self.features is None and not self.connect_store():
            return DegradedReason.STORE_NOT_CONNECTED
        return self.read_member(PROBE_MEMBER).reason

    def load(self) -> None:
        """Load every champion, then open the feature store; records the error if any.
        A store that cannot be opened leaves the state ready but degraded, and
        :meth:`connect_store` (called again by the app every ``serving.store_retry_seconds``)
        opens it later."""
        try:
            latest = self.settings.home_dir / "latest_run.json"
            as_of = json.loads(latest.read_text())["as_of"] if latest.exists() else None
            self.decider, self.precomputed = self.build_decider(
                load_champions(self.settings.tracking_uri), as_of
            )
            self.as_of = as_of
            self.profiles = Profiles.from_snapshot(
                repo.snapshot_path(self.settings, as_of) if as_of else None,
                self.settings.serving.fallback_max_members,
            )
            self.error = None
        except Exception as exc:  # reported by /readyz and the 503s; /healthz still answers
            log.exception("models not loaded")
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.connect_store()

    def build_decider(self, champions: Champions, as_of: str | None) -> tuple[Decider, int]:
        """The decision core over ``champions``, with churn and coupon precomputed for the
        tag snapshot of ``as_of`` when it is small enough (and how many rows were)."""
        snapshot = self._snapshot(as_of)
        decider = decider_for(champions, as_of)
        precomputed = 0
        if snapshot is not None:
            check_vocabulary(snapshot, live_tag_names(self.settings))
            try:
                precomputed = decider.precompute(snapshot)
            except Exception:  # an optimisation only: requests then decide themselves
                log.exception("churn and coupon decisions not precomputed")
        return decider, precomputed

    def connect_store(self) -> bool:
        """Open the online store if it is not open; True when it is."""
        if self.features is not None:
            return True
        try:
            self.features = OnlineFeatures.open(self.settings)
            self.store_error = None
            log.info("online store opened")
            self.read_member(PROBE_MEMBER)  # the breaker and degraded_reason start from here
            return True
        except Exception as exc:
            log.warning("online store not opened (retrying): %s", type(exc).__name__)
            self.store_error = f"online store not opened: {type(exc).__name__}"
            return False

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

    def read_member(self, member_id: str) -> MemberRead:
        """One member's online features within ``serving.online_budget_ms``, or why not
        (the store not opened, down, slow, or its circuit open)."""
        if member_id in self._forgotten:
            return MemberRead(None)
        features = self.features
        if features is None:
            return MemberRead(None, DegradedReason.STORE_NOT_CONNECTED)
        guard = self._guard
        if guard is None or guard.reader is not features:
            cfg = self.settings.serving
            breaker = guard.breaker if guard is not None else None
            guard = self._guard = GuardedReader(
                features,
                cfg.online_budget_ms / 1000,
                breaker or Breaker(cfg.breaker_failures, cfg.breaker_reset_seconds),
            )
        return guard.member(member_id)

    def member_features(self, member_id: str) -> dict[str, Any] | None:
        """Online features of one member by name, or None for a member the store lacks
        (and when the read failed: :meth:`read_member` says why)."""
        return self.read_member(member_id).features

    def fallback_profile(self, member_id: str) -> dict[str, Any] | None:
        """The member's country, RFM segment and time zone as of the tag snapshot."""
        return None if member_id in self._forgotten else self.profiles.get(member_id)

    def forget(self, member_id: str) -> None:
        """Drop a member from everything serving keeps in memory about them (the fallback
        profiles), and answer them as unknown from now on even if the online store still
        has their row. For erasure; the online row itself is the store's to delete."""
        self._forgotten.add(member_id)
        self.profiles.forget(member_id)


PROBE_MEMBER = "_"  # an id no member has (the API's ids are never "_" alone in practice)
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
