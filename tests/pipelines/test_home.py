"""Generations, the commit, the run lock and MLflow rebasing, on tiny homes (no run)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from features.settings import MemberwiseSettings
from pipelines import home as h


def _settings(tmp_path, **kw) -> MemberwiseSettings:
    return MemberwiseSettings(home=tmp_path / "home", **kw)


def _build(s: MemberwiseSettings, text: str) -> h.Generation:
    with h.building(s) as gen:
        gen.settings.feast_dir.mkdir(parents=True, exist_ok=True)
        (gen.settings.feast_dir / "online.db").write_text(text)
        gen.path("members/members.parquet").write_text(text)
        gen.path("latest_run.json").write_text(text)
    return gen


def test_a_commit_moves_every_linked_entry_together(tmp_path):
    s = _settings(tmp_path)
    _build(s, "one")
    home = s.home_dir
    assert (home / "feast" / "online.db").read_text() == "one"
    assert (home / "members" / "members.parquet").read_text() == "one"
    gen = _build(s, "two")
    assert h.current(home) == gen.folder
    for entry in ("feast/online.db", "members/members.parquet", "latest_run.json"):
        assert (home / entry).read_text() == "two"
    assert (home / "feast").is_symlink() and not (home / "current").readlink().is_absolute()


def test_a_failed_build_leaves_the_committed_generation(tmp_path):
    s = _settings(tmp_path)
    first = _build(s, "one")
    with pytest.raises(RuntimeError), h.building(s) as gen:
        (gen.settings.feast_dir / "online.db").write_text("half")
        raise RuntimeError("stage failed")
    assert h.current(s.home_dir) == first.folder
    assert (s.home_dir / "feast" / "online.db").read_text() == "one"
    assert not gen.folder.exists()


def test_a_generation_starts_as_a_copy_of_the_committed_one(tmp_path):
    s = _settings(tmp_path)
    _build(s, "one")
    with h.building(s) as gen:
        assert (gen.settings.feast_dir / "online.db").read_text() == "one"
        assert gen.settings.members_dir == gen.folder / "members"


def test_old_generations_are_pruned(tmp_path):
    s = _settings(tmp_path, runs={"keep_generations": 2})
    gens = [_build(s, str(i)) for i in range(4)]
    left = sorted(p.name for p in (s.home_dir / h.GENERATIONS).iterdir())
    assert left == sorted(g.name for g in gens[-2:])


def test_a_second_run_refuses_and_a_waiting_one_proceeds(tmp_path):
    s = _settings(tmp_path, runs={"lock_timeout_seconds": 30})
    with h.run_lock(s), pytest.raises(h.RunInProgress, match="--wait"), h.run_lock(s):
        pass
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with h.run_lock(s):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with h.run_lock(s, wait=True):  # waits for the holder, then gets the lock
        assert release.is_set()
    t.join()


def test_a_home_from_before_generations_is_adopted(tmp_path):
    s = _settings(tmp_path)
    home = s.home_dir
    (home / "feast").mkdir(parents=True)
    (home / "feast" / "registry.db").write_text("old")
    (home / "latest_run.json").write_text("{}")
    h.adopt_legacy(home)
    assert (home / "feast").is_symlink()
    assert (home / "feast" / "registry.db").read_text() == "old"
    assert (home / "latest_run.json").read_text() == "{}"


def test_the_path_hook_refuses_what_does_not_move_with_a_commit(tmp_path):
    s = _settings(tmp_path)
    with h.building(s) as gen, pytest.raises(ValueError, match="not in a generation"):
        gen.path("mlflow/x")


def test_mlflow_artifact_paths_follow_a_moved_home(tmp_path):
    s = _settings(tmp_path)
    s.mlflow_dir.mkdir(parents=True)
    old = "file:///somewhere/else/mlflow/artifacts"
    with sqlite3.connect(s.mlflow_dir / "mlflow.db") as con:
        con.execute("CREATE TABLE experiments (name TEXT, artifact_location TEXT)")
        con.execute("CREATE TABLE runs (artifact_uri TEXT)")
        con.execute("INSERT INTO experiments VALUES ('memberwise', ?)", (old,))
        con.execute("INSERT INTO runs VALUES (?), (?)", (old + "/1/abc/artifacts", "s3://b/x"))
    assert h.rebase_mlflow(s) == 2
    with sqlite3.connect(s.mlflow_dir / "mlflow.db") as con:
        runs = [r[0] for r in con.execute("SELECT artifact_uri FROM runs")]
    assert runs == [s.artifact_root + "/1/abc/artifacts", "s3://b/x"]
    assert h.rebase_mlflow(s) == 0  # already this home's
