"""The Feast feature repo: entity, source, feature view and one feature service per model.

``HOME/feast`` is a Feast feature repository. :func:`write_repo` writes its
``feature_store.yaml`` (from the settings, on every run) and a small definitions module,
``member_repo.py``, which builds the objects of :func:`definitions` with paths relative to
the folder. :func:`apply` registers what that module defines through Feast's own repo
parser, as ``feast apply`` run there would, so ``feast plan`` in ``HOME/feast`` reports no
changes after a run. :func:`materialize` loads the online store incrementally. Training
and serving fetch features by the service names below, so the two can never disagree.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from features.settings import MemberwiseSettings
from features.tags import INT_FEATURES, NUMERIC_FEATURES, STRING_FEATURES

ENTITY = "member"
JOIN_KEY = "member_id"
TAGS_VIEW = "member_tags"
TAGS_SOURCE = "member_tags_snapshots"
LEVELS_VIEW = "member_levels"  # features.levels.LEVELS_VIEW: growth value and level per run
LEVELS_SOURCE = "member_levels_snapshots"

# The definitions module the feast CLI reads in HOME/feast, and the variable that holds
# the Redis connection string there when it carries a password (Feast expands ${VAR}).
REPO_MODULE = "member_repo"
REDIS_URL_ENV = "MEMBERWISE_STORES__REDIS_URL"  # the tree's name of stores.redis_url
# Start of the first materialization: every snapshot up to the run's as-of date.
EPOCH = datetime(1970, 1, 2, tzinfo=UTC)
# Feast compares a feature view's source including its created / updated stamps, which a
# new FileSource sets to the time it is built; a fixed stamp keeps `feast plan` quiet.
SOURCE_STAMP = datetime(2024, 1, 1, tzinfo=UTC)

# One feature service per model version; bump the suffix when the feature list changes.
CHURN_SERVICE = "churn_v2"
COUPON_SERVICE = "coupon_v2"
SEND_TIME_SERVICE = "send_time_v1"
PROFILE_SERVICE = "member_profile_v3"

# Model inputs (numeric, NaN allowed); the order is the column order the models see.
CHURN_FEATURES: list[str] = [
    "recency_days", "frequency", "monetary", "avg_order_value", "max_order_value",
    "orders_30d", "orders_recent", "orders_previous", "spend_recent", "spend_previous",
    "tenure_days", "usual_cycle_days", "gap_ratio", "distinct_products", "discount_share",
    "events_30d", "events_recent", "messages_recent", "opens_recent", "open_rate",
    "r_score", "f_score", "m_score", "purchase_days", "first_purchase_days",
]  # fmt: skip
COUPON_FEATURES: list[str] = [
    "recency_days", "frequency", "monetary", "avg_order_value", "orders_recent",
    "spend_recent", "tenure_days", "discount_share", "open_rate", "r_score", "f_score",
    "m_score", "coupon_offers", "coupon_redemption_rate",
]  # fmt: skip
SEND_TIME_FEATURES: list[str] = ["timezone", "rfm_segment", "preferred_channel", "active_how"]
PROFILE_FEATURES: list[str] = [
    "rfm_segment", "lifecycle_stage", "value_tier", "tags", "r_score", "f_score", "m_score",
    "top_category", "categories", "country", "median_order_value", "order_value_ratio",
    "discount_order_share", "discount_order_lift",
]  # fmt: skip


def tags_source_path(settings: MemberwiseSettings) -> Path:
    """Folder of timestamped tag snapshots (one Parquet file per as-of date)."""
    return settings.offline_dir / TAGS_VIEW


def snapshot_path(settings: MemberwiseSettings, as_of: date | str) -> Path:
    """The tag snapshot file of one as-of date (``date`` or ISO string)."""
    day = as_of if isinstance(as_of, str) else as_of.isoformat()
    return tags_source_path(settings) / f"as_of={day}.parquet"


def snapshot_time(as_of: date) -> datetime:
    """The event timestamp of the snapshot of ``as_of`` (midnight UTC, as compute_tags
    stamps it)."""
    return datetime.combine(as_of, datetime.min.time(), tzinfo=UTC)


def load_end(as_of: date) -> datetime:
    """Where a load into the online store for ``as_of`` ends: the last microsecond of the
    as-of day. The Parquet offline store includes both ends of a window, and the next load
    starts where this one ended; ending between snapshots (they are at midnight) makes the
    window take the as-of snapshot and the next window none of it again."""
    return snapshot_time(as_of) + timedelta(days=1, microseconds=-1)


def source_location(settings: MemberwiseSettings) -> str:
    """The snapshot folder as the feature repo names it: relative to HOME/feast (Feast
    resolves a relative FileSource path against the repo path), absolute if outside."""
    path = tags_source_path(settings)
    try:
        return path.relative_to(settings.feast_dir).as_posix()
    except ValueError:
        return str(path)


def definitions(
    source_path: str, tag_version: str = "", rule_tags: Sequence[str] = (),
    levels_path: str | None = None,
) -> list[Any]:  # fmt: skip
    """Entity, source, feature view and feature services, in that order (then the levels'
    source and view when ``levels_path`` is given).

    ``source_path`` is the snapshot folder, relative to the feature repo (see
    :func:`source_location`). ``tag_version``: the content hash of the tag rules file the
    snapshots were tagged with, kept as the view's ``tag_version`` tag; ``rule_tags``: that
    file's plain tags (one bool feature each). ``HOME/feast/member_repo.py`` calls this for
    the feast CLI.
    """
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Bool, Float64, Int64, String

    member = Entity(
        name=ENTITY,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="A member of the shop's programme",
    )
    source = FileSource(
        name=TAGS_SOURCE,
        path=source_path,
        timestamp_field="event_timestamp",
        description="Member tags, one snapshot per as-of date",
    )
    source.created_timestamp = source.last_updated_timestamp = SOURCE_STAMP
    schema = (
        [Field(name=c, dtype=Float64) for c in NUMERIC_FEATURES]
        + [Field(name=c, dtype=Bool) for c in rule_tags]
        + [Field(name=c, dtype=String) for c in STRING_FEATURES]
        + [Field(name=c, dtype=Int64) for c in INT_FEATURES]
    )
    view = FeatureView(
        name=TAGS_VIEW,
        entities=[member],
        ttl=timedelta(days=3650),
        schema=schema,
        source=source,
        online=True,
        description="RFM, lifecycle, value tier, rule tags and early warnings as of a date",
        tags={"tag_version": tag_version} if tag_version else {},
    )
    services = [
        FeatureService(name=CHURN_SERVICE, features=[view[CHURN_FEATURES]]),
        FeatureService(name=COUPON_SERVICE, features=[view[COUPON_FEATURES]]),
        FeatureService(name=SEND_TIME_SERVICE, features=[view[SEND_TIME_FEATURES]]),
        FeatureService(name=PROFILE_SERVICE, features=[view[PROFILE_FEATURES]]),
    ]
    extra: list[Any] = []
    if levels_path is not None:
        lsource = FileSource(
            name=LEVELS_SOURCE,
            path=levels_path,
            timestamp_field="event_timestamp",
            description="Growth value and member level, one snapshot per run",
        )
        lsource.created_timestamp = lsource.last_updated_timestamp = SOURCE_STAMP
        extra = [lsource, FeatureView(
            name=LEVELS_VIEW,
            entities=[member],
            ttl=timedelta(days=3650),
            schema=[Field(name="level", dtype=String), Field(name="level_rank", dtype=Int64),
                    Field(name="earned_level", dtype=String),
                    Field(name="growth_value", dtype=Float64)],
            source=lsource,
            online=False,
            description="Member level history: the level held, the one the value earns, growth value",
        )]  # fmt: skip
    return [member, source, view, *services, *extra]


def live_rules(settings: MemberwiseSettings) -> Any:
    """The tag rules in force for this home (features.rules.live_rules_path)."""
    from features.rules import live_rules_path, load_rules

    return load_rules(live_rules_path(settings))


def _relative(settings: MemberwiseSettings, path: Path) -> str:
    try:
        return path.relative_to(settings.feast_dir).as_posix()
    except ValueError:
        return str(path)


def _has_secret(redis_url: str) -> bool:
    """A Redis connection string with a password (``host:port,password=...`` or
    ``redis://user:pw@host``) is kept out of the files of the home."""
    return "password=" in redis_url.lower() or "@" in redis_url


def store_config(settings: MemberwiseSettings, for_file: bool = False) -> dict[str, Any]:
    """The body of ``feature_store.yaml``: file registry and SQLite online store next to it
    (paths relative to HOME/feast), or Redis; Parquet snapshots as the offline store.

    With ``for_file`` a Redis connection string holding a password is written as
    ``${MEMBERWISE_STORES__REDIS_URL}``, which Feast expands from the environment when it loads the
    file (single-quoted there, so a value with a single quote cannot be written this way);
    the process itself uses the real value.
    """
    if settings.stores.online_store == "redis":
        url = settings.stores.redis_url
        if for_file and _has_secret(url):
            url = "${" + REDIS_URL_ENV + "}"
        online: dict[str, Any] = {"type": "redis", "connection_string": url}
    else:
        online = {"type": "sqlite", "path": "online.db"}
    return {
        "project": settings.stores.feast_project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": "registry.db", "cache_ttl_seconds": 0},
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def repo_config(settings: MemberwiseSettings) -> Any:
    """Feast RepoConfig for this home (what ``feature_store.yaml`` says, secrets included)."""
    from feast.repo_config import RepoConfig

    return RepoConfig(**store_config(settings), repo_path=settings.feast_dir)


def _module_text(settings: MemberwiseSettings) -> str:
    from features.rules import tag_names, without_scores

    rules = live_rules(settings)
    levels = _relative(settings, settings.offline_dir / LEVELS_VIEW)
    args = {"source_path": source_location(settings), "tag_version": rules.version,
            "rule_tags": tag_names(without_scores(rules)), "levels_path": levels}  # fmt: skip
    objects = definitions(**args)
    names = [obj.name for obj in objects]
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise ValueError(f"Feast object names must be distinct identifiers: {names}")
    targets = "".join(f"    {n},\n" for n in names)
    return (
        f'"""Feast definitions of this memberwise home, written by `memberwise run` on every\n'
        "run (edits here are overwritten).\n\n"
        "`feast plan`, `feast apply` and `feast ui` work from this folder with the feast of the\n"
        "memberwise environment, which imports the definitions from its `features` package.\n"
        'Paths are relative to this folder, so the home can be moved or copied.\n"""\n\n'
        "from features.repo import definitions\n\n"
        f"(\n{targets}) = definitions(**{json.dumps(args)})\n"
    )


def write_repo(settings: MemberwiseSettings) -> Path:
    """Write ``feature_store.yaml`` (from the settings) and ``member_repo.py`` into
    HOME/feast, replacing what was there; returns the folder."""
    import yaml

    class Dumper(yaml.SafeDumper):
        """Single-quotes ${VAR} references, so the expanded value stays one YAML string."""

    def represent(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "'" if value.startswith("${") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent)
    folder = settings.feast_dir
    folder.mkdir(parents=True, exist_ok=True)
    body = yaml.dump(store_config(settings, for_file=True), Dumper=Dumper, sort_keys=False)
    (folder / "feature_store.yaml").write_text(body)
    (folder / f"{REPO_MODULE}.py").write_text(_module_text(settings))
    return folder


def feature_store(settings: MemberwiseSettings) -> Any:
    """A FeatureStore for this home (writes nothing; :func:`write_repo` does)."""
    from feast import FeatureStore

    return FeatureStore(config=repo_config(settings), repo_path=str(settings.feast_dir))


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Feast's repo parser imports the repo's modules by name relative to the working
    directory; give it that, then put the working directory, path and modules back."""
    cwd = os.getcwd()
    entry = str(folder)
    sys.modules.pop(REPO_MODULE, None)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(entry)
        sys.modules.pop(REPO_MODULE, None)


def apply(store: Any) -> None:
    """Register the objects the repo folder defines and delete those it no longer does,
    as ``feast apply`` there would (same parser, same diff against the registry).

    Feast keeps a feature view's source as first registered (a later apply updates only
    its metadata) and stamps the data sources it registers with the time. So the sources
    are registered as copies, leaving the view's own source with its fixed stamp, and a
    view registered with another source (a home written before paths were relative) is
    replaced, with its online rows and materialization history.
    """
    import copy

    from feast.data_source import DataSource
    from feast.project import Project
    from feast.repo_operations import extract_objects_for_apply_delete, parse_repo

    folder = Path(store.repo_path).resolve()
    with _inside(folder):
        contents = parse_repo(folder)
    if not contents.projects:
        contents.projects.append(Project(name=store.project))
    for attempt in range(2):
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
            store.project, store.registry, contents
        )
        to_apply = [copy.copy(o) if isinstance(o, DataSource) else o for o in to_apply]
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
        stale = [
            v
            for v in contents.feature_views
            if _source_proto(store.get_feature_view(v.name)) != _source_proto(v)
        ]
        if not stale or attempt:
            break
        store.apply([], objects_to_delete=stale, partial=False)
    # Record the online tables in the registry as `feast apply` does (`feast plan` compares).
    _, _, infra = store.plan(contents)
    store.registry.update_infra(infra, store.project, commit=True)


def _source_proto(view: Any) -> Any:
    return view.batch_source.to_proto() if view.batch_source is not None else None


@dataclass(frozen=True)
class Materialization:
    """One load of the tags view into the online store: the event-time window
    ``[start, end]`` (UTC, both ends included by the Parquet offline store) and why.

    ``first``: nothing loaded yet, every snapshot up to the as-of date. ``incremental``:
    only what is newer than the last load. ``rebuild``: the as-of date is the last one
    loaded or earlier, so its snapshot was rewritten or rows of later snapshots are online;
    the view's online rows are dropped and loaded again up to the as-of date.
    """

    kind: Literal["first", "incremental", "rebuild"]
    start: datetime
    end: datetime


def plan_materialization(
    intervals: Sequence[tuple[datetime, datetime]], end: datetime
) -> Materialization:
    """What to load for a run ending at ``end``, given the view's past loads in the order
    they ran (Feast's ``materialization_intervals``)."""
    if not intervals:
        return Materialization("first", EPOCH, end)
    last = _aware(intervals[-1][1])
    if last < end:
        return Materialization("incremental", last, end)
    return Materialization("rebuild", EPOCH, end)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def materialize(store: Any, as_of: date) -> Materialization:
    """Bring the online store to the snapshot of ``as_of`` (the latest snapshot at or
    before it, per member) and return what was loaded.

    An incremental load goes through Feast's ``materialize_incremental``, which starts at
    the latest end it has recorded; after a rebuild to an earlier date that end is later
    than what is online, so the window is then given explicitly.
    """
    view = store.get_feature_view(TAGS_VIEW)
    plan = plan_materialization(view.materialization_intervals, load_end(as_of))
    if plan.kind == "rebuild":
        _drop_online_rows(store, view)
    recorded = view.most_recent_end_time
    if plan.kind == "incremental" and recorded is not None and _aware(recorded) == plan.start:
        store.materialize_incremental(end_date=plan.end, feature_views=[TAGS_VIEW])
    else:
        store.materialize(start_date=plan.start, end_date=plan.end, feature_views=[TAGS_VIEW])
    return plan


def _drop_online_rows(store: Any, view: Any) -> None:
    """Delete the view's rows from the online store (SQLite table or Redis hash fields),
    leaving it ready for writes."""
    for delete, keep in (([view], []), ([], [view])):
        store.provider.update_infra(
            project=store.project,
            tables_to_delete=delete,
            tables_to_keep=keep,
            entities_to_delete=[],
            entities_to_keep=[],
            partial=True,
        )
