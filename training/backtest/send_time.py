"""Send time: the hour `memberwise run` registered against three simple rules.

For each member who engages in the horizon, the recommended hour of week is compared with
the local hour of the member's first engagement there: hit rate within 1 h (with its
binomial standard error) and the same on the hour of day. Candidates: those of the
promotion gate of `memberwise run` (``training.send_time.send_time_policies``, simplest
first): the best global hour, each segment's best hour, the member's own most frequent
allowed hour (rules fitted here on the engagements before the as-of date) and the
registered model (member profile shrunk to the segment, quiet hours excluded); the gate's
verdict on the horizon comes from ``training.gate.select`` over their per-member hits
(``training.send_time.gate_candidates``). ``reachable_1h`` is the ceiling any model honouring
the quiet hours can reach; on a synthetic shop the planted peak hours are checked too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.settings import SendTimeSettings
from models.send_time import window_sum
from training.backtest.report import gate_record
from training.gate import select
from training.metrics import hour_hit_rate, hour_of_day_hit_rate
from training.send_time import gate_candidates, local_hour_of_week, send_time_policies

PRIMARY = "hit_rate_1h"
SHIPPED = "model"  # the gate's name of the registered model


def candidates(
    engagements: pd.DataFrame,
    timezones: dict[str, str],
    segments: dict[str, str],
    shipped: Any,
    settings: SendTimeSettings | None = None,
) -> dict[str, Any]:
    """The send-time gate's policies (``training.send_time.send_time_policies``, simplest
    first), each rule fitted on ``engagements`` (member_id, channel, ts naive UTC, before
    the cutoff) with ``timezones`` and ``segments``, and ``shipped`` as "model"."""
    policies = send_time_policies(settings or SendTimeSettings())
    fitted: dict[str, Any] = {
        name: build().fit(
            engagements["member_id"].to_numpy(str), engagements["channel"].to_numpy(str),
            engagements["ts"].to_numpy("datetime64[us]"), timezones=timezones,
            segments=segments,
        )
        for name, build in policies.items() if name != SHIPPED
    }  # fmt: skip
    fitted[SHIPPED] = shipped
    return fitted


def recommended(
    fitted: dict[str, Any], members: list[str], segments: dict[str, str]
) -> dict[str, np.ndarray]:
    """(len(members),) hour of week each policy recommends (the segment given as a hint)."""
    return {
        name: np.array([m.best(x, segment=segments.get(x)).hour_of_week for x in members],
                       dtype=np.int64)
        for name, m in fitted.items()
    }  # fmt: skip


def score(recommended: dict[str, np.ndarray], actual: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`send_time_scores` of each candidate against ``actual`` (n,) hours of week."""
    return {name: send_time_scores(rec, actual) for name, rec in recommended.items()}


def section(ctx: Any) -> dict[str, Any] | None:
    """The backtest's send-time section for a backtest Context (None, with a note, when
    nobody engaged on one side of the as-of date)."""
    after = ctx.engagements_after
    if after.empty or ctx.engagements.empty:
        ctx.notes["send_time"] = "not compared: no engagement on one side of the as-of date"
        return None
    gate = ctx.settings.gate
    first = first_engagements(after, ctx.timezones)
    members = first["member_id"].astype(str).tolist()
    seg = dict(zip(ctx.tags["member_id"], ctx.tags["rfm_segment"], strict=False))
    shipped = ctx.shipped("send_time")
    fitted = candidates(ctx.engagements, ctx.timezones, seg, shipped, ctx.settings.send_time)
    actual = first["how"].to_numpy()
    selection = select(gate_candidates(fitted, members, actual, seg), z=gate.z)
    scores = score(recommended(fitted, members, seg), actual)
    allowed = ~shipped.config.quiet_mask()
    out: dict[str, Any] = {
        "shipped": scores.pop(SHIPPED),
        "baselines": scores,
        "shipped_name": SHIPPED,
        "gate": gate_record(selection, SHIPPED),
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
        rec_all = recommended(fitted, ids, seg)
        out["planted_peak_recovery"] = {
            **{
                ("shipped" if name == SHIPPED else name): send_time_scores(
                    rec_all[name], planted)["hit_rate_1h"]
                for name in (SHIPPED, "member_most_frequent_hour")
            },
            "reachable": reachable_share(planted, allowed),
            "members": len(ids),
        }  # fmt: skip
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


def reachable_share(actual: np.ndarray, allowed: np.ndarray, tolerance_hours: int = 1) -> float:
    """Share of ``actual`` hours of week within ``tolerance_hours`` (circularly) of an
    ``allowed`` hour ((168,) bool): the best hit rate a recommender restricted to the
    allowed hours can reach."""
    ok = np.asarray(allowed, dtype=bool)
    near = window_sum(ok, tolerance_hours) > 0
    a = np.asarray(actual, dtype=np.int64) % len(ok)
    return float(near[a].mean()) if len(a) else float("nan")
