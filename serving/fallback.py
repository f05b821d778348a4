"""Degraded answers instead of errors when the online store is down or slow.

A member's online features are read through :class:`GuardedReader`: the read runs in a
small pool of worker threads and is waited for at most ``serving.online_budget_ms``; a
failed or late read counts towards a circuit :class:`Breaker`, which after
``serving.breaker_failures`` of them in a row stops trying for
``serving.breaker_reset_seconds``, then lets one trial read through and closes again on
its success. So a dead or hung store costs a request at most the budget, most requests
nothing, and the answers come back to normal by themselves when the store does.

When the read does not give features, the member is answered from :class:`Profiles`:
the member's country, RFM segment and time zone from the run's tag snapshot (kept in
memory at start-up), which the decision core turns into popular products of the member's
country (or the member's own products when the products model knows them), no coupon,
and the segment's send hour (``models.decision.Decider.decide_fallback``). Every such
answer says ``degraded: true`` with the :class:`~serving.vocabulary.DegradedReason`, and
the metric ``memberwise_degraded_answers_total`` counts them by reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pyarrow.parquet as pq
from prometheus_client import Counter, Gauge

from serving.vocabulary import DegradedReason

log = logging.getLogger(__name__)

DEGRADED = Counter(
    "memberwise_degraded_answers",
    "Member answers served from fallbacks because the online features could not be read",
    ["reason"],
)
STORE_UP = Gauge(
    "memberwise_online_store_up",
    "1 while online reads succeed (breaker closed), 0 while the breaker is open or half-open",
)
BREAKER_OPENED = Counter(
    "memberwise_online_breaker_opened", "Times the online store's circuit breaker opened"
)

# the profile columns a degraded answer is built from (as the decision core names them)
PROFILE_FALLBACK_COLUMNS: tuple[str, ...] = ("country", "rfm_segment", "timezone")


class FeatureReader(Protocol):
    def member(self, member_id: str) -> dict[str, Any] | None:
        """One member's features by name, or None for a member the store lacks."""
        ...


class MemberRead(NamedTuple):
    """What an online read gave: the features (None for a member the store lacks, or when
    the read failed) and, when it failed, why."""

    features: dict[str, Any] | None
    reason: DegradedReason | None = None

    @property
    def degraded(self) -> bool:
        return self.reason is not None


class BreakerOpen(RuntimeError):
    """The circuit is open: no read is tried until it resets."""


class Breaker:
    """A circuit breaker: ``failures`` failed calls in a row open it; after ``reset_seconds``
    one trial call goes through (half-open) while every other call is refused; the trial's
    success closes it, its failure opens it again.

    Only state changes take the lock; the guarded calls run concurrently (a breaker that
    held a lock around the call would serialise every read of the store).
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failed = 0
        self._opened_at = 0.0

    @property
    def state(self) -> str:
        return self._state

    def before(self) -> None:
        """Raise :class:`BreakerOpen` unless a call may go ahead now."""
        if self._state == self.CLOSED:
            return
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
                self._state = self.HALF_OPEN  # this caller makes the trial call
                return
            if self._state == self.CLOSED:
                return
        raise BreakerOpen(f"circuit {self._state}")

    def succeeded(self) -> None:
        if self._state == self.CLOSED and not self._failed:
            return
        with self._lock:
            self._failed = 0
            if self._state != self.CLOSED:
                log.warning("online store reads succeed again: circuit closed")
            self._state = self.CLOSED
        STORE_UP.set(1)

    def failed(self) -> None:
        with self._lock:
            self._failed += 1
            if self._state == self.HALF_OPEN or (
                self._state == self.CLOSED and self._failed >= self.failures
            ):
                if self._state == self.CLOSED:
                    log.warning("online store reads failing: circuit opened")
                    BREAKER_OPENED.inc()
                self._state = self.OPEN
                self._opened_at = self._clock()
        STORE_UP.set(0)


class GuardedReader:
    """Reads through ``reader`` in at most ``budget_seconds``, behind a :class:`Breaker`.

    A read still running when the budget is spent is left to finish in its worker thread
    (Redis socket timeouts bound how long); with ``workers`` threads busy on a hung store
    a new read waits in the queue and times out like the others, so a request never waits
    longer than the budget for the store.
    """

    def __init__(
        self, reader: FeatureReader, budget_seconds: float, breaker: Breaker, workers: int = 8
    ) -> None:
        self.reader = reader
        self.budget_seconds = budget_seconds
        self.breaker = breaker
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="online-read")
        self.last_reason: DegradedReason | None = None  # the latest read's, None: it worked

    def member(self, member_id: str) -> MemberRead:
        read = self._read(member_id)
        self.last_reason = read.reason
        return read

    def _read(self, member_id: str) -> MemberRead:
        try:
            self.breaker.before()
        except BreakerOpen:
            return MemberRead(None, DegradedReason.CIRCUIT_OPEN)
        future = self._pool.submit(self.reader.member, member_id)
        try:
            features = future.result(timeout=self.budget_seconds)
        except TimeoutError:
            future.cancel()
            self.breaker.failed()
            return MemberRead(None, DegradedReason.STORE_TIMEOUT)
        except Exception as exc:  # any failure of the store is answered from fallbacks
            log.debug("online read failed: %s", type(exc).__name__)
            self.breaker.failed()
            return MemberRead(None, DegradedReason.STORE_ERROR)
        self.breaker.succeeded()
        return MemberRead(features)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Profiles:
    """Each member's country, RFM segment and time zone, as of the run's tag snapshot: what
    a degraded answer is built from. ``forget`` drops a member (erasure)."""

    def __init__(self, rows: dict[str, dict[str, Any]] | None = None) -> None:
        self._rows: dict[str, dict[str, Any]] = rows or {}

    @classmethod
    def from_snapshot(cls, path: Path | None, max_members: int) -> Profiles:
        """From the tag snapshot at ``path``; empty when there is none or it has more than
        ``max_members`` rows (degraded answers then use the shop's popular products and the
        global send hour)."""
        if path is None or not path.exists() or max_members <= 0:
            return cls()
        if pq.read_metadata(path).num_rows > max_members:
            log.warning("tag snapshot above serving.fallback_max_members: no fallback profiles")
            return cls()
        table = pq.read_table(path, columns=["member_id", *PROFILE_FALLBACK_COLUMNS])
        cols = table.to_pydict()
        ids = cols.pop("member_id")
        return cls(
            {str(m): {c: cols[c][i] for c in PROFILE_FALLBACK_COLUMNS} for i, m in enumerate(ids)}
        )

    def get(self, member_id: str) -> dict[str, Any] | None:
        return self._rows.get(member_id)

    def forget(self, member_id: str) -> None:
        self._rows.pop(member_id, None)

    def __len__(self) -> int:
        return len(self._rows)


def count_degraded(reason: DegradedReason) -> None:
    DEGRADED.labels(reason.value).inc()
