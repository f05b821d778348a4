"""A shop written by hand against DATA_CONTRACT.md alone: order_lines.csv with only the
required columns and a history shorter than the churn training cutoffs reach back. The run
must complete and score every member."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.settings import MemberwiseSettings
from pipelines.run import run_pipeline
from pipelines.score import score_members
from training.config import TrainConfig

pytestmark = pytest.mark.slow


def write_order_lines(folder, members: int = 80, seed: int = 11) -> pd.DataFrame:
    """~5 months of orders: each member buys every ~2-6 weeks from 30 products, some stop
    half-way; one return and one line without product detail."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2025-08-01")
    for m in range(members):
        t = start + pd.Timedelta(days=float(rng.uniform(0, 30)))
        stop = start + pd.Timedelta(days=float(rng.uniform(60, 160)))
        k = 0
        while t < min(stop, pd.Timestamp("2025-12-31")):
            for p in rng.choice(30, size=int(rng.integers(1, 4)), replace=False):
                rows.append((f"o{m}-{k}", f"m{m:03d}", t.isoformat(), f"p{p:02d}",
                             float(rng.integers(1, 3)), float(5 + p)))  # fmt: skip
            k += 1
            t += pd.Timedelta(days=float(rng.uniform(14, 42)), hours=float(rng.uniform(0, 12)))
    df = pd.DataFrame(
        rows, columns=["order_id", "member_id", "ts", "product_id", "quantity", "unit_price"]
    )
    ret = df.iloc[0].copy()
    ret["quantity"] = -1.0
    nulls = df.iloc[1].copy()
    nulls["order_id"], nulls["product_id"] = "o-spend-only", None
    df = pd.concat([df, ret.to_frame().T, nulls.to_frame().T], ignore_index=True)
    df.to_csv(folder / "order_lines.csv", index=False)
    return df


def test_order_lines_only_with_a_short_history(tmp_path):
    data, home = tmp_path / "shop", tmp_path / "home"
    data.mkdir()
    lines = write_order_lines(data)
    settings = MemberwiseSettings(home=home)
    report = run_pipeline(
        data, date(2025, 12, 31), settings, TrainConfig(als_iterations=3, als_factors=8),
        progress=lambda _: None,
    )  # fmt: skip
    assert set(report["models"]) == {"products", "churn", "coupon", "send_time"}
    assert report["models"]["coupon"]["champion_role"] == "baseline"  # no offers: none
    scores = score_members(settings, progress=lambda _: None)
    assert set(scores["member_id"]) == set(lines["member_id"])
    assert scores["member_id"].is_unique
    assert scores["churn_risk"].between(0, 1).all()
    assert scores["coupon_id"].isna().all() | scores["coupon_id"].eq("").all()
