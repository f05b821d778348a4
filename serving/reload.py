"""Hot reload: new champions swapped in without a restart and without a failed request.

:func:`reload_champions` reads the registry's ``champion`` aliases; when one has moved
(or the home's latest run changed), it loads the new champions beside the ones serving,
builds a new decision core over them (precomputed like at start-up) and swaps it in with
one assignment: a request holds the decision core it took for its whole answer, so every
answer is made by one set of models, and names their versions (``model_versions``).

:func:`maintenance` runs in the app's lifespan: every ``serving.store_retry_seconds`` it
opens the online store if it could not be opened, and probes it while answers are
degraded (so they return to normal without traffic); every
``serving.reload_interval_seconds`` it calls :func:`reload_champions`.
``POST /v1/admin/reload`` calls it at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from prometheus_client import Counter

from features import repo
from models.registry import CHAMPION, MODEL_NAMES, Champions, load_champions, registered_name
from serving.fallback import Profiles
from serving.state import AppState

log = logging.getLogger(__name__)

RELOADS = Counter(
    "memberwise_model_reloads",
    "Registry checks for moved champion aliases, by outcome (swapped, unchanged, failed)",
    ["outcome"],
)
_LOCK = threading.Lock()  # one reload at a time per process
_MOVED_WHILE_LOADING_TRIES = 3


@dataclass(frozen=True)
class ReloadResult:
    changed: bool  # new champions (or a new run) were swapped in
    versions: dict[str, str]  # the champion versions now served, per model
    previous: dict[str, str]  # those served before
    detail: str


def champion_versions(tracking_uri: str, alias: str = CHAMPION) -> dict[str, str]:
    """The version each model's ``alias`` points at now (a few registry reads, no model
    loading); a model without the alias is left out."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions: dict[str, str] = {}
    for name in MODEL_NAMES:
        try:
            versions[name] = str(
                client.get_model_version_by_alias(registered_name(name), alias).version
            )
        except MlflowException:
            continue
    return versions


def latest_as_of(state: AppState) -> str | None:
    """The as-of date of the home's latest complete run (``latest_run.json``)."""
    latest = state.settings.home_dir / "latest_run.json"
    return json.loads(latest.read_text())["as_of"] if latest.exists() else None


def reload_champions(
    state: AppState,
    load: Callable[[str], Champions] = load_champions,
    versions: Callable[[str], dict[str, str]] = champion_versions,
) -> ReloadResult:
    """Swap in the registry's champions if an alias moved or the latest run changed;
    a state whose models never loaded is loaded in full. A failure leaves the serving
    models in place and is raised (and counted)."""
    with _LOCK:
        try:
            return _reload(state, load, versions)
        except Exception:
            RELOADS.labels("failed").inc()
            raise


def _reload(
    state: AppState,
    load: Callable[[str], Champions],
    versions: Callable[[str], dict[str, str]],
) -> ReloadResult:
    uri = state.settings.tracking_uri
    previous = dict(state.champions.versions) if state.champions is not None else {}
    if state.decider is None:
        state.load()
        if state.error is not None:
            raise RuntimeError(state.error)
        now = dict(state.champions.versions) if state.champions is not None else {}
        RELOADS.labels("swapped").inc()
        return ReloadResult(True, now, previous, "models loaded")
    as_of = latest_as_of(state)
    wanted = versions(uri)
    if wanted == previous and as_of == state.as_of:
        RELOADS.labels("unchanged").inc()
        return ReloadResult(False, previous, previous, "the champions have not moved")
    for _ in range(_MOVED_WHILE_LOADING_TRIES):
        champions = load(uri)
        after = versions(uri)
        if champions.versions == after:
            break
        log.info("a champion alias moved while loading; loading again")
    else:
        raise RuntimeError("champion aliases kept moving while loading; try again")
    decider, precomputed = state.build_decider(champions, as_of)
    if as_of != state.as_of:
        path = repo.snapshot_path(state.settings, as_of) if as_of else None
        state.profiles = Profiles.from_snapshot(path, state.settings.serving.fallback_max_members)
    # the swap: one assignment; requests that took the old core finish with it
    state.decider = decider
    state.as_of, state.precomputed = as_of, precomputed
    now = dict(champions.versions)
    moved = [f"{k} {previous.get(k)} -> {v}" for k, v in now.items() if previous.get(k) != v]
    detail = ", ".join(moved) or f"run as of {as_of}"
    log.info("champions swapped in: %s", detail)
    RELOADS.labels("swapped").inc()
    return ReloadResult(True, now, previous, detail)


async def _maintain(state: AppState) -> None:
    cfg = state.settings.serving
    interval = cfg.reload_interval_seconds
    tick = min(cfg.store_retry_seconds, interval) if interval > 0 else cfg.store_retry_seconds
    next_reload = time.monotonic() + interval
    while True:
        await asyncio.sleep(tick)
        try:
            if state.ready and state.degraded_reason is not None:
                await asyncio.to_thread(state.probe_store)
            if interval > 0 and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + interval
                await asyncio.to_thread(reload_champions, state)
        except Exception as exc:  # logged; serving goes on with what it has
            log.warning("maintenance step failed: %s: %s", type(exc).__name__, exc)


@asynccontextmanager
async def maintenance(state: AppState) -> AsyncIterator[None]:
    """Run the store retries and the registry polling while the app serves."""
    task = asyncio.create_task(_maintain(state), name="memberwise-maintenance")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
