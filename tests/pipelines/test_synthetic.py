"""The synthetic shop: deterministic, in the contract, and the planted truth shows in the data."""

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contract import CHANNELS, COUPON_KINDS, TABLES
from pipelines.ingest import load_shop
from pipelines.synthetic import RESPONSES, WORLDS, SyntheticConfig, World, generate, get_world

MEMBERS = 400
SEED = 11
WINDOW = pd.Timedelta(days=SyntheticConfig().campaign_window_days)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    counts = generate(out, members=MEMBERS, seed=SEED)
    frames = {p.stem: pd.read_parquet(p) for p in out.glob("*.parquet")}
    truth = {p.stem: pd.read_parquet(p) for p in (out / "truth").glob("*.parquet")}
    return out, counts, frames, truth


def _local(ts: pd.Series, tz: pd.Series) -> pd.DataFrame:
    """Local weekday and hour of naive-UTC ``ts`` in each row's timezone."""
    day = np.zeros(len(ts), dtype=int)
    hour = np.zeros(len(ts), dtype=int)
    utc = pd.to_datetime(ts).dt.tz_localize("UTC").reset_index(drop=True)
    for zone, idx in pd.Series(range(len(ts))).groupby(tz.to_numpy()):
        local = utc.iloc[idx.to_numpy()].dt.tz_convert(zone)
        day[idx.to_numpy()] = local.dt.dayofweek.to_numpy()
        hour[idx.to_numpy()] = local.dt.hour.to_numpy()
    return pd.DataFrame({"day": day, "hour": hour})


def _circular(a: np.ndarray, b: np.ndarray, period: int) -> np.ndarray:
    return np.abs((a - b + period // 2) % period - period // 2)


def test_same_seed_gives_identical_tables(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, members=120, seed=4)
    generate(b, members=120, seed=4)
    generate(c, members=120, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert len(files) == len(TABLES) + 4  # the contract's tables + truth
    for rel in files:
        pd.testing.assert_frame_equal(pd.read_parquet(a / rel), pd.read_parquet(b / rel))
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert not pd.read_parquet(a / "order_lines.parquet").equals(
        pd.read_parquet(c / "order_lines.parquet")
    )


def test_every_table_matches_the_contract_and_loads_clean(shop):
    out, counts, frames, _ = shop
    arrow = {"str": pa.types.is_string, "timestamp": pa.types.is_timestamp,
             "float": pa.types.is_float64, "bool": pa.types.is_boolean}  # fmt: skip
    for name, table in TABLES.items():
        schema = pq.read_schema(out / f"{name}.parquet")
        assert schema.names == table.column_names, name
        for col in table.columns:
            assert arrow[col.type](schema.field(col.name).type), (name, col.name)
            if not col.nullable:
                assert frames[name][col.name].notna().all(), (name, col.name)
        assert counts[name] == len(frames[name]) > 0, name
    shop_data = load_shop(out, date(2025, 12, 31))
    for name, rep in shop_data.report.items():
        assert rep.quarantined == 0 and rep.after_as_of == 0, (name, rep.reasons)
    assert frames["order_lines"]["ts"].between("2024-01-01", "2026-01-01").all()
    assert set(frames["coupons"]["kind"]) <= set(COUPON_KINDS)
    assert set(frames["messages"]["channel"]) == set(CHANNELS)
    assert set(frames["events"]["event_type"]) == {"view", "cart", "login"}
    assert (
        frames["order_lines"]["order_id"].nunique()
        == frames["order_lines"].groupby(["order_id", "member_id"]).ngroups
    )


def test_truth_is_written(shop):
    out, _, frames, truth = shop
    members = truth["members"]
    assert len(members) == MEMBERS and members["member_id"].is_unique
    assert set(members["coupon_response"]) == set(RESPONSES)
    assert members["peak_how_local"].between(0, 167).all()
    assert members["timezone"].isin(frames["members"]["timezone"]).all()
    assert len(members["segment"].unique()) >= 4
    effects = truth["coupon_effects"]
    assert len(effects) == MEMBERS * len(frames["coupons"])
    manifest = (out / "truth" / "manifest.json").read_text()
    assert f'"seed": {SEED}' in manifest and '"churn_share"' in manifest


def test_members_buy_mostly_in_their_preferred_categories(shop):
    _, _, frames, truth = shop
    lines = frames["order_lines"].merge(frames["products"][["product_id", "category"]])
    pref = truth["members"].set_index("member_id")["preferred_categories"].map(set)
    inside = [c in pref[m] for m, c in zip(lines["member_id"], lines["category"], strict=True)]
    share = pd.Series(inside).groupby(lines["member_id"].to_numpy()).agg(["mean", "size"])
    share = share[share["size"] >= 10]
    assert share["mean"].median() > 0.65
    # and the category popularity inside a category is long-tailed
    counts = lines.groupby(["category", "product_id"]).size().rename("n").reset_index()
    top = counts.sort_values("n", ascending=False).groupby("category").head(3)
    assert top["n"].sum() / counts["n"].sum() > 0.3  # 3 of ~20 products per category


def test_consumables_are_rebought_and_durables_bought_once(shop):
    _, _, frames, truth = shop
    lines = frames["order_lines"]
    consumable = truth["products"].set_index("product_id")["consumable"]
    per = lines.groupby(["member_id", "product_id"]).size().rename("n").reset_index()
    per["consumable"] = per["product_id"].map(consumable)
    assert per.loc[~per["consumable"], "n"].max() == 1
    assert per.loc[per["consumable"], "n"].mean() > 2.0
    assert (per["n"] == 1).mean() > 0.6  # most products a member buys, they buy once


def test_purchase_rates_vary_and_follow_the_plant(shop):
    _, _, frames, truth = shop
    m = truth["members"].set_index("member_id")
    orders = frames["order_lines"].drop_duplicates("order_id")
    n = orders.groupby("member_id").size().reindex(m.index, fill_value=0)
    assert m["purchase_rate"].quantile(0.9) > 3 * m["purchase_rate"].quantile(0.1)
    assert np.corrcoef(np.log1p(n), np.log(m["purchase_rate"]))[0, 1] > 0.5


def test_orders_happen_around_the_planted_local_peak(shop):
    _, _, frames, truth = shop
    m = truth["members"].set_index("member_id")
    orders = frames["order_lines"].drop_duplicates("order_id").reset_index(drop=True)
    local = _local(orders["ts"], orders["member_id"].map(m["timezone"]))
    peak = orders["member_id"].map(m["peak_how_local"]).to_numpy()
    how = local["day"].to_numpy() * 24 + local["hour"].to_numpy()
    near_hour = _circular(local["hour"].to_numpy(), peak % 24, 24) <= 2
    assert near_hour.mean() > 0.7
    # a member's own peak beats one global hour of week for everybody
    own = (_circular(how, peak, 168) <= 1).mean()
    best_global = max((_circular(how, h, 168) <= 1).mean() for h in range(168))
    assert own > 3 * best_global
    assert m["peak_how_local"].nunique() > 20


def test_churned_members_stop_at_churn_ts_and_new_members_start_at_signup(shop):
    _, _, frames, truth = shop
    m = truth["members"].set_index("member_id")
    churn = m["churn_ts"].dropna()
    assert 0.15 < len(churn) / len(m) < 0.35
    assert (churn > pd.Timestamp("2025-07-01")).sum() >= 10  # positives near the end
    for name, col in (("order_lines", "ts"), ("events", "ts"), ("messages", "opened_ts"),
                      ("messages", "clicked_ts")):  # fmt: skip
        df = frames[name].dropna(subset=[col])
        assert not (df[col] >= df["member_id"].map(churn)).any(), (name, col)
        assert not (df[col] < df["member_id"].map(m["signup_ts"])).any(), (name, col)
    assert (m["signup_ts"] > pd.Timestamp("2024-01-01")).mean() > 0.1
    # churners fade before they go: fewer orders in the last 60 days than in the 180 before
    start = m["signup_ts"].clip(lower=pd.Timestamp("2024-01-01"))
    long = churn[churn - start[churn.index] >= pd.Timedelta(days=240)]
    orders = frames["order_lines"].drop_duplicates("order_id")
    orders = orders[orders["member_id"].isin(long.index)]
    before = orders["member_id"].map(long) - orders["ts"]
    last60 = (before < pd.Timedelta(days=60)).sum() / 60
    prior = ((before >= pd.Timedelta(days=60)) & (before < pd.Timedelta(days=240))).sum() / 180
    assert last60 < 0.8 * prior


def test_members_open_their_preferred_channel(shop):
    _, _, frames, truth = shop
    msg = frames["messages"]
    pref = msg["member_id"].map(truth["members"].set_index("member_id")["preferred_channel"])
    opened = msg["opened_ts"].notna()
    assert opened[msg["channel"] == pref].mean() > 4 * opened[msg["channel"] != pref].mean()
    assert (msg["opened_ts"].dropna() >= msg.loc[opened, "sent_ts"]).all()
    assert (msg["clicked_ts"].dropna() >= msg.loc[msg["clicked_ts"].notna(), "opened_ts"]).all()


def test_campaigns_are_randomized_and_coupons_move_persuadables(shop):
    _, _, frames, truth = shop
    offers = frames["coupon_offers"]
    groups = offers.groupby("campaign_id")["coupon_id"].agg(
        control=lambda s: s.isna().sum(), treated=lambda s: s.notna().sum(), coupons="nunique"
    )
    assert len(groups) == SyntheticConfig().campaigns
    assert (groups["control"] > 0).all() and (groups["treated"] > 0).all()
    assert (groups["coupons"] == 1).all()  # one coupon per campaign
    assert offers["coupon_id"].dropna().isin(frames["coupons"]["coupon_id"]).all()

    # outcome: any order in the response window
    orders = frames["order_lines"].drop_duplicates("order_id")[["member_id", "ts"]]
    j = offers.reset_index().merge(orders, on="member_id", how="left")
    j["hit"] = (j["ts"] >= j["offered_ts"]) & (j["ts"] < j["offered_ts"] + WINDOW)
    offers = offers.assign(
        bought=j.groupby("index")["hit"].any(),
        response=offers["member_id"].map(truth["members"].set_index("member_id")["coupon_response"]),
        treated=offers["coupon_id"].notna(),
    )  # fmt: skip
    rate = offers.groupby(["response", "treated"])["bought"].mean()
    assert rate["persuadable", True] > rate["persuadable", False] + 0.1
    assert rate["sleeping_dog", True] < rate["sleeping_dog", False]
    assert abs(rate["lost_cause", True] - rate["lost_cause", False]) < 0.1
    redeemed = offers.groupby("response")["redeemed_ts"].apply(lambda s: s.notna().mean())
    assert redeemed["sure_thing"] > 0.2 and redeemed["lost_cause"] == 0
    assert offers.loc[~offers["treated"], "redeemed_ts"].isna().all()


def test_redemptions_are_discounted_order_lines(shop):
    _, _, frames, _ = shop
    lines = frames["order_lines"]
    red = lines[lines["coupon_id"].notna()]
    assert len(red) and (lines.loc[lines["coupon_id"].isna(), "discount"] == 0).all()
    per_order = red.groupby("order_id")["discount"].sum()
    assert (per_order > 0).all()
    pct = red[red["coupon_id"] == "PCT20"]
    assert np.allclose(pct["discount"], (pct["quantity"] * pct["unit_price"] * 0.2).round(2))
    offers = frames["coupon_offers"].dropna(subset=["redeemed_ts"])
    first = red.groupby(["member_id", "coupon_id"])["ts"].apply(set)
    for row in offers.itertuples():
        assert row.redeemed_ts in first[row.member_id, row.coupon_id]


def test_true_coupon_effects_make_a_real_choice(shop):
    _, _, _, truth = shop
    fx = truth["coupon_effects"]
    by = fx.groupby(["coupon_response", "coupon_id"])
    pers = by["uplift_purchase_prob"].mean()["persuadable"]
    assert pers["PCT20"] > pers["PCT10"] > 0
    cost = by["expected_cost"].mean()["persuadable"]
    assert cost["PCT20"] > cost["PCT10"]
    margin = by["expected_incremental_margin"].mean()
    assert (margin["sure_thing"] < 0).all() and (margin["sleeping_dog"] < 0).all()
    assert (margin["lost_cause"] == 0).all()
    wide = fx.pivot(index="member_id", columns="coupon_id", values="expected_incremental_margin")
    best = wide.idxmax(axis=1).where(wide.max(axis=1) > 0, "none")
    assert best.nunique() >= 3  # the right answer differs between members
    assert (best == "none").mean() > 0.3


def test_chunks_keep_ids_unique_and_config_is_checked(tmp_path):
    cfg = SyntheticConfig(chunk_members=70)
    counts = generate(tmp_path, members=150, seed=2, config=cfg)
    lines = pd.read_parquet(tmp_path / "order_lines.parquet")
    assert counts["members"] == 150
    assert pd.read_parquet(tmp_path / "members.parquet")["member_id"].is_unique
    assert lines.groupby("order_id")["member_id"].nunique().max() == 1
    with pytest.raises(ValueError, match="segments"):
        replace(cfg, segments=cfg.segments[:2])
    with pytest.raises(ValueError, match="end"):
        SyntheticConfig(start=date(2025, 1, 1), end=date(2024, 1, 1))


# ---------------------------------------------------------------- worlds
WORLD_MEMBERS = 300


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Every preset at the same tiny size and seed: name -> (folder, frames, truth)."""
    out = {}
    for name, w in WORLDS.items():
        folder = tmp_path_factory.mktemp(name)
        generate(folder, members=WORLD_MEMBERS, seed=SEED, world=w)
        frames = {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}
        truth = {p.stem: pd.read_parquet(p) for p in (folder / "truth").glob("*.parquet")}
        out[name] = (folder, frames, truth)
    return out


def _repeat_share(lines: pd.DataFrame) -> float:
    """Share of order lines whose product the member bought in an earlier order."""
    first = lines.sort_values("ts", kind="stable").groupby(["member_id", "product_id"])["ts"]
    return float((lines["ts"] > first.transform("min").reindex(lines.index)).mean())


def _margins(truth: dict[str, pd.DataFrame]) -> pd.DataFrame:
    fx = truth["coupon_effects"]
    return fx.pivot(index="member_id", columns="coupon_id", values="expected_incremental_margin")


def test_the_default_world_is_the_base_config(tmp_path):
    assert World().config() == SyntheticConfig()
    assert WORLDS["default"].config() == SyntheticConfig()
    generate(tmp_path / "a", members=120, seed=4)
    generate(tmp_path / "b", members=120, seed=4, world=WORLDS["default"])
    for rel in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet")):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert len(WORLDS) >= 7 and all(w.description for w in WORLDS.values())


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_every_world_generates_within_the_contract(worlds, name):
    folder, frames, truth = worlds[name]
    for table in TABLES:
        assert len(frames[table]) > 0, (name, table)
    shop = load_shop(folder, date(2025, 12, 31))
    for table, rep in shop.report.items():
        assert rep.quarantined == 0, (name, table, rep.reasons)
    manifest = json.loads((folder / "truth" / "manifest.json").read_text())
    assert manifest["world"]["name"] == name
    fx = truth["coupon_effects"]
    assert len(fx) == WORLD_MEMBERS * len(frames["coupons"])
    # each member's planted best coupon is the argmax of their planted margins (none if <= 0)
    wide = _margins(truth)
    best = truth["members"].set_index("member_id")
    expected = wide.idxmax(axis=1).where(wide.max(axis=1) > 0)
    assert (
        best["best_coupon"].reindex(wide.index).equals(expected.astype(best["best_coupon"].dtype))
    )
    assert np.allclose(best["best_expected_incremental_margin"].reindex(wide.index),
                       wide.max(axis=1).clip(lower=0))  # fmt: skip


def test_no_coupon_effect_plants_zero_effects(worlds):
    _, frames, truth = worlds["no_coupon_effect"]
    fx = truth["coupon_effects"]
    assert (fx["uplift_purchase_prob"] == 0).all()
    assert (fx["extra_order_prob"] == 0).all() and (fx["skip_prob"] == 0).all()
    assert (fx["expected_incremental_margin"] <= 0).all()  # an offer only costs
    assert (fx["expected_cost"] > 0).any()  # members who buy anyway still redeem
    assert truth["members"]["best_coupon"].isna().all()
    assert frames["order_lines"]["coupon_id"].notna().any()


def test_uniform_coupon_effect_plants_equal_effects(worlds):
    _, _, truth = worlds["uniform_coupon_effect"]
    assert (truth["members"]["coupon_response"] == "persuadable").all()
    fx = truth["coupon_effects"]
    assert (fx.groupby("coupon_id")["extra_order_prob"].nunique() == 1).all()
    assert (fx["extra_order_prob"] > 0).all() and (fx["skip_prob"] == 0).all()
    # one coupon is every member's best, so one coupon for everyone is as good as targeting
    best = truth["members"]["best_coupon"]
    assert best.value_counts(normalize=True).iloc[0] > 0.9
    wide = _margins(truth)
    oracle = wide.clip(lower=0).max(axis=1).mean()
    assert wide.mean().max() > 0.97 * oracle > 0


def test_strong_heterogeneity_makes_personalisation_pay(worlds):
    def gap(name: str) -> tuple[float, float]:
        wide = _margins(worlds[name][2])
        oracle = wide.clip(lower=0).max(axis=1).mean()
        return oracle, oracle - max(wide.mean().max(), 0.0)

    strong, default = gap("strong_heterogeneity"), gap("default")
    assert strong[1] > 1.5 * default[1]  # targeting gains much more over one coupon for all
    m = worlds["strong_heterogeneity"][2]["members"]
    ps = m[m["price_sensitive"]]
    assert (ps["coupon_response"] == "persuadable").all()
    others = m[~m["price_sensitive"] & ~m["heavy_buyer"]]
    assert set(others["coupon_response"]) == {"lost_cause", "sleeping_dog"}
    # lifts twice as far apart by price sensitivity as in the base
    for strong_c, base_c in zip(
        WORLDS["strong_heterogeneity"].config().coupons, SyntheticConfig().coupons, strict=True
    ):
        spread = strong_c.lift_price_sensitive - strong_c.lift_other
        assert spread == pytest.approx(2 * (base_c.lift_price_sensitive - base_c.lift_other))


def test_repeat_rate_moves_the_repeat_share_of_order_lines(worlds):
    share = {n: _repeat_share(worlds[n][1]["order_lines"])
             for n in ("low_repeat", "default", "high_repeat")}  # fmt: skip
    assert share["high_repeat"] > share["default"] + 0.1
    assert share["default"] > share["low_repeat"] + 0.1
    staples = worlds["high_repeat"][2]["members"]["staples"].map(len)
    assert staples.max() == 4


def test_catalogue_noise_and_channel_knobs_show_in_the_data(worlds):
    assert len(worlds["tiny_catalogue"][1]["products"]) <= 40
    assert len(worlds["default"][1]["products"]) > 100

    # noise: orders far less concentrated around the member's planted hour
    def near_peak(name: str) -> float:
        _, frames, truth = worlds[name]
        m = truth["members"].set_index("member_id")
        orders = frames["order_lines"].drop_duplicates("order_id").reset_index(drop=True)
        local = _local(orders["ts"], orders["member_id"].map(m["timezone"]))
        peak = orders["member_id"].map(m["peak_hour_local"]).to_numpy()
        return float((_circular(local["hour"].to_numpy(), peak, 24) <= 1).mean())

    assert near_peak("noisy") < 0.7 * near_peak("default")
    sms = worlds["sms_heavy"]
    assert (sms[1]["messages"]["channel"] == "sms").mean() > 0.6
    assert (sms[2]["members"]["preferred_channel"] == "sms").mean() > 0.45
    assert (worlds["default"][1]["messages"]["channel"] == "sms").mean() < 0.25


def test_world_size_knobs_and_overrides():
    assert get_world("small_shop").size() == 600
    assert get_world("small_shop").size(2500) == 2500
    assert get_world("default").size() == 2000
    with pytest.raises(ValueError, match="presets are"):
        get_world("no_such_world")
    with pytest.raises(ValueError, match="noise"):
        World(noise=1.5)
    with pytest.raises(ValueError, match="channel_mix"):
        World(channel_mix=(1.0, 0.0))  # type: ignore[arg-type]
    cfg = replace(get_world("noisy"), repeat_rate=0.5).config()
    assert cfg.staple_line_share == 0.5 and cfg.peak_hour_share < SyntheticConfig().peak_hour_share
    zero = World(coupon_effect=0.0).config()
    assert all(c.lift_price_sensitive == c.lift_other == 0 for c in zero.coupons)
    assert zero.sleeping_dog_drop == 0


def test_generate_command_takes_a_world_and_knob_overrides(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["generate", "--list-worlds"])
    assert listed.exit_code == 0 and all(name in listed.output for name in WORLDS)
    out = tmp_path / "shop"
    args = ["generate", "--out", str(out), "--world", "no_coupon_effect", "--members", "40",
            "--repeat-rate", "0.5", "--channel-mix", "0,1,0"]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "truth" / "manifest.json").read_text())
    assert manifest["members"] == 40
    assert manifest["world"]["name"] == "no_coupon_effect"
    assert manifest["world"]["repeat_rate"] == 0.5 and manifest["world"]["coupon_effect"] == 0
    assert (pd.read_parquet(out / "messages.parquet")["channel"] == "sms").all()
    bad = runner.invoke(app, ["generate", "--out", str(out), "--world", "nope"])
    assert bad.exit_code == 2 and "presets are" in bad.output
    bad = runner.invoke(app, ["generate", "--out", str(out), "--channel-mix", "1,2"])
    assert bad.exit_code == 2 and "three shares" in bad.output
