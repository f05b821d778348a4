"""The whole loop on a small synthetic shop whose answer is planted: plan -> the shop
answers (``generate --respond-to``) -> report. The measured lift of each offer covers the
planted one, the off-policy value of giving nobody anything matches the planted base rate,
the plan's offers and controls become coupon-offer history for the next training, and the
same plan file and seed give a byte-identical send list."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.campaign_store import logged_offers, plan_dir, with_campaign_offers
from features.settings import MemberwiseSettings
from models.campaign import CampaignSpec
from pipelines.cli import app as cli
from pipelines.respond import planted_targets, respond
from pipelines.synthetic import generate
from serving.campaign_plans import load_plan, plan_campaign
from training.campaign_report import write_report
from training.config import TrainConfig
from training.coupon import offer_outcomes

COUPONS = ("PCT10", "PCT20", "AMT5", "FREESHIP")
START = date(2026, 1, 2)  # the day after the synthetic history ends


@pytest.fixture(scope="module")
def base_shop(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shop")
    generate(out, members=1500, seed=4)
    return out


def spec(name: str = "spring") -> CampaignSpec:
    return CampaignSpec(name=name, offers=[{"coupon_id": c, "cost": 1.0} for c in COUPONS],
                        budget=10_000, start=START, holdout_share=0.3)  # fmt: skip


@pytest.fixture
def answered(tmp_path, base_shop):
    shop = tmp_path / "shop"
    shutil.copytree(base_shop, shop)
    settings = MemberwiseSettings(home=tmp_path / "home")
    sends, _ = plan_campaign(settings, spec(), seed=2, targets=planted_targets(shop))
    respond(shop, sends, seed=2)
    return settings, shop, sends


def test_report_recovers_the_planted_lift(answered):
    settings, shop, sends = answered
    report = write_report(settings, "spring", shop, log_mlflow=False)
    measured = {o: r for o, r in report["offers"].items() if r["n_control"] >= 20}
    assert len(measured) >= 2, report["offers"].keys()
    for offer, r in measured.items():
        assert r["covered"], (offer, r["converted"], r["planted"])
    # the value of giving nobody anything is the planted base rate, within its error
    truth = pd.read_parquet(shop / "truth" / "campaign_spring.parquet")
    nobody = report["policies"]["nobody"]["converted"]
    assert abs(nobody["dr"] - truth["p0"].mean()) < 3 * nobody["dr_se"]
    # everyone getting one coupon is not measurable without exploration: said, not guessed
    assert report["policies"]["everyone:PCT10"]["converted"]["identified"] is False
    d = plan_dir(settings, "spring")
    assert json.loads((d / "report.json").read_text())["campaign"] == "spring"
    assert (d / "report.png").stat().st_size > 1000


def test_campaign_offers_and_controls_feed_the_next_training(answered):
    settings, shop, sends = answered
    offers = pd.read_parquet(shop / "coupon_offers.parquet")
    cutoff = pd.Timestamp(START) + pd.Timedelta(days=30)
    out = offer_outcomes(offers, pd.read_parquet(shop / "order_lines.parquet"), pd.Series(dtype=float),
                         TrainConfig(), cutoff)  # fmt: skip
    mine = out.loc[out["campaign_id"] == "spring"]
    assert (mine["arm"] == "").sum() == (sends["arm"] == "holdout").sum() > 0
    assert set(mine["arm"]) - {""} == set(sends["coupon_id"].dropna())
    # a real shop's export may lack them: the run adds the logged offers itself
    before = offers.loc[offers["campaign_id"] != "spring"]
    merged = with_campaign_offers(before, logged_offers(settings), cutoff)
    assert merged is not None
    assert len(merged) == len(before) + len(sends.loc[sends["coupon_id"].notna()
                                                      | (sends["arm"] == "holdout")])  # fmt: skip
    again = with_campaign_offers(merged, logged_offers(settings), cutoff)
    assert again is not None and len(again) == len(merged)  # no double counting


def test_same_file_and_seed_give_a_byte_identical_send_list(tmp_path, base_shop):
    targets = planted_targets(base_shop)
    paths = []
    for home in ("a", "b"):
        s = MemberwiseSettings(home=tmp_path / home)
        plan_campaign(s, spec(), seed=9, targets=targets)
        paths.append(plan_dir(s, "spring"))
    for name in ("sends.csv", "sends.parquet"):
        assert (paths[0] / name).read_bytes() == (paths[1] / name).read_bytes()
    s = MemberwiseSettings(home=tmp_path / "c")
    plan_campaign(s, spec(), seed=10, targets=targets)
    assert (plan_dir(s, "spring") / "sends.csv").read_bytes() != (
        paths[0] / "sends.csv"
    ).read_bytes()


@pytest.mark.slow
def test_cli_plans_from_the_member_table_and_the_shop_answers(tmp_path, base_shop):
    home = tmp_path / "home"
    s = MemberwiseSettings(home=home)
    s.members_dir.mkdir(parents=True)
    planted_targets(base_shop).to_parquet(s.members_dir / "members.parquet", index=False)
    shop = tmp_path / "shop"
    shutil.copytree(base_shop, shop)
    f = tmp_path / "c.yaml"
    f.write_text(
        'name: winter\npredicate: lifecycle != "x"\noffers:\n  - {coupon_id: PCT20, cost: 2}\n'
        f"budget: 100\nstart: {START}\nholdout_share: 0.2\n"
    )
    run = CliRunner().invoke(cli, ["campaign", "plan", str(f), "--home", str(home), "--seed", "1"])
    assert run.exit_code == 0, run.output
    _, sends, info = load_plan(s, "winter")
    assert info["expected_cost"] <= 100 and sends["coupon_id"].notna().sum() == 50
    run = CliRunner().invoke(cli, ["generate", "--out", str(shop), "--respond-to",
                                   str(plan_dir(s, "winter")), "--seed", "1"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert (shop / "truth" / "campaign_winter.parquet").exists()
    run = CliRunner().invoke(cli, ["campaign", "report", "winter", "--data", str(shop),
                                   "--home", str(home)])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "PCT20" in run.output


@pytest.mark.parametrize(
    ("text", "needle"),
    [("name: x\nbudget: -1\nstart: 2026-01-01\n", "budget"),
     ("name: x\nstart: 2026-01-01\nchannels: [fax]\n", "channels"),
     ("- not a mapping\n", "mapping"),
     ("name: x\nstart: 2026-01-01\npredicate: 'nosuch > 1'\n", "nosuch")],
)  # fmt: skip
def test_cli_bad_campaign_files_exit_2_with_the_reason(tmp_path, base_shop, text, needle):
    home = tmp_path / "home"
    s = MemberwiseSettings(home=home)
    s.members_dir.mkdir(parents=True)
    planted_targets(base_shop).to_parquet(s.members_dir / "members.parquet", index=False)
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    run = CliRunner().invoke(cli, ["campaign", "plan", str(f), "--home", str(home)])
    assert run.exit_code == 2
    assert needle in run.output
