"""Send time: the hour `memberwise run` registered against three simple rules.

For each member who engages in the horizon, the recommended hour of week is compared with
the local hour of the member's first engagement there: hit rate within 1 h (with its
binomial standard error) and the same on the hour of day. Candidates: the shipped model
(member profile shrunk to the segment, quiet hours excluded), the single best global hour,
the member's own most frequent hour before the as-of date, and that same mode held to the
hours the shipped model may choose. ``reachable_1h`` is the ceiling any model honouring
the quiet hours can reach; on a synthetic shop the planted peak hours are checked too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.send_time import GlobalSendTimeModel, window_sum
from training.metrics import hour_hit_rate, hour_of_day_hit_rate
from training.send_time import local_hour_of_week

PRIMARY = "hit_rate_1h"


def candidates(
    engagements: pd.DataFrame,
    timezones: dict[str, str],
    segments: dict[str, str],
    members: list[str],
    shipped: Any,
) -> dict[str, np.ndarray]:
    """(len(members),) recommended hour of week per candidate: the ``shipped`` model
    (``best(member, segment=...)`` and ``config.quiet_mask()``), the global best hour and
    the member's mode hour (anywhere, and within the shipped model's allowed hours),
    the last two falling back to the global hour for members without history.
    ``engagements``: member_id, channel, ts (naive UTC) before the cutoff."""
    glob = GlobalSendTimeModel().fit(
        engagements["member_id"].to_numpy(str), engagements["channel"].to_numpy(str),
        engagements["ts"].to_numpy("datetime64[us]"), timezones=timezones,
    )  # fmt: skip
    rec_global = np.array([glob.best(m).hour_of_week for m in members], dtype=np.int64)
    fallback = int(rec_global[0]) if len(members) else 0
    modes = member_mode_hours(engagements, timezones, fallback)
    modes_ok = member_mode_hours(engagements, timezones, 0, ~shipped.config.quiet_mask())
    return {
        "shipped": np.array(
            [shipped.best(m, segment=segments.get(m)).hour_of_week for m in members],
            dtype=np.int64,
        ),
        "global_best_hour": rec_global,
        "member_mode_hour": np.array(
            [modes.get(m, int(g)) for m, g in zip(members, rec_global, strict=True)],
            dtype=np.int64,
        ),
        "member_mode_hour_allowed": np.array(
            [modes_ok.get(m, int(g)) for m, g in zip(members, rec_global, strict=True)],
            dtype=np.int64,
        ),
    }


def score(recommended: dict[str, np.ndarray], actual: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`send_time_scores` of each candidate against ``actual`` (n,) hours of week."""
    return {name: send_time_scores(rec, actual) for name, rec in recommended.items()}


def section(ctx: Any) -> dict[str, Any] | None:
    """The backtest's send-time section for a backtest Context (None, with a note, when
    nobody engaged on one side of the as-of date)."""
    after = ctx.engagements_after
    if after.empty or ctx.engagements.empty:
        ctx.notes["send_time"] = "no engagement on one side of the as-of date"
        return None
    first = first_engagements(after, ctx.timezones)
    members = first["member_id"].astype(str).tolist()
    seg = dict(zip(ctx.tags["member_id"], ctx.tags["rfm_segment"], strict=False))
    shipped = ctx.shipped("send_time")
    recs = candidates(ctx.engagements, ctx.timezones, seg, members, shipped)
    actual = first["how"].to_numpy()
    scores = score(recs, actual)
    allowed = ~shipped.config.quiet_mask()
    out: dict[str, Any] = {
        "shipped": scores.pop("shipped"),
        "baselines": scores,
        "members": len(members),
        # share of first engagements within 1 h of an hour the shipped model may choose:
        # the best hit rate any model honouring its quiet hours can reach
        "reachable_1h": reachable_share(actual, allowed),
    }
    truth = ctx.truth_dir / "members.parquet" if ctx.truth_dir else None
    if truth is not None and truth.exists():
        t = pd.read_parquet(truth, columns=["member_id", "peak_how_local"])
        known = t[t["member_id"].isin(set(ctx.engagements["member_id"]))]
        planted = known["peak_how_local"].to_numpy(int)
        ids = known["member_id"].astype(str).tolist()
        rec_all = candidates(ctx.engagements, ctx.timezones, seg, ids, shipped)
        out["planted_peak_recovery"] = {
            **{
                name: send_time_scores(rec_all[name], planted)["hit_rate_1h"]
                for name in ("shipped", "member_mode_hour", "member_mode_hour_allowed")
            },
            "reachable": reachable_share(planted, allowed),
            "members": len(ids),
        }
    return out


def first_engagements(eng_after: pd.DataFrame, timezones: dict[str, str]) -> pd.DataFrame:
    """The first engagement of each member in ``eng_after`` with its local hour of week."""
    first = eng_after.sort_values("ts", kind="stable").groupby("member_id", as_index=False).head(1)
    tz = first["member_id"].map(timezones).fillna("UTC")
    return first.assign(how=local_hour_of_week(first["ts"], tz))


def send_time_scores(recommended: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Hit rates within 1 h of the hour of week (with its binomial standard error) and of
    the hour of day, of ``recommended`` against ``actual`` (n,) hours of week."""
    hit = hour_hit_rate(recommended, actual, tolerance_hours=1)
    n = len(actual)
    return {
        "hit_rate_1h": hit,
        "hit_rate_1h_se": float(np.sqrt(hit * (1 - hit) / (n - 1))) if n > 1 else float("nan"),
        "hour_of_day_hit_rate_1h": hour_of_day_hit_rate(recommended, actual, tolerance_hours=1),
    }


def member_mode_hours(
    eng_before: pd.DataFrame,
    timezones: dict[str, str],
    fallback: int,
    allowed: np.ndarray | None = None,
) -> dict[str, int]:
    """Each member's own most frequent local hour of week (no shrinkage); with ``allowed``
    ((168,) bool) the most frequent among the allowed hours (members with none are left
    out)."""
    tz = eng_before["member_id"].map(timezones).fillna("UTC")
    how = local_hour_of_week(eng_before["ts"], tz)
    counts = pd.DataFrame({"member_id": eng_before["member_id"].to_numpy(), "how": how})
    if allowed is not None:
        counts = counts[np.asarray(allowed, dtype=bool)[how]]
    counts = counts.groupby(["member_id", "how"]).size().rename("n").reset_index()
    counts = counts.sort_values(["member_id", "n", "how"], ascending=[True, False, True])
    return dict(counts.groupby("member_id").head(1)[["member_id", "how"]].itertuples(index=False))


def reachable_share(actual: np.ndarray, allowed: np.ndarray, tolerance_hours: int = 1) -> float:
    """Share of ``actual`` hours of week within ``tolerance_hours`` (circularly) of an
    ``allowed`` hour ((168,) bool): the best hit rate a recommender restricted to the
    allowed hours can reach."""
    ok = np.asarray(allowed, dtype=bool)
    near = window_sum(ok, tolerance_hours) > 0
    a = np.asarray(actual, dtype=np.int64) % len(ok)
    return float(near[a].mean()) if len(a) else float("nan")
