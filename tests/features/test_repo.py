"""HOME/feast as a Feast feature repo: the CLI's view of it, its config and the online loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features import repo
from features.settings import MemberwiseSettings
from features.tags import compute_tags
from pipelines.steps import apply_and_materialize

JUNE = date(2024, 6, 30)
JULY = date(2024, 7, 31)
FEAST = Path(sys.executable).parent / "feast"


def _shop() -> dict[str, pd.DataFrame]:
    """a: two orders by June, a third in July; b: one order in January; c: first order in July."""
    ol = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5"],
        "member_id": ["a", "a", "b", "a", "c"],
        "ts": pd.to_datetime(["2024-06-01 10:00", "2024-06-20 10:00", "2024-01-01 10:00",
                              "2024-07-10 10:00", "2024-07-15 10:00"]),
        "product_id": ["p1", "p2", "p1", "p1", "p2"], "quantity": [1.0] * 5,
        "unit_price": [10.0, 20.0, 5.0, 40.0, 7.0],
    })  # fmt: skip
    return {"order_lines": ol}


def _snapshot(settings: MemberwiseSettings, as_of: date, members: list[str] | None = None):
    tags = compute_tags(_shop(), as_of)
    if members is not None:
        tags = tags[tags["member_id"].isin(members)]
    path = repo.snapshot_path(settings, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags.to_parquet(path, index=False)


def _online(store, members: list[str]) -> dict[str, float | None]:
    got = store.get_online_features(
        features=[f"{repo.TAGS_VIEW}:frequency"],
        entity_rows=[{repo.JOIN_KEY: m} for m in members],
    ).to_dict()
    return dict(zip(got[repo.JOIN_KEY], got["frequency"], strict=True))


def _intervals(store) -> list[tuple[datetime, datetime]]:
    return store.get_feature_view(repo.TAGS_VIEW).materialization_intervals


def _feast(cmd: str, folder: Path) -> str:
    done = subprocess.run(
        [str(FEAST), cmd], cwd=folder, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, f"feast {cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_snapshot_time_is_the_event_timestamp_compute_tags_writes():
    tags = compute_tags(_shop(), JUNE)
    assert set(tags["event_timestamp"]) == {pd.Timestamp(repo.snapshot_time(JUNE))}


def test_a_load_ends_between_the_snapshots():
    assert repo.snapshot_time(JUNE) < repo.load_end(JUNE) < repo.snapshot_time(date(2024, 7, 1))


def test_plan_materialization_first_incremental_rebuild():
    june, july = repo.load_end(JUNE), repo.load_end(JULY)
    first = repo.plan_materialization([], june)
    assert (first.kind, first.start, first.end) == ("first", repo.EPOCH, june)
    step = repo.plan_materialization([(repo.EPOCH, june)], july)
    assert (step.kind, step.start, step.end) == ("incremental", june, july)
    for end in (june, july):  # same as-of again, or earlier than the last load
        again = repo.plan_materialization([(repo.EPOCH, june), (june, july)], end)
        assert (again.kind, again.start) == ("rebuild", repo.EPOCH)
    # after a rebuild to June, the next load starts from June, not from July
    after = repo.plan_materialization([(repo.EPOCH, july), (repo.EPOCH, june)], july)
    assert (after.kind, after.start) == ("incremental", june)
    # a first load or a rebuild may start at a floor (the as-of snapshot)
    floor = repo.snapshot_time(JUNE)
    assert repo.plan_materialization([], june, floor).start == floor
    assert repo.plan_materialization([(floor, june)], june, floor).start == floor


def test_a_first_load_reads_only_the_as_of_snapshot_unless_told_it_is_partial(tmp_path):
    # May's snapshot holds a member that June's (cut down here) does not: a complete
    # as-of snapshot is the whole truth, a partial one needs every snapshot since 1970
    for complete, expected in ((True, None), (False, 1.0)):
        settings = MemberwiseSettings(home=tmp_path / str(complete))
        _snapshot(settings, date(2024, 5, 31))
        _snapshot(settings, JUNE, members=["a"])
        repo.write_repo(settings)
        store = repo.feature_store(settings)
        repo.apply(store)
        plan = repo.materialize(store, JUNE, complete=complete)
        assert plan.start == (repo.snapshot_time(JUNE) if complete else repo.EPOCH)
        assert _online(store, ["a", "b"]) == {"a": 2.0, "b": expected}


@pytest.mark.slow
def test_feast_cli_in_the_home_sees_no_changes_and_apply_keeps_everything(tmp_path):
    settings = MemberwiseSettings(home=tmp_path / "home")
    _snapshot(settings, JUNE)
    apply_and_materialize(settings, JUNE)
    folder = settings.feast_dir
    assert (folder / f"{repo.REPO_MODULE}.py").exists()

    plan = _feast("plan", folder)
    assert "No changes to registry" in plan and "No changes to infrastructure" in plan, plan
    applied = _feast("apply", folder)
    assert "No changes to registry" in applied and "Deleted" not in applied, applied

    store = repo.feature_store(settings)
    assert [e.name for e in store.list_entities()] == [repo.ENTITY]
    assert sorted(v.name for v in store.list_feature_views()) == sorted(
        [repo.TAGS_VIEW, repo.LEVELS_VIEW]
    )
    assert {s.name for s in store.list_feature_services()} == {
        repo.CHURN_SERVICE, repo.COUPON_SERVICE, repo.SEND_TIME_SERVICE, repo.PROFILE_SERVICE,
    }  # fmt: skip
    assert _online(store, ["a", "b"]) == {"a": 2.0, "b": 1.0}

    # every path in the repo is relative: a moved home serves and joins from its new place
    moved = tmp_path / "moved"
    shutil.move(settings.home_dir, moved)
    store = repo.feature_store(MemberwiseSettings(home=moved))
    assert _online(store, ["a"]) == {"a": 2.0}
    hist = store.get_historical_features(
        entity_df=pd.DataFrame({"member_id": ["b"], "event_timestamp": [pd.Timestamp(JULY, tz="UTC")]}),
        features=[f"{repo.TAGS_VIEW}:frequency"],
    ).to_df()  # fmt: skip
    assert hist["frequency"].tolist() == [1.0]


def test_feature_store_yaml_follows_the_online_store_setting(tmp_path, monkeypatch):
    def written(**kw) -> dict:
        settings = MemberwiseSettings(home=tmp_path, stores=kw)
        repo.write_repo(settings)
        return yaml.safe_load((settings.feast_dir / "feature_store.yaml").read_text())

    sqlite = written(online_store="sqlite")
    assert sqlite["online_store"] == {"type": "sqlite", "path": "online.db"}
    assert sqlite["registry"]["path"] == "registry.db"
    assert sqlite["offline_store"] == {"type": "file"}

    redis = written(online_store="redis", redis_url="10.0.0.5:6380")
    assert redis["online_store"] == {"type": "redis", "connection_string": "10.0.0.5:6380"}
    assert redis["project"] == "memberwise" and redis["registry"] == sqlite["registry"]

    secret = "10.0.0.5:6380,password=s3cr#t: x,ssl=true"
    written(online_store="redis", redis_url=secret)
    text = (tmp_path / "feast" / "feature_store.yaml").read_text()
    assert "s3cr" not in text and "${" + repo.REDIS_URL_ENV + "}" in text
    from feast.repo_config import load_repo_config

    monkeypatch.setenv(repo.REDIS_URL_ENV, secret)
    loaded = load_repo_config(tmp_path / "feast", tmp_path / "feast" / "feature_store.yaml")
    assert loaded.online_store.connection_string == secret

    assert (
        '"source_path": "offline/member_tags"'
        in (tmp_path / "feast" / f"{repo.REPO_MODULE}.py").read_text()
    )


def test_second_run_materializes_only_the_new_interval(tmp_path):
    settings = MemberwiseSettings(home=tmp_path)
    _snapshot(settings, JUNE)
    store = apply_and_materialize(settings, JUNE)
    june, july = repo.load_end(JUNE), repo.load_end(JULY)
    start = repo.snapshot_time(JUNE)  # a first load reads the as-of snapshot alone
    assert _intervals(store) == [(start, june)]
    assert _online(store, ["a", "b", "c"]) == {"a": 2.0, "b": 1.0, "c": None}

    # The July snapshot holds only a and c; June's file is then changed for b. A load of
    # the new interval alone leaves b as June's first load put it.
    _snapshot(settings, JULY, members=["a", "c"])
    june_file = repo.snapshot_path(settings, JUNE)
    pd.read_parquet(june_file).assign(frequency=99.0).to_parquet(june_file, index=False)
    store = apply_and_materialize(settings, JULY)
    assert _intervals(store) == [(start, june), (june, july)]
    assert _online(store, ["a", "b", "c"]) == {"a": 3.0, "b": 1.0, "c": 1.0}


def test_an_earlier_as_of_rebuilds_the_online_rows(tmp_path):
    settings = MemberwiseSettings(home=tmp_path)
    for as_of in (JUNE, JULY):
        _snapshot(settings, as_of)
        store = apply_and_materialize(settings, as_of)
    assert _online(store, ["a", "c"]) == {"a": 3.0, "c": 1.0}

    store = apply_and_materialize(settings, JUNE)  # back to June: July's rows must go
    assert _online(store, ["a", "b", "c"]) == {"a": 2.0, "b": 1.0, "c": None}
    june, july = repo.load_end(JUNE), repo.load_end(JULY)
    assert _intervals(store)[-1] == (repo.snapshot_time(JUNE), june)

    store = apply_and_materialize(settings, JULY)  # forward again, from June
    assert _intervals(store)[-1] == (june, july)
    assert _online(store, ["a", "c"]) == {"a": 3.0, "c": 1.0}
