"""Send time: per member, a channel and an hour of the week in the member's own timezone,
with a confidence, and the next such moment after now (local and UTC).

Engagements arrive as (member, channel, ts in UTC). Opens and clicks of messages carry
their message channel (``message_channels``: email, sms, push); anything else — orders,
browsing, passed with channel "web" — shapes the member's *hour profile* (weighted by
``web_weight``) but never the *channel choice*. Hours of the week are local to the member
(Monday 00:00 = 0 ... Sunday 23:00 = 167).

For a member with engagements:

- ``counts`` (168,) = engagement *moments* per local hour of week: with ``one_per_hour``
  the engagements of one clock hour (a browsing session's views, an order and its cart
  events, an open and its click) count once, weighted ``web_weight`` for orders and
  browsing and, with ``recency_half_life_days``, less the older they are; circularly
  smoothed over ``smoothing_hours`` neighbouring hours (a triangular kernel that keeps the
  total);
- ``posterior = counts + prior_strength * prior`` where ``prior`` is the member's segment
  distribution (each member of the segment counts once: the mean of their normalised
  profiles, smoothed) or the global one when the segment is unknown;
- the hour of week is the one outside quiet hours (local hour of day in [quiet_start,
  quiet_end), wrapping past midnight) with the most posterior mass within +-1 hour (ties:
  the earliest) — the best bet when a send counts if the member engages within an hour of
  it; mass in a quiet hour next to an allowed one counts for that one;
- ``confidence`` = that mass over the posterior's total (quiet hours included): the
  estimated chance that the member's next engagement falls within an hour of the chosen
  one. Thin histories are pulled towards the segment and get lower confidence.

The channel is the message channel with the most engagements or, when ``sends`` are given,
the highest open rate shrunk towards the channel's overall rate by ``rate_prior_sends``
pseudo-sends; ``default_channel`` when the member has neither. A member has one hour
profile, from every engagement: forcing a channel in ``best`` changes the channel, not the
hour.

Everything is precomputed at fit time, so ``best`` is a dict lookup and ``next_send`` adds
one datetime computation. A member unknown at fit time gets the segment prior (when a
segment is given) or the global one, with a low confidence: the prior's mass within +-1
hour times ``fallback_confidence``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo

import numpy as np

from models.artifact import class_for, meta_of, read_npz, write_npz

HOURS = 168  # hours in a week
MEMBER, SEGMENT, GLOBAL = "member", "segment", "global"
_CHUNK = 50_000  # members per block of the (members, 168) posterior


@dataclass
class SendTimeConfig:
    """Hours are local hours of day (0..23); counts are engagements."""

    prior_strength: float = 5.0  # pseudo-engagements of the segment prior
    smoothing_hours: int = 1  # circular smoothing of counts over neighbouring hours
    quiet_start: int = 22  # local hour from which nothing is sent ...
    quiet_end: int = 8  # ... until this local hour (equal to quiet_start: no quiet hours)
    default_channel: str = "email"
    message_channels: tuple[str, ...] = ("email", "sms", "push")
    web_weight: float = 1.0  # weight of a non-message engagement (order, browsing) in profiles
    # a member's engagements within the same clock hour are one moment in the profile (a
    # browsing session's views, an order and its carts, an open and its click): clumps
    # would otherwise outvote hours the member comes back to on separate days
    one_per_hour: bool = True
    recency_half_life_days: float = 0.0  # > 0: older engagements count less (0: all equal)
    rate_prior_sends: float = 10.0  # with sends: pseudo-sends at the channel's overall rate
    # a segment or global answer describes a group, not the member: its confidence is the
    # prior's mass within +-1 hour times this factor
    fallback_confidence: float = 0.5
    # "member": each member's own hours shrunk towards the segment (the model); "segment":
    # every member gets the segment's best hour (a simple rule the gate compares against)
    level: str = "member"

    def quiet_mask(self) -> np.ndarray:
        """(168,) bool, True at quiet hours of the week."""
        for name in ("quiet_start", "quiet_end"):
            if not 0 <= getattr(self, name) <= 23:
                raise ValueError(f"SendTimeConfig.{name} must be an hour 0..23")
        h = np.arange(HOURS) % 24
        qs, qe = self.quiet_start, self.quiet_end
        if qs < qe:
            return (h >= qs) & (h < qe)
        if qs > qe:
            return (h >= qs) | (h < qe)
        return np.zeros(HOURS, dtype=bool)


@dataclass(frozen=True, slots=True)
class SendTime:
    """When and how to message a member.

    ``hour_of_week``: 0..167 local (Monday 00:00 = 0); ``confidence``: 0..1; ``timezone``:
    IANA name; ``source``: "member", "segment" or "global"; ``at_utc`` / ``at_local``:
    the next such moment (aware datetimes), set by ``next_send`` only.
    """

    channel: str
    hour_of_week: int
    confidence: float
    timezone: str
    source: str
    at_utc: datetime | None = None
    at_local: datetime | None = None


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None when the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def _valid_tz(name: Any) -> str | None:
    """``name`` when it is a known IANA timezone (anything else, NaN included: None)."""
    if isinstance(name, str) and name and _zone(name) is not None:
        return name
    return None


def _text(value: Any) -> str | None:
    """A non-empty string or None (NaN, None and "" from data frames become None)."""
    return value if isinstance(value, str) and value else None


def _smooth(p: np.ndarray, hours: int) -> np.ndarray:
    """Circular triangular smoothing along the last axis (168); keeps each row's total."""
    if hours <= 0:
        return p
    w = np.array([hours + 1 - abs(k) for k in range(-hours, hours + 1)], dtype=np.float64)
    w /= w.sum()
    out = np.zeros_like(p, dtype=np.float64)
    for k, wk in zip(range(-hours, hours + 1), w, strict=True):
        out += wk * np.roll(p, k, axis=-1)
    return out


def window_sum(p: np.ndarray, window: int) -> np.ndarray:
    """Circular sum over the last axis (hours of week) of each hour and its ``window``
    neighbours on either side: float64, the shape of ``p``."""
    out = np.asarray(p, dtype=np.float64).copy()
    for k in range(1, window + 1):
        out += np.roll(p, k, axis=-1) + np.roll(p, -k, axis=-1)
    return out


def _decide(post: np.ndarray, quiet: np.ndarray, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(hour of week (n,) int, confidence (n,) float) from posteriors (n, 168).

    The hour is the allowed one (not quiet) with the most posterior mass within +-``window``
    hours — the Bayes choice when a send counts as a hit if the member engages within
    ``window`` hours of it; mass in quiet hours next to an allowed hour counts. The
    confidence is that mass over the posterior's total (quiet hours included): the estimated
    chance that the member's next engagement falls within ``window`` hours of the send.
    """
    total = post.sum(axis=1)
    near = window_sum(post, window)
    near[:, quiet] = -1.0
    how = near.argmax(axis=1)
    rows = np.arange(len(post))
    conf = np.divide(near[rows, how], total, out=np.zeros(len(post)), where=total > 0)
    empty = total <= 0  # no engagement at all: the first allowed hour, no confidence
    if empty.any():
        how[empty] = int(np.flatnonzero(~quiet)[0]) if (~quiet).any() else 0
    return how, np.clip(conf, 0.0, 1.0)


def _profile_weights(
    row: np.ndarray, ch: np.ndarray, ts: np.ndarray, cfg: SendTimeConfig
) -> np.ndarray:
    """(n,) weight of each engagement in the hour profiles: 1 for a message engagement,
    ``web_weight`` otherwise; with ``one_per_hour`` only the heaviest engagement of each
    (member, UTC clock hour) counts (the others weigh 0); with ``recency_half_life_days``
    halved for every half-life before the newest engagement."""
    msg = np.isin(ch, np.array(cfg.message_channels, dtype=str))
    weight = np.where(msg, 1.0, cfg.web_weight)
    if cfg.one_per_hour and len(row):
        slot = ts.astype("datetime64[h]").astype(np.int64)
        order = np.lexsort((-weight, slot, row))
        r, sl = row[order], slot[order]
        dup = np.r_[False, (r[1:] == r[:-1]) & (sl[1:] == sl[:-1])]
        weight[order[dup]] = 0.0
    if cfg.recency_half_life_days > 0 and len(row):
        age_days = (ts.max() - ts) / np.timedelta64(1, "D")
        weight = weight * 0.5 ** (age_days / cfg.recency_half_life_days)
    return weight


def local_hour_of_week(ts_utc: np.ndarray, tz_names: np.ndarray) -> np.ndarray:
    """Hour of week (Monday 00:00 = 0) of naive-UTC ``ts_utc`` (n,) datetime64 in each
    row's IANA timezone ``tz_names`` (n,) str; vectorised per timezone with pandas."""
    import pandas as pd

    out = np.zeros(len(ts_utc), dtype=np.int64)
    ts = pd.DatetimeIndex(np.asarray(ts_utc).astype("datetime64[us]")).tz_localize("UTC")
    codes, names = pd.factorize(np.asarray(tz_names))
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        local = ts[rows].tz_convert(name)
        out[rows] = local.dayofweek.to_numpy() * 24 + local.hour.to_numpy()
    return out


class _SendTimeBase:
    """Shared state and behaviour: member timezones, ``next_send``, batch and persistence."""

    kind: ClassVar[str]

    def __init__(self, config: SendTimeConfig | None = None) -> None:
        self.config = config if config is not None else SendTimeConfig()
        self.fitted = False
        self._members: np.ndarray = np.array([], dtype=str)
        self._tz_names: list[str] = ["UTC"]
        self._tz_code: np.ndarray = np.zeros(0, dtype=np.int32)
        self._prepare()

    # ------------------------------------------------------------------ fit helpers
    def _inputs(
        self,
        member_ids: np.ndarray,
        channels: np.ndarray,
        ts_utc: np.ndarray,
        timezones: Mapping[str, str] | None,
        extra_members: Sequence[str] = (),
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Index members (engaged ones, then the rest of ``timezones`` / ``extra_members``)
        and their timezones. Returns (member row of each event, channels, ts, how)."""
        m = np.asarray(member_ids).astype(str)
        ch = np.asarray(channels).astype(str)
        ts = np.asarray(ts_utc).astype("datetime64[us]")
        if not len(m) == len(ch) == len(ts):
            raise ValueError(
                f"member_ids, channels and ts_utc differ in length: {len(m)}, {len(ch)}, {len(ts)}"
            )
        tzmap = dict(timezones or {})
        members = np.unique(
            np.concatenate(
                [m, np.array(list(tzmap), dtype=str), np.array(list(extra_members), dtype=str)]
            )
        )
        zones = sorted({z for z in (_valid_tz(v) for v in tzmap.values()) if z} | {"UTC"})
        code = {z: i for i, z in enumerate(zones)}
        self.invalid_timezones = sorted({str(v) for v in tzmap.values() if not _valid_tz(v)})
        self._members = members.astype(str)
        self._tz_names = zones
        self._tz_code = np.array(
            [code[_valid_tz(tzmap.get(x)) or "UTC"] for x in members.tolist()], dtype=np.int32
        )
        row = np.searchsorted(members, m)
        how = local_hour_of_week(ts, np.array(zones, dtype=str)[self._tz_code[row]])
        return row, ch, ts, how

    # ------------------------------------------------------------------ lookups
    def _prepare(self) -> None:
        self._row = {x: i for i, x in enumerate(self._members.tolist())}
        self._tz_of: list[str] = [self._tz_names[c] for c in self._tz_code.tolist()]

    def _timezone(self, r: int | None, timezone: Any) -> str:
        """The given timezone when valid, else the member's from fit time, else UTC."""
        tz = _valid_tz(timezone)
        if tz is not None:
            return tz
        return self._tz_of[r] if r is not None else "UTC"

    def known_member(self, member_id: str) -> bool:
        """True when the member had engagements (or a timezone/segment) at fit time."""
        return member_id in self._row

    def best(
        self,
        member_id: str,
        channel: str | None = None,
        segment: str | None = None,
        timezone: str | None = None,
    ) -> SendTime:
        """The member's channel (``channel`` forces one), hour of week and confidence.

        ``segment`` and ``timezone`` are used for members without history; a valid
        ``timezone`` also overrides the one known at fit time.
        """
        raise NotImplementedError

    def best_many(
        self,
        member_ids: Sequence[str],
        channels: Sequence[str | None] | None = None,
        segments: Sequence[str | None] | None = None,
        timezones: Sequence[str | None] | None = None,
    ) -> list[SendTime]:
        """``best`` for each member; the optional sequences align with ``member_ids``."""
        n = len(member_ids)
        none: list[None] = [None] * n
        return [
            self.best(m, c, s, z)
            for m, c, s, z in zip(
                member_ids, channels or none, segments or none, timezones or none, strict=True
            )
        ]

    def next_send(
        self,
        member_id: str,
        now_utc: datetime,
        channel: str | None = None,
        segment: str | None = None,
        timezone: str | None = None,
    ) -> SendTime:
        """``best`` plus ``at_utc`` / ``at_local``: the first start of the chosen local hour
        of week strictly after ``now_utc`` (naive = UTC), within the next 7 local days.

        On a day when the local hour does not exist (clocks jump forward), ``at_local`` is
        the same instant read after the jump.
        """
        st = self.best(member_id, channel, segment, timezone)
        at_utc, at_local = next_moment(st.hour_of_week, st.timezone, now_utc)
        return SendTime(
            st.channel, st.hour_of_week, st.confidence, st.timezone, st.source, at_utc, at_local
        )

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "tz_names": self._tz_names,
            "invalid_timezones": getattr(self, "invalid_timezones", []),
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"members": self._members.astype(str), "tz_code": self._tz_code}

    def _restore(self, meta: dict[str, Any], z: Mapping[str, np.ndarray]) -> None:
        self._tz_names = list(meta["tz_names"])
        self.invalid_timezones = list(meta.get("invalid_timezones", []))
        self._members, self._tz_code = z["members"], z["tz_code"]

    def save(self, path: Path) -> None:
        """One ``.npz`` at exactly ``path`` (no suffix added): arrays plus a JSON ``meta``
        string (config, names); loads with ``allow_pickle=False``."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() before save()")
        write_npz(path, self.kind, self._arrays(), self._meta())

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a saved model; ``_SendTimeBase.load`` picks the class from the kind."""
        kind, z = read_npz(path)
        target = class_for(_KINDS, kind, cls, path, "send-time")
        meta = meta_of(z)
        raw = meta["config"]
        known = {f.name for f in fields(SendTimeConfig)}
        cfg = SendTimeConfig(**{k: v for k, v in raw.items() if k in known})
        cfg.message_channels = tuple(cfg.message_channels)
        obj = target(cfg)
        obj._restore(meta, z)
        obj._prepare()
        obj.fitted = True
        return obj  # type: ignore[return-value]


@lru_cache(maxsize=65_536)
def next_moment(hour_of_week: int, timezone: str, now_utc: datetime) -> tuple[datetime, datetime]:
    """(at_utc, at_local): the first start of local ``hour_of_week`` in ``timezone`` strictly
    after ``now_utc`` (naive = UTC). Wall-clock arithmetic, so DST changes are respected.

    Memoised: a batch decides every member at one ``now``, so it computes each (hour of
    week, timezone) pair once instead of once per member."""
    tz: tzinfo = _zone(timezone) or UTC
    now = now_utc.replace(tzinfo=UTC) if now_utc.tzinfo is None else now_utc.astimezone(UTC)
    local = now.astimezone(tz)
    day, hour = divmod(int(hour_of_week), 24)
    at = datetime.combine(
        local.date() + timedelta(days=(day - local.weekday()) % 7), time(hour), tzinfo=tz
    )
    if at.astimezone(UTC) <= now:
        at = at + timedelta(days=7)  # aware + timedelta is wall-clock time in ``tz``
    at_utc = at.astimezone(UTC)
    return at_utc, at_utc.astimezone(tz)


class SendTimeModel(_SendTimeBase):
    """Per-member hour of week shrunk towards the member's segment (see the module doc)."""

    kind = "send_time"

    def fit(
        self,
        member_ids: np.ndarray,
        channels: np.ndarray,
        ts_utc: np.ndarray,
        timezones: Mapping[str, str] | None = None,
        segments: Mapping[str, str] | None = None,
        sends: Mapping[tuple[str, str], float] | None = None,
    ) -> Self:
        """Learn from engagement events.

        ``member_ids``, ``channels``: (n,) str; ``ts_utc``: (n,) datetime64, naive UTC;
        ``timezones``: member -> IANA name (missing or unknown names: UTC); ``segments``:
        member -> segment name; ``sends``: optional (member, channel) -> messages sent,
        to choose the channel by open rate instead of by engagement count.
        """
        cfg = self.config
        segments = dict(segments or {})
        row, ch, ts, how = self._inputs(member_ids, channels, ts_utc, timezones, list(segments))
        n_m = len(self._members)
        quiet = cfg.quiet_mask()
        msg = np.isin(ch, np.array(cfg.message_channels, dtype=str))
        weight = _profile_weights(row, ch, ts, cfg)

        # segment of every member row (-1: none) and the priors
        seg_names = sorted({str(s) for s in segments.values() if _text(s)})
        seg_code = {s: i for i, s in enumerate(seg_names)}
        m_seg = np.array(
            [seg_code.get(segments.get(x, ""), -1) for x in self._members.tolist()], np.int64
        ).reshape(n_m)
        total = np.bincount(row, weights=weight, minlength=n_m)
        share = np.divide(weight, total[row], out=np.zeros(len(row)), where=total[row] > 0)
        glob = np.bincount(how, weights=share, minlength=HOURS).astype(np.float64)
        glob = glob / glob.sum() if glob.sum() > 0 else np.full(HOURS, 1.0 / HOURS)
        seg_prior = np.tile(glob, (len(seg_names) + 1, 1))  # last row: the global prior
        e_seg = m_seg[row]
        has = e_seg >= 0
        if has.any():
            seg_counts = np.bincount(
                e_seg[has] * HOURS + how[has], weights=share[has], minlength=len(seg_names) * HOURS
            )
            seg_counts = seg_counts.reshape(len(seg_names), HOURS)
            mass = seg_counts.sum(axis=1, keepdims=True)
            seg_prior[:-1] = np.where(mass > 0, seg_counts / np.maximum(mass, 1e-300), glob)
        seg_prior = _smooth(seg_prior, cfg.smoothing_hours)
        s_how, s_conf = _decide(seg_prior, quiet)
        s_conf = s_conf * cfg.fallback_confidence

        # members: posterior in blocks of _CHUNK rows
        m_how = np.full(n_m, -1, dtype=np.int16)
        m_conf = np.zeros(n_m, dtype=np.float32)
        engaged = np.bincount(row, minlength=n_m) > 0
        order = np.argsort(row, kind="stable")
        row_s, how_s, w_s = row[order], how[order], weight[order]
        for start in range(0, n_m, _CHUNK):
            stop = min(start + _CHUNK, n_m)
            a, b = np.searchsorted(row_s, [start, stop])
            counts = np.bincount(
                (row_s[a:b] - start) * HOURS + how_s[a:b],
                weights=w_s[a:b],
                minlength=(stop - start) * HOURS,
            )
            counts = _smooth(counts.reshape(stop - start, HOURS), cfg.smoothing_hours)
            prior = seg_prior[m_seg[start:stop]]  # -1 picks the global row
            h, c = _decide(counts + cfg.prior_strength * prior, quiet)
            m_how[start:stop], m_conf[start:stop] = h, c
        m_how[~engaged] = -1
        if cfg.level == "segment":
            m_how[:] = -1
        elif cfg.level != "member":
            raise ValueError(
                f"SendTimeConfig.level must be 'member' or 'segment', not {cfg.level!r}"
            )

        self._channels = list(cfg.message_channels)
        self._m_channel = self._choose_channels(row, ch, msg, sends)
        self._m_how, self._m_conf, self._m_seg = m_how, m_conf, m_seg.astype(np.int32)
        self._seg_names = seg_names
        self._s_how, self._s_conf = s_how[:-1], s_conf[:-1].astype(np.float32)
        self._g_how, self._g_conf = int(s_how[-1]), float(s_conf[-1])
        self._prepare()
        self.fitted = True
        return self

    def _choose_channels(
        self,
        row: np.ndarray,
        ch: np.ndarray,
        msg: np.ndarray,
        sends: Mapping[tuple[str, str], float] | None,
    ) -> np.ndarray:
        """(members,) int8: index into ``message_channels`` of each member's channel, -1
        for the default. Ties go to the earlier channel in ``message_channels``."""
        chans = list(self.config.message_channels)
        n_m, n_c = len(self._members), len(chans)
        code = {c: i for i, c in enumerate(chans)}
        e_code = np.array([code.get(c, -1) for c in ch[msg].tolist()], dtype=np.int64)
        eng = np.bincount(row[msg] * n_c + e_code, minlength=n_m * n_c).reshape(n_m, n_c)
        eng = eng.astype(np.float64)
        choice = np.full(n_m, -1, dtype=np.int8)
        if sends:
            sent = np.zeros((n_m, n_c))
            index = {x: i for i, x in enumerate(self._members.tolist())}
            for (member, channel), k in sends.items():
                r, c = index.get(member), code.get(channel)
                if r is not None and c is not None:
                    sent[r, c] += float(k)
            overall = np.divide(eng.sum(0), sent.sum(0), out=np.zeros(n_c), where=sent.sum(0) > 0)
            k = self.config.rate_prior_sends
            rate = (eng + k * overall) / (sent + k)
            informed = (sent.sum(1) > 0) | (eng.sum(1) > 0)
            choice[informed] = rate[informed].argmax(axis=1)
        else:
            informed = eng.sum(1) > 0
            choice[informed] = eng[informed].argmax(axis=1)
        return choice

    def _prepare(self) -> None:
        super()._prepare()
        if not hasattr(self, "_m_how"):
            return
        chans = self._channels
        default = self.config.default_channel
        self._ch_of = [chans[c] if c >= 0 else default for c in self._m_channel.tolist()]
        self._how_of: list[int] = self._m_how.tolist()
        self._conf_of: list[float] = self._m_conf.tolist()
        self._seg_of: list[int] = self._m_seg.tolist()
        self._seg_best = {
            s: (h, c)
            for s, h, c in zip(
                self._seg_names, self._s_how.tolist(), self._s_conf.tolist(), strict=True
            )
        }

    def best(
        self,
        member_id: str,
        channel: str | None = None,
        segment: str | None = None,
        timezone: str | None = None,
    ) -> SendTime:
        r = self._row.get(member_id)
        tz = self._timezone(r, timezone)
        channel = _text(channel)
        if r is not None:
            how = self._how_of[r]
            if how >= 0:
                return SendTime(channel or self._ch_of[r], how, self._conf_of[r], tz, MEMBER)
            channel = channel or self._ch_of[r]
            if _text(segment) is None and self._seg_of[r] >= 0:
                segment = self._seg_names[self._seg_of[r]]
        channel = channel or self.config.default_channel
        seg = self._seg_best.get(segment) if isinstance(segment, str) else None
        if seg is not None:
            return SendTime(channel, seg[0], seg[1], tz, SEGMENT)
        return SendTime(channel, self._g_how, self._g_conf, tz, GLOBAL)

    def _meta(self) -> dict[str, Any]:
        return {
            **super()._meta(),
            "channels": self._channels,
            "segments": self._seg_names,
            "global": [self._g_how, self._g_conf],
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **super()._arrays(),
            "m_channel": self._m_channel,
            "m_how": self._m_how,
            "m_conf": self._m_conf,
            "m_seg": self._m_seg,
            "s_how": self._s_how,
            "s_conf": self._s_conf,
        }

    def _restore(self, meta: dict[str, Any], z: Mapping[str, np.ndarray]) -> None:
        super()._restore(meta, z)
        self._channels, self._seg_names = list(meta["channels"]), list(meta["segments"])
        self._g_how, self._g_conf = int(meta["global"][0]), float(meta["global"][1])
        self._m_channel, self._m_how, self._m_conf = z["m_channel"], z["m_how"], z["m_conf"]
        self._m_seg, self._s_how, self._s_conf = z["m_seg"], z["s_how"], z["s_conf"]


class GlobalSendTimeModel(_SendTimeBase):
    """The baseline: ``default_channel`` (unless one is forced) and one best hour of week
    per channel for everybody — the mean of members' normalised local profiles on that
    channel, smoothed, quiet hours removed; channels without engagements use all of them.
    Local to each member's timezone; source "global"; confidence: the distribution's mass
    within +-1 hour times ``fallback_confidence``."""

    kind = "global_send_time"

    def fit(
        self,
        member_ids: np.ndarray,
        channels: np.ndarray,
        ts_utc: np.ndarray,
        timezones: Mapping[str, str] | None = None,
        segments: Mapping[str, str] | None = None,
        sends: Mapping[tuple[str, str], float] | None = None,
    ) -> Self:
        """Same arguments as ``SendTimeModel.fit``; ``segments`` and ``sends`` are unused."""
        cfg = self.config
        row, ch, ts, how = self._inputs(member_ids, channels, ts_utc, timezones)
        n_m = len(self._members)
        quiet = cfg.quiet_mask()
        weight = _profile_weights(row, ch, ts, cfg)
        keys = ["", *cfg.message_channels]  # "": every engagement
        dists = np.zeros((len(keys), HOURS))
        for i, key in enumerate(keys):
            sel = np.ones(len(row), bool) if key == "" else ch == key
            total = np.bincount(row[sel], weights=weight[sel], minlength=n_m)
            share = weight[sel] / np.maximum(total[row[sel]], 1e-300)
            dists[i] = np.bincount(how[sel], weights=share, minlength=HOURS)
        dists[dists.sum(1) == 0] = dists[0] if dists[0].sum() > 0 else 1.0
        dists = _smooth(dists / dists.sum(1, keepdims=True), cfg.smoothing_hours)
        h, c = _decide(dists, quiet)
        c = c * cfg.fallback_confidence
        self._by_channel = {k: (int(a), float(b)) for k, a, b in zip(keys, h, c, strict=True)}
        self._prepare()
        self.fitted = True
        return self

    def best(
        self,
        member_id: str,
        channel: str | None = None,
        segment: str | None = None,
        timezone: str | None = None,
    ) -> SendTime:
        tz = self._timezone(self._row.get(member_id), timezone)
        channel = _text(channel) or self.config.default_channel
        how, conf = self._by_channel.get(channel) or self._by_channel[""]
        return SendTime(channel, how, conf, tz, GLOBAL)

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "by_channel": self._by_channel}

    def _restore(self, meta: dict[str, Any], z: Mapping[str, np.ndarray]) -> None:
        super()._restore(meta, z)
        self._by_channel = {k: (int(v[0]), float(v[1])) for k, v in meta["by_channel"].items()}


_KINDS: dict[str, type[_SendTimeBase]] = {
    SendTimeModel.kind: SendTimeModel,
    GlobalSendTimeModel.kind: GlobalSendTimeModel,
}


def load_send_time(path: Path) -> SendTimeModel | GlobalSendTimeModel:
    """Load either model, choosing the class from the artifact's kind."""
    return _SendTimeBase.load(path)  # type: ignore[return-value]
