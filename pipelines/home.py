"""A home that survives failure: runs build a new generation and commit it as a whole.

Layout::

    HOME/generations/<name>/   one complete run: feast/ (repo, registry, SQLite online store,
                               tag snapshots), members/, latest_run.json, commit.json
    HOME/current -> generations/<name>          the committed generation (relative symlink)
    HOME/feast -> current/feast                 fixed links, so every reader of HOME/feast,
    HOME/members -> current/members             HOME/members and HOME/latest_run.json sees
    HOME/latest_run.json -> current/latest_run.json   the committed generation

A run (:func:`building`) takes the home's lock, copies the committed generation into a new
folder and builds there (``Generation.settings`` points ``feast_dir`` and ``members_dir`` at
it). Model versions are registered in MLflow as they are trained, but the ``champion`` and
``challenger`` aliases are only staged (:meth:`Generation.stage_aliases`). At the end,
:func:`commit` writes the journal ``commit.json``, swaps ``HOME/current`` with one atomic
rename and then moves the aliases; a run that fails before that leaves the previous
generation, its online store and its aliases untouched, and its own folder is removed. A
commit interrupted between the swap and the aliases is finished by the next run (the
journal says which aliases were still to move).

Anything else a run writes that must move with the commit goes through
:meth:`Generation.path` (the member table does). The MLflow database and its artifacts stay
in ``HOME/mlflow``: versions are only ever added, and the aliases move at commit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from features.settings import MemberwiseSettings

log = logging.getLogger(__name__)

GENERATIONS = "generations"
CURRENT = "current"
JOURNAL = "commit.json"
LOCK = ".run.lock"
# entries of the home that belong to a generation (HOME/<entry> -> current/<entry>)
LINKED = ("feast", "members", "latest_run.json")


class RunInProgress(RuntimeError):
    """Another run holds the home's lock."""


@dataclass
class Generation:
    """One run's folder under ``HOME/generations`` while it is being built.

    ``settings`` is the run's settings with ``feast_dir`` and ``members_dir`` inside the
    generation; every step of the run must use it. ``aliases`` are the registry moves
    (registered model, alias, version) the commit makes.
    """

    home: Path
    name: str
    settings: MemberwiseSettings
    aliases: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.home / GENERATIONS / self.name

    def path(self, name: str) -> Path:
        """Where to write ``name`` (a file or folder relative to the home, e.g.
        ``"members/members.parquet"``) so that it moves with the commit; readers find it at
        ``HOME/<name>`` once committed. Only the entries in ``LINKED`` are linked there."""
        if name.split("/")[0] not in LINKED:
            raise ValueError(f"{name!r} is not in a generation; one of {LINKED}")
        out = self.folder / name
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def stage_aliases(self, moves: list[tuple[str, str, str]]) -> None:
        """Aliases to move at commit: (registered model, alias, version)."""
        self.aliases.extend(moves)


def current(home: Path) -> Path | None:
    """The committed generation's folder, or None before the first commit."""
    link = home / CURRENT
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


@contextmanager
def run_lock(settings: MemberwiseSettings, wait: bool = False) -> Iterator[None]:
    """Hold the home's run lock (``HOME/.run.lock``). Without ``wait``, raise
    :class:`RunInProgress` at once when another run holds it; with it, wait up to
    ``runs.lock_timeout_seconds``."""
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    timeout = settings.runs.lock_timeout_seconds if wait else 0
    lock = FileLock(str(home / LOCK), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        how = f"after waiting {timeout:.0f} s" if wait else "(use --wait to wait for it)"
        raise RunInProgress(
            f"another `memberwise run` is writing into {home} {how}; runs into one home go "
            "one at a time"
        ) from exc
    try:
        yield
    finally:
        lock.release()


@contextmanager
def building(settings: MemberwiseSettings, wait: bool = False) -> Iterator[Generation]:
    """Lock the home, build a new generation, commit it when the block ends without an
    exception, and remove it otherwise (the committed generation keeps serving)."""
    with run_lock(settings, wait):
        gen = begin(settings)
        try:
            yield gen
        except BaseException:
            abort(gen)
            raise
        commit(gen)


def begin(settings: MemberwiseSettings) -> Generation:
    """Start a generation (call with the lock held): adopt a home written before
    generations, finish an interrupted commit, point MLflow's artifact paths at this home,
    and copy the committed generation into a new folder."""
    home = settings.home_dir
    adopt_legacy(home)
    recover(settings)
    rebase_mlflow(settings)
    ns = time.time_ns()  # names sort in the order generations began
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 10**9))
    name = f"{stamp}.{ns % 10**9:09d}Z-{uuid.uuid4().hex[:4]}"
    folder = home / GENERATIONS / name
    base = current(home)
    if base is not None:
        _copy_generation(base, folder)
        (folder / JOURNAL).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    return Generation(home, name, settings.building(folder))


def _copy_generation(src: Path, dst: Path) -> None:
    """Copy a generation. Tag snapshots are never rewritten in place (they are written to a
    temporary file and renamed), so they are hard-linked; everything else is copied."""

    def copy(s: str, d: str) -> None:
        if Path(s).suffix == ".parquet" and "offline" in Path(s).parts:
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=copy)


def commit(gen: Generation) -> None:
    """Make ``gen`` the committed generation: journal, one atomic swap of HOME/current,
    the staged aliases, then delete generations beyond ``runs.keep_generations``."""
    home = gen.home
    journal = gen.folder / JOURNAL
    entry = {"generation": gen.name, "aliases": [list(a) for a in gen.aliases], "done": False}
    _write_json(journal, entry)
    for name in LINKED:
        _ensure_link(home / name, f"{CURRENT}/{name}")
    tmp = home / f".{CURRENT}.{gen.name}"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{GENERATIONS}/{gen.name}", tmp)
    os.replace(tmp, home / CURRENT)  # the commit point
    _finish(gen.settings, journal)
    prune(home, gen.settings.runs.keep_generations)


def _finish(settings: MemberwiseSettings, journal: Path) -> None:
    entry = json.loads(journal.read_text())
    if entry["aliases"]:
        from training.registry import move_aliases, setup_tracking

        setup_tracking(settings.tracking_uri, settings.artifact_root)
        move_aliases([tuple(a) for a in entry["aliases"]])
    entry["done"] = True
    _write_json(journal, entry)


def abort(gen: Generation) -> None:
    """Remove a generation that will not be committed."""
    shutil.rmtree(gen.folder, ignore_errors=True)


def recover(settings: MemberwiseSettings) -> None:
    """Finish a commit that swapped HOME/current but did not move its aliases."""
    base = current(settings.home_dir)
    if base is None:
        return
    journal = base / JOURNAL
    if journal.exists() and not json.loads(journal.read_text()).get("done"):
        log.warning("finishing the interrupted commit of generation %s", base.name)
        _finish(settings, journal)


def prune(home: Path, keep: int) -> None:
    """Delete generations other than the newest ``keep`` committed ones (names sort by
    time) and any never committed."""
    folder = home / GENERATIONS
    live = current(home)
    if not folder.is_dir() or live is None:
        return
    committed = sorted(
        p for p in folder.iterdir() if p.is_dir() and (p / JOURNAL).exists() and p <= live
    )
    kept = set(committed[-keep:]) | {live}
    for p in folder.iterdir():
        if p.is_dir() and p not in kept:
            shutil.rmtree(p, ignore_errors=True)


def adopt_legacy(home: Path) -> None:
    """A home written before generations keeps feast/, members/ and latest_run.json in
    place: move them into a first committed generation and link them."""
    legacy = [n for n in LINKED if (home / n).exists() and not (home / n).is_symlink()]
    if not legacy or (home / CURRENT).is_symlink():
        return
    name = "00000000T000000Z-adopted"
    folder = home / GENERATIONS / name
    folder.mkdir(parents=True, exist_ok=True)
    for n in legacy:
        os.replace(home / n, folder / n)
    _write_json(folder / JOURNAL, {"generation": name, "aliases": [], "done": True})
    for n in LINKED:
        _ensure_link(home / n, f"{CURRENT}/{n}")
    tmp = home / f".{CURRENT}.{name}"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{GENERATIONS}/{name}", tmp)
    os.replace(tmp, home / CURRENT)


def _ensure_link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_symlink():
        path.unlink()
    elif path.exists():  # a real folder left next to the links: keep it aside, do not lose it
        os.replace(path, path.with_name(f"{path.name}.orphan-{uuid.uuid4().hex[:6]}"))
    os.symlink(target, path)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


# -- MLflow artifact paths ------------------------------------------------------------------

# columns holding artifact URIs in MLflow's SQL schema (absent ones are skipped)
_URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)


def rebase_mlflow(settings: MemberwiseSettings) -> int:
    """Point the home's MLflow database at the home's own artifacts.

    MLflow stores absolute artifact URIs; a home copied or moved elsewhere would read and
    write the original's artifacts. When the experiment's artifact location is not this
    home's ``artifact_root``, every URI under the old root is rewritten to the new one
    (SQLite database in the home only; an external tracking server keeps its own).
    Returns the number of rows changed."""
    if settings.stores.mlflow_tracking_uri:
        return 0
    db = settings.mlflow_dir / "mlflow.db"
    if not db.exists():
        return 0
    from training.registry import EXPERIMENT

    new_root = settings.artifact_root
    with sqlite3.connect(db) as con:
        row = con.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (EXPERIMENT,)
        ).fetchone()
        if row is None or row[0] == new_root:
            return 0
        old_root = row[0]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        changed = 0
        for table, col in _URI_COLUMNS:
            if table not in tables:
                continue
            cols = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}  # noqa: S608
            if col not in cols:
                continue
            cur = con.execute(
                f"UPDATE {table} SET {col} = ? || substr({col}, ?) "  # noqa: S608
                f"WHERE substr({col}, 1, ?) = ?",
                (new_root, len(old_root) + 1, len(old_root), old_root),
            )
            changed += cur.rowcount
    log.info("MLflow artifact paths moved from %s to %s (%d rows)", old_root, new_root, changed)
    return changed
