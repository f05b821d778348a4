"""Shops at the edge of what the data contract allows still run `memberwise run` and
`memberwise score` to the end: every model registers at least its baseline as champion,
and the run report says what was skipped and why.

Each shop is the small synthetic one (200 members) with one thing taken away, or written
by hand where the generator cannot make it."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.settings import MemberwiseSettings
from models.registry import MODEL_NAMES
from pipelines.cli import app
from pipelines.run import run_pipeline
from pipelines.score import score_members
from pipelines.synthetic import generate
from training.config import TrainConfig

AS_OF = date(2025, 12, 31)
FAST = TrainConfig(churn_cutoffs=2)
# small, quick models: the point is that every step runs, not how well
FAST_MODELS = {"products": {"hybrid": {"iterations": 3, "factors": 8}}, "gate": {"tune_seconds": 0}}


@pytest.fixture(scope="module")
def base_shop(tmp_path_factory) -> Path:
    """The synthetic shop (200 members, two years to AS_OF, every table), without truth/."""
    out = tmp_path_factory.mktemp("base") / "shop"
    generate(out, members=200, seed=3)
    shutil.rmtree(out / "truth")
    return out


def _copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


def _read(shop: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(shop / f"{table}.parquet")


def _write(df: pd.DataFrame, shop: Path, table: str) -> None:
    df.to_parquet(shop / f"{table}.parquet", index=False)


@pytest.fixture
def run_and_score(tmp_path):
    """``(shop_dir) -> (run report, scores)``: `run` then `score` into a fresh home; checks
    what must hold for every shop (a champion per model, one score row per member)."""

    def go(shop: Path) -> tuple[dict, pd.DataFrame]:
        settings = MemberwiseSettings(home=tmp_path / "home", **FAST_MODELS)
        printed: list[str] = []
        report = run_pipeline(shop, AS_OF, settings, FAST, progress=printed.append)
        for name in MODEL_NAMES:
            assert report["models"][name]["champion_version"] is not None, name
        for note in report["notes"]:  # the shop's notes are printed as well as reported
            assert any(note in line for line in printed), note
        scores = score_members(settings, progress=lambda _: None)
        assert len(scores) == report["members"] and scores["member_id"].is_unique
        assert scores["churn_risk"].between(0, 1).all()
        return report, scores

    return go


def _model_notes(report: dict, model: str) -> str:
    return " | ".join(report["models"][model]["notes"])


@pytest.mark.slow
def test_spend_only_shop(base_shop, tmp_path, run_and_score):
    """CDNOW style: one line per order with its total and no product_id, no catalogue."""
    shop = _copy(base_shop, tmp_path / "shop")
    lines = _read(shop, "order_lines")
    spend = lines.assign(amount=lines["quantity"] * lines["unit_price"])
    orders = spend.groupby("order_id", as_index=False).agg(
        member_id=("member_id", "first"), ts=("ts", "min"), unit_price=("amount", "sum"),
        discount=("discount", "sum"), coupon_id=("coupon_id", "first"),
    )  # fmt: skip
    orders = orders[orders["unit_price"] > 0].assign(product_id=None, quantity=1.0)
    _write(orders, shop, "order_lines")
    (shop / "products.parquet").unlink()
    events = _read(shop, "events")
    _write(events.assign(product_id=None), shop, "events")

    report, scores = run_and_score(shop)
    assert "spend-only" in _model_notes(report, "products")
    assert report["models"]["products"]["champion_role"] == "baseline"
    assert scores["products"].map(len).eq(0).all()
    assert any("no product_id" in n for n in report["notes"])
    # the other models still learn: each was trained and compared with its baseline
    for name in ("churn", "coupon", "send_time"):
        assert {"shipped", "baseline"} <= set(report["models"][name]["metrics"]), name


@pytest.mark.slow
def test_single_campaign_with_only_controls(base_shop, tmp_path, run_and_score):
    shop = _copy(base_shop, tmp_path / "shop")
    offers = _read(shop, "coupon_offers")
    first = offers[offers["campaign_id"] == offers["campaign_id"].iloc[0]]
    _write(first.assign(coupon_id=None, redeemed_ts=pd.NaT), shop, "coupon_offers")

    report, scores = run_and_score(shop)
    assert "no randomized coupon history" in _model_notes(report, "coupon")
    assert report["models"]["coupon"]["champion_role"] == "baseline"
    assert scores["coupon_id"].isna().all()


@pytest.mark.slow
def test_fifty_members(tmp_path, run_and_score):
    shop = tmp_path / "shop"
    generate(shop, members=50, seed=4)
    report, scores = run_and_score(shop)
    assert report["members"] == 50 and len(scores) == 50


@pytest.mark.slow
def test_every_member_with_a_single_order(base_shop, tmp_path, run_and_score):
    shop = _copy(base_shop, tmp_path / "shop")
    lines = _read(shop, "order_lines")
    first = lines.sort_values("ts").groupby("member_id")["order_id"].first()
    _write(lines[lines["order_id"].isin(first)], shop, "order_lines")

    report, _ = run_and_score(shop)
    assert "every member has a single order" in " ".join(report["notes"])
    assert "churn model not trained" in _model_notes(report, "churn")
    assert report["models"]["churn"]["champion_role"] == "baseline"
    assert "no purchase in any offer's response window" in _model_notes(report, "coupon")


@pytest.mark.slow
def test_one_time_zone(base_shop, tmp_path, run_and_score):
    shop = _copy(base_shop, tmp_path / "shop")
    _write(_read(shop, "members").assign(timezone="Europe/London"), shop, "members")
    _, scores = run_and_score(shop)
    offsets = scores["send_at_local"].str[-6:]
    assert offsets.isin(["+00:00", "+01:00"]).all()  # London, winter or summer


@pytest.mark.slow
def test_no_messages(base_shop, tmp_path, run_and_score):
    shop = _copy(base_shop, tmp_path / "shop")
    (shop / "messages.parquet").unlink()
    report, scores = run_and_score(shop)
    assert "messages" not in report["ingest"]
    assert any("messages" in n for n in report["notes"])
    assert scores["send_channel"].isin(["email", "sms", "push"]).all()


@pytest.mark.slow
def test_history_shorter_than_the_horizon(base_shop, tmp_path, run_and_score):
    """Two months of data, a 90-day churn horizon: no label can be made, so the BG/NBD
    baseline (which needs none) is fitted on the run date's history and serves."""
    shop = _copy(base_shop, tmp_path / "shop")
    start = pd.Timestamp("2025-11-01")
    for table, col in (("order_lines", "ts"), ("events", "ts"), ("messages", "sent_ts"),
                       ("coupon_offers", "offered_ts")):  # fmt: skip
        df = _read(shop, table)
        _write(df[df[col] >= start], shop, table)

    report, scores = run_and_score(shop)
    churn = report["models"]["churn"]
    assert churn["champion_role"] == "baseline" and churn["shipped_version"] is None
    assert "history shorter than the 90-day horizon" in _model_notes(report, "churn")
    assert scores["churn_risk"].nunique() > 1  # BG/NBD scored the members, not a constant


@pytest.mark.slow
def test_catalogue_of_one_product(base_shop, tmp_path, run_and_score):
    shop = _copy(base_shop, tmp_path / "shop")
    lines = _read(shop, "order_lines").assign(product_id="P1")
    _write(lines.drop_duplicates(["order_id", "product_id"]), shop, "order_lines")
    _write(_read(shop, "products").head(1).assign(product_id="P1"), shop, "products")
    events = _read(shop, "events")
    _write(events.assign(product_id=events["product_id"].where(events["product_id"].isna(), "P1")),
           shop, "events")  # fmt: skip

    _, scores = run_and_score(shop)
    assert scores["products"].map(lambda p: set(p) <= {"P1"}).all()


def test_empty_order_lines_stops_with_exit_2(base_shop, tmp_path):
    shop = _copy(base_shop, tmp_path / "shop")
    lines = _read(shop, "order_lines")
    (shop / "order_lines.parquet").unlink()
    lines.head(0).to_csv(shop / "order_lines.csv", index=False)  # the header, no rows
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app, ["run", "--data", str(shop), "--as-of", AS_OF.isoformat(), "--home", str(home)]
    )
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "order_lines" in said and "has no rows" in said
    assert not home.exists()  # stopped before anything was written
