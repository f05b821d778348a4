"""Train the send-time model; the gate chooses it against the global, segment and member hour."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.settings import GateSettings, SendTimeSettings
from models.send_time import GlobalSendTimeModel, SendTimeModel
from training.config import TrainConfig, send_time_config
from training.gate import Candidate, best_rule, select
from training.metrics import hour_hit_rate, hour_of_day_hit_rate
from training.result import TrainResult


def local_hour_of_week(ts: pd.Series, tz: pd.Series) -> np.ndarray:
    """Hour of week (Monday 00:00 = 0) of naive-UTC ``ts`` in each row's timezone ``tz``."""
    out = np.zeros(len(ts), dtype=np.int64)
    ts = pd.to_datetime(ts).dt.tz_localize("UTC")
    for zone, idx in pd.Series(np.arange(len(ts))).groupby(tz.fillna("UTC").to_numpy()):
        local = ts.iloc[idx.to_numpy()].dt.tz_convert(zone)
        out[idx.to_numpy()] = local.dt.dayofweek.to_numpy() * 24 + local.dt.hour.to_numpy()
    return out


def _fit(model, eng: pd.DataFrame, timezones: dict[str, str], segments: dict[str, str]):
    return model.fit(
        eng["member_id"].to_numpy(str),
        eng["channel"].to_numpy(str),
        eng["ts"].to_numpy("datetime64[us]"),
        timezones=timezones,
        segments=segments,
    )


def send_time_metrics(
    model, eng_after: pd.DataFrame, timezones: dict[str, str]
) -> dict[str, float]:
    """Share of members whose first engagement in ``eng_after`` falls within one hour of the
    recommended hour of week (and of day), in the member's local time."""
    first = eng_after.sort_values("ts").groupby("member_id", as_index=False).head(1)
    if first.empty:
        return {}
    tz = first["member_id"].map(timezones).fillna("UTC")
    actual = local_hour_of_week(first["ts"], tz)
    rec = np.array([model.best(m).hour_of_week for m in first["member_id"]], dtype=np.int64)
    return {
        "hit_rate_1h": hour_hit_rate(rec, actual, tolerance_hours=1),
        "hour_of_day_hit_rate_1h": hour_of_day_hit_rate(rec, actual, tolerance_hours=1),
        "members_evaluated": float(len(first)),
    }


def send_time_policies(settings: SendTimeSettings) -> dict[str, Callable[[], Any]]:
    """The send-time gate's policies, simplest first: name -> a builder of the unfitted
    model (the best global hour, each segment's best hour, each member's own most frequent
    allowed hour, and the model: the member's hours shrunk towards the segment's)."""
    scfg = send_time_config(settings)
    return {
        "global_hour": lambda: GlobalSendTimeModel(scfg),
        "segment_hour": lambda: SendTimeModel(send_time_config(settings, level="segment")),
        "member_most_frequent_hour": lambda: SendTimeModel(
            replace(scfg, prior_strength=1e-6, smoothing_hours=0)),
        "model": lambda: SendTimeModel(scfg),
    }  # fmt: skip


def hour_hits(
    model: Any,
    members: Sequence[str],
    actual: np.ndarray,
    segments: Mapping[str, str] | None = None,
    tolerance: int = 1,
) -> np.ndarray:
    """(n,) 1.0 where ``model``'s hour of week for each member (its ``segments`` entry given
    as a hint) is within ``tolerance`` hours (around the week) of ``actual`` (n,), else 0.0."""
    seg = segments or {}
    rec = np.array([model.best(m, segment=seg.get(m)).hour_of_week for m in members],
                   dtype=np.int64)  # fmt: skip
    d = np.abs(rec - np.asarray(actual, dtype=np.int64)) % 168
    return (np.minimum(d, 168 - d) <= tolerance).astype(np.float64)


def gate_candidates(
    fitted: Mapping[str, Any],
    members: Sequence[str] | pd.Series,
    actual: np.ndarray,
    segments: Mapping[str, str] | None = None,
) -> list[Candidate]:
    """The send-time gate's candidates, simplest first in the order of ``fitted`` (name ->
    fitted model, names of :func:`send_time_policies`), each scored member by member: 1.0
    when its hour is within an hour of the member's first engagement ``actual`` (hour of
    week, local). `memberwise run` calls it after its validation split, the backtest on the
    horizon."""
    ids = [str(m) for m in members]
    return [
        Candidate(n, "model" if n == "model" else "baseline", i,
                  units=hour_hits(model, ids, actual, segments))
        for i, (n, model) in enumerate(fitted.items())
    ]  # fmt: skip


def train_send_time(
    engagements: pd.DataFrame,
    timezones: dict[str, str],
    segments: dict[str, str],
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    send_time: SendTimeSettings | None = None,
    gate: GateSettings | None = None,
) -> TrainResult:
    """``engagements``: member_id, channel (one of ``send_time.message_channels``, or "web"
    for orders and browsing), ts (naive UTC), all before ``cutoff``. ``send_time`` /
    ``gate``: the settings tree's sections (their defaults when None).

    The gate compares, member by member (first engagement after the validation split within
    an hour of the chosen hour of week): the best global hour, each segment's best hour,
    each member's own most frequent allowed hour, and the model (the member's hours shrunk
    towards the segment's)."""
    settings = send_time or SendTimeSettings()
    gate = gate or GateSettings()
    scfg = send_time_config(settings)
    rules = send_time_policies(settings)
    split = cutoff - timedelta(days=cfg.validation_days)
    past = engagements[engagements["ts"] < split]
    after = engagements[engagements["ts"] >= split]
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    selection = None
    rule = "global_hour"
    if len(past) and len(after):
        first = after.sort_values("ts").groupby("member_id", as_index=False).head(1)
        actual = local_hour_of_week(first["ts"], first["member_id"].map(timezones).fillna("UTC"))
        fitted = {n: _fit(build(), past, timezones, segments) for n, build in rules.items()}
        selection = select(gate_candidates(fitted, first["member_id"], actual), z=gate.z)
        rule = best_rule(selection)
        metrics["shipped"] = send_time_metrics(fitted["model"], after, timezones)
        metrics["baseline"] = send_time_metrics(fitted[rule], after, timezones)
    else:
        notes.append("no engagements on both sides of the validation split")
    return TrainResult(
        name="send_time",
        shipped=_fit(rules["model"](), engagements, timezones, segments),
        baseline=_fit(rules[rule](), engagements, timezones, segments),
        metrics=metrics,
        primary="hit_rate_1h",
        params={**vars(scfg), "validation_days": cfg.validation_days},
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(engagements["member_id"].iloc[0])]})
        if len(engagements)
        else None,
        selection=selection,
        policies={"shipped": "model", "baseline": rule},
    )
