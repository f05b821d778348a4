"""`memberwise evaluate`: a backtest of every model against baselines and peers.

Everything after the as-of date is hidden, the pipeline of `memberwise run` runs on what is
left (into OUT/home, with the same configuration), and what it registered is scored against
what happened in the H days after it, beside baselines and peers (training.backtest).
Writes OUT/evaluation.json, OUT/evaluation.md and PNG plots, and logs all of it to an
MLflow run in OUT/home.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import repo
from features.settings import MemberwiseSettings
from features.tags import reference_instant
from pipelines import steps
from pipelines.ingest import ShopData, load_shop
from pipelines.run import coupon_training_frame, run_pipeline
from training import backtest
from training.config import TrainConfig

Progress = Callable[[str], None]


def _window(shop: ShopData, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Rows of each table with their time in [start, end)."""
    out: dict[str, pd.DataFrame] = {}
    for name, col in (("order_lines", "ts"), ("events", "ts"), ("messages", "sent_ts"),
                      ("coupon_offers", "offered_ts")):  # fmt: skip
        df = shop.get(name)
        if df is not None:
            t = pd.to_datetime(df[col])
            out[name] = df[(t >= start) & (t < end)].reset_index(drop=True)
    return out


def evaluate(
    data_dir: Path,
    as_of: date,
    out_dir: Path,
    horizon_days: int | None = None,
    cfg: TrainConfig | None = None,
    progress: Progress = print,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Backtest as of ``as_of`` with a horizon of ``horizon_days`` (default: the settings'
    ``training.horizon_days``); returns evaluation.json. The settings are read as usual
    (environment, the file in OUT/home), with OUT/home as the home."""
    settings = MemberwiseSettings(home=out_dir / "home")
    cfg = cfg or settings.training
    horizon_days = horizon_days if horizon_days is not None else cfg.horizon_days
    cfg = cfg.model_copy(update={"horizon_days": horizon_days})
    data_dir = Path(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = dataset or data_dir.resolve().name
    progress(f"backtest of {dataset} as of {as_of}, horizon {horizon_days} days")
    run_pipeline(data_dir, as_of, settings, cfg, progress=progress)

    end_day = as_of + timedelta(days=horizon_days)
    start = pd.Timestamp(reference_instant(as_of))
    end = pd.Timestamp(reference_instant(end_day))
    visible = load_shop(data_dir, as_of)
    full = load_shop(data_dir, end_day)
    future = _window(full, start, end)
    tags = pd.read_parquet(repo.snapshot_path(settings, as_of))
    eng_all = steps.engagements(full)
    store = repo.feature_store(settings)
    # offers in the horizon whose response window is over by its end; features as of as-of
    fut_frame = coupon_training_frame(full, store, end, cfg)
    offers = full.get("coupon_offers")
    if offers is not None and len(fut_frame):
        kept = offers[offers["offered_ts"] + pd.Timedelta(days=cfg.coupon_response_days) <= end]
        in_horizon = (kept["offered_ts"] >= start).to_numpy()
        fut_frame = fut_frame[in_horizon].reset_index(drop=True)
        snap = tags.set_index("member_id")[repo.COUPON_FEATURES].astype(float)
        fut_frame[repo.COUPON_FEATURES] = snap.reindex(fut_frame["member_id"]).to_numpy()
    hist_frame = coupon_training_frame(visible, store, start, cfg)
    truth = data_dir / "truth"
    ctx = backtest.Context(
        dataset=dataset, as_of=as_of, horizon_days=horizon_days, cfg=cfg, settings=settings,
        visible=visible.tables, future=future, full_lines=full.tables["order_lines"],
        tags=tags, engagements=eng_all[eng_all["ts"] < start].reset_index(drop=True),
        engagements_after=eng_all[eng_all["ts"] >= start].reset_index(drop=True),
        timezones=steps.member_timezones(full), coupon_history=hist_frame,
        coupon_future=fut_frame, start=start, end=end,
        truth_dir=truth if truth.is_dir() else None, out_dir=out_dir, progress=progress,
    )  # fmt: skip
    result = backtest.run_all(ctx)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2, default=_json))
    (out_dir / "evaluation.md").write_text(backtest.markdown(result))
    files = backtest.plots(result, out_dir)
    run_id = backtest.log_to_mlflow(
        result, out_dir, [out_dir / "evaluation.json", out_dir / "evaluation.md", *files]
    )
    progress(f"wrote {out_dir / 'evaluation.json'}, evaluation.md and {len(files)} plot(s); "
             f"MLflow run {run_id}")  # fmt: skip
    for section, w in result["wins"].items():
        if w:
            progress(f"  {section:<10} gate on the horizon ({w['metric']}): champion "
                     f"{w['champion']}; shipped {w['shipped']}: {w['shipped_verdict']}")  # fmt: skip
    return result


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (pd.Timestamp, date)):
        return v.isoformat()
    return str(v)
