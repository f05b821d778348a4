"""What every backtest section reads: the data on both sides of the as-of date and the
models `memberwise run` registered from the data before it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from features.settings import MemberwiseSettings
from models.registry import CHALLENGER, load_model
from training.config import TrainConfig

Tables = dict[str, pd.DataFrame]


class NotCompared(ValueError):
    """A section has nothing to compare on this data; the message says why."""


@dataclass
class Context:
    """Everything a section needs, explicitly.

    ``visible``: tables as of the as-of date (rows after it hidden); ``future``: the rows
    with their time in [start, end) — the horizon; ``full_lines``: order lines up to
    ``end``; ``tags``: the as-of snapshot; ``engagements``: engagement moments (member_id,
    channel, ts) before ``start``; ``engagements_after``: the same within the horizon;
    ``coupon_history`` / ``coupon_future``: the offers' training frame (see
    pipelines.run.coupon_training_frame) before ``start`` and within the horizon.
    ``cfg`` is the configuration `memberwise run` trained with; ``settings.home`` the home
    it registered its models in.
    """

    dataset: str
    as_of: date
    horizon_days: int
    cfg: TrainConfig
    settings: MemberwiseSettings
    visible: Tables
    future: Tables
    full_lines: pd.DataFrame
    tags: pd.DataFrame
    engagements: pd.DataFrame
    engagements_after: pd.DataFrame
    timezones: dict[str, str]
    coupon_history: pd.DataFrame
    coupon_future: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    truth_dir: Path | None
    out_dir: Path
    progress: Any = print
    notes: dict[str, str] = field(default_factory=dict)

    def shipped(self, name: str) -> Any:
        """The model `memberwise run` registered last for ``name`` (the ``challenger``
        alias: the newest candidate, whether or not it won the promotion gate), as the
        fast object of models.registry.load_model. Raises :class:`NotCompared` when `run`
        registered no version of it (it could not train one on this data)."""
        from mlflow.exceptions import MlflowException

        try:
            return load_model(name, CHALLENGER, self.settings.tracking_uri)
        except MlflowException as exc:
            raise NotCompared(
                f"`memberwise run` registered no {CHALLENGER} {name} model on this data: {exc}"
            ) from exc
