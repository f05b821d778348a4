"""Train the send-time model and compare it with one global best hour."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from features.settings import SendTimeSettings
from models.send_time import GlobalSendTimeModel, SendTimeModel
from training.config import TrainConfig, send_time_config
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


def train_send_time(
    engagements: pd.DataFrame,
    timezones: dict[str, str],
    segments: dict[str, str],
    cutoff: pd.Timestamp,
    cfg: TrainConfig,
    send_time: SendTimeSettings | None = None,
) -> TrainResult:
    """``engagements``: member_id, channel (one of ``send_time.message_channels``, or "web"
    for orders and browsing), ts (naive UTC), all before ``cutoff``. ``send_time``: the
    settings tree's ``send_time`` section (its defaults when None)."""
    scfg = send_time_config(send_time or SendTimeSettings())
    split = cutoff - timedelta(days=cfg.validation_days)
    past = engagements[engagements["ts"] < split]
    after = engagements[engagements["ts"] >= split]
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if len(past) and len(after):
        for role, model in (
            ("shipped", SendTimeModel(scfg)),
            ("baseline", GlobalSendTimeModel(scfg)),
        ):
            _fit(model, past, timezones, segments)
            metrics[role] = send_time_metrics(model, after, timezones)
    else:
        notes.append("no engagements on both sides of the validation split")
    return TrainResult(
        name="send_time",
        shipped=_fit(SendTimeModel(scfg), engagements, timezones, segments),
        baseline=_fit(GlobalSendTimeModel(scfg), engagements, timezones, segments),
        metrics=metrics,
        primary="hit_rate_1h",
        params={**vars(scfg), "validation_days": cfg.validation_days},
        notes=notes,
        input_example=pd.DataFrame({"member_id": [str(engagements["member_id"].iloc[0])]})
        if len(engagements)
        else None,
    )
