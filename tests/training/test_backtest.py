"""Backtest sections on tiny worlds: each section's candidates and scores, and the report's
verdicts, with right answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import repo
from features.settings import ChurnSettings, SendTimeSettings
from models.coupon import NoCouponPolicy
from models.send_time import SendTimeConfig, SendTimeModel
from training.backtest import churn, coupons, report, send_time
from training.backtest.send_time import reachable_share
from training.churn import churn_policies
from training.churn import gate_candidates as churn_candidates
from training.config import TrainConfig, churn_config
from training.gate import Candidate, select
from training.send_time import gate_candidates, send_time_policies


# ---------------------------------------------------------------- send time
def test_reachable_share_is_the_ceiling_under_quiet_hours():
    allowed = (np.arange(168) % 24 >= 8) & (np.arange(168) % 24 < 22)
    # 22:00 and 07:00 are within an hour of 21:00 and 08:00; 23:00 and 03:00 are not
    assert reachable_share(np.array([22, 7, 23, 3, 12]), allowed) == 0.6
    assert reachable_share(np.array([23]), np.ones(168, dtype=bool)) == 1.0


def test_send_time_candidates_are_the_gates_and_score_by_member():
    # a engages on Mondays at 12:00 (hour 12), b on Tuesdays at 23:00 (hour 47, quiet)
    ts = pd.to_datetime(["2025-05-05 12:00", "2025-05-12 12:00", "2025-05-19 12:00",
                         "2025-05-06 23:00", "2025-05-13 23:00"])  # fmt: skip
    eng = pd.DataFrame({"member_id": ["a"] * 3 + ["b"] * 2, "channel": "email", "ts": ts})
    shipped = SendTimeModel(SendTimeConfig()).fit(
        eng["member_id"].to_numpy(str), eng["channel"].to_numpy(str),
        eng["ts"].to_numpy("datetime64[us]"), timezones={},
    )  # fmt: skip
    fitted = send_time.candidates(eng, {}, {"a": "s", "b": "s"}, shipped)
    assert list(fitted) == list(send_time_policies(SendTimeSettings()))  # run's, in order
    assert fitted["model"] is shipped
    recs = send_time.recommended(fitted, ["a", "b"], {})
    assert abs(recs["member_most_frequent_hour"][0] - 12) <= 1  # a's own hour (b's is quiet)
    assert not shipped.config.quiet_mask()[recs["model"]].any()  # never a quiet hour
    actual = np.array([12, 47])
    scores = send_time.score(recs, actual)
    assert all(set(m) == set(scores["model"]) for m in scores.values())
    # the gate's units are the members' hits: their mean is the reported hit rate
    for c in gate_candidates(fitted, ["a", "b"], actual):
        assert c.units.mean() == scores[c.name]["hit_rate_1h"]


# ---------------------------------------------------------------- churn
def test_churn_scores_with_standard_errors():
    y = np.array([1, 1, 0, 0])
    scores = churn.score(
        {"perfect": np.array([0.9, 0.8, 0.2, 0.1]), "reversed": np.array([0.1, 0.2, 0.8, 0.9])},
        y,
    )
    assert scores["perfect"]["roc_auc"] == 1.0 and scores["perfect"]["roc_auc_se"] == 0.0
    assert scores["reversed"]["roc_auc"] == 0.0
    assert scores["perfect"]["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)


def test_churn_labels_are_members_without_a_purchase():
    future = pd.DataFrame({"member_id": ["a", "b"], "quantity": [1.0, -1.0]})
    assert churn.labels(pd.Series(["a", "b", "c"]), future).tolist() == [0, 1, 1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_churn_candidates_are_the_gates_and_the_recency_rule_learns_from_the_past():
    cutoff = pd.Timestamp("2025-06-01")
    # "loyal" buys every 10 days; "gone" bought twice long ago; both known at the cutoff
    rows = [("loyal", cutoff - pd.Timedelta(days=d)) for d in range(5, 400, 10)]
    rows += [("gone", cutoff - pd.Timedelta(days=d)) for d in (380, 390)]
    rows += [(f"x{i}", cutoff - pd.Timedelta(days=100 + i)) for i in range(20)]  # once
    purchases = pd.DataFrame(rows, columns=["member_id", "ts"])
    tags = pd.DataFrame({"member_id": ["loyal", "gone"]})
    for f in repo.CHURN_FEATURES:
        tags[f] = 1.0
    tags["recency_days"] = [5.0, 380.0]

    class Shipped:  # a registered classifier: it knows nothing
        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    cfg = TrainConfig(horizon_days=90)
    probs = churn.candidates(tags, purchases, cutoff, cfg, Shipped())
    assert list(probs) == list(churn_policies(cfg, churn_config(ChurnSettings(), cfg)))
    # the rule saw, 90 days earlier, that long-quiet members did not come back
    assert probs["recency_rule"][1] > probs["recency_rule"][0]
    assert probs["model"].tolist() == [0.5, 0.5]
    y = np.array([0, 1])
    sel = select(churn_candidates(probs, y, tags["member_id"].to_numpy()), n_boot=50)
    assert [r.name for r in sel.rows] == ["recency_rule", "bg_nbd", "model"]
    assert sel.row("recency_rule").estimate == 1.0 and sel.row("model").estimate == 0.5


# ---------------------------------------------------------------- coupons
def offers_world() -> pd.DataFrame:
    """One campaign, half control: the coupon adds 2 to every treated member's margin."""
    n = 40
    arm = np.where(np.arange(n) % 2 == 0, "C10", "")
    frame = pd.DataFrame({
        "member_id": [f"m{i}" for i in range(n)], "campaign_id": "camp", "arm": arm,
        "net_margin": np.where(arm != "", 3.0, 1.0), "redeemed": arm != "",
    })  # fmt: skip
    for f in repo.COUPON_FEATURES:
        frame[f] = 0.0
    return frame


def test_coupon_candidates_are_the_gates_and_value_everyone_and_none():
    frame = offers_world()
    cands, decisions = coupons.candidates(frame.iloc[:0], frame, NoCouponPolicy())
    # an unfitted policy is not a candidate; no history: no propensity
    assert [c.name for c in cands] == list(decisions) == ["no_coupon", "everyone:C10"]
    scores = coupons.score(decisions, frame)
    assert scores["everyone:C10"]["incremental_margin"] == pytest.approx(2.0)
    assert scores["no_coupon"]["incremental_margin"] == 0.0
    sel = select(cands)
    assert sel.champion == "everyone:C10" and sel.row("everyone:C10").lcb > 0
    for c in cands:  # the gate's estimate is the reported value, offer by offer
        assert c.units.mean() == pytest.approx(scores[c.name]["incremental_margin"])
    rand = coupons.random_scores(frame, budget=20)
    assert rand["share_offered"] == 0.5 and 0.0 < rand["incremental_margin"] < 2.0


def test_targeted_offers_are_not_valued():
    frame = offers_world()
    assert coupons.randomized(frame) and not coupons.randomized(frame[frame["arm"] != ""])


# ---------------------------------------------------------------- report
def products_section() -> dict:
    """A products section whose gate compared three candidates on 200 members."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.4, 200)
    cands = [
        Candidate("popularity", "baseline", 0, units=base),
        Candidate("buy_again", "baseline", 1, units=base + 0.2),  # far better
        Candidate("hybrid", "model", 2, units=base + 0.2 + rng.normal(0, 0.05, 200)),  # a tie
    ]
    sel = select(cands)
    metrics = {c.name: {"ndcg@10": float(c.units.mean()), "ndcg@10_se": 0.01} for c in cands}
    return {"primary": "ndcg@10", "shipped": metrics.pop("hybrid"), "baselines": metrics,
            "shipped_name": "hybrid", "gate": report.gate_record(sel, "hybrid")}  # fmt: skip


def result_with(products: dict | None) -> dict:
    return {"products": products, "churn": None, "send_time": None, "coupons": None}


def test_wins_are_the_gates_verdict():
    w = report.wins(result_with(products_section()))["products"]
    # buy-again beat popularity; the hybrid did not beat buy-again by more than the noise
    assert w["champion"] == "buy_again" and not w["shipped_is_champion"]
    assert w["shipped_verdict"] == "not better than buy_again by more than the noise"
    assert w["beats_beyond_noise"] == []
    assert report.wins(result_with(None))["products"] is None


def test_markdown_shows_the_gates_table_and_standard_errors():
    result = {"dataset": "tiny", "as_of": "2025-01-01", "horizon_days": 90, "notes": {},
              "rows": {"visible": {}, "horizon": {}}, **result_with(products_section())}  # fmt: skip
    result["wins"] = report.wins(result)
    md = report.markdown(result)
    assert "| model | ndcg@10 |" in md and "| **hybrid** (shipped) | " in md
    assert "| candidate | role | ndcg@10 ± se | advantage | lower bound | vs | verdict |" in md
    assert "| buy_again | baseline |" in md and "beats popularity by more than the noise" in md
    assert "Champion: **buy_again**" in md


def test_mlflow_metric_names_keep_only_what_mlflow_accepts():
    name = report._metric_name(
        "products.hybrid_tuned(buy_again_weight=3, item_weight=1).ndcg_at_10"
    )
    assert name == "products.hybrid_tuned_buy_again_weight_3_ item_weight_1_.ndcg_at_10"
    assert report._metric_name("coupons.everyone:C10.qini") == "coupons.everyone:C10.qini"


# ---------------------------------------------------------------- one-off campaign, cross-fitted
def _one_off_campaign(n: int = 1800, seed: int = 3) -> pd.DataFrame:
    """One campaign, thirds control / A / B: A adds 6 to the margin of members with x > 0
    and takes 6 from the others; B takes 1 from everyone."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    arm = rng.permutation(np.resize(np.array(["", "A", "B"]), n))
    effect = np.where(arm == "A", np.where(x > 0, 6.0, -6.0), 0.0) - (arm == "B") * 1.0
    return pd.DataFrame({
        "member_id": [f"m{i}" for i in range(n)], "campaign_id": "mail",
        "arm": arm, "x": x, "z": rng.normal(size=n),
        "net_margin": 5.0 + effect + rng.normal(0, 1.0, n),
    })  # fmt: skip


def test_member_folds_keep_a_member_in_one_fold():
    members = pd.Series(["a", "b", "a", "c", "b", "d"])
    fold = coupons.member_folds(members, k=2)
    assert fold[0] == fold[2] and fold[1] == fold[4]
    assert set(fold) == {0, 1}
    with pytest.raises(ValueError, match="2 to 4 folds"):
        coupons.member_folds(members, k=6)


def test_cross_fitted_one_off_campaign_gate_picks_the_personalised_policy():
    from features.settings import CouponSettings, TrainingSettings
    from training.config import coupon_config
    from training.gate import select

    frame = _one_off_campaign()
    ccfg = coupon_config(CouponSettings(), TrainingSettings())
    cands, decisions, unfitted = coupons.cross_fitted(frame, ["x", "z"], ccfg, k=3)
    assert unfitted == ""
    assert [c.name for c in cands] == ["no_coupon", "everyone:A", "everyone:B", "personalised"]
    assert set(decisions) == {*(c.name for c in cands), "random", "t_learner"}
    assert select(cands).champion == "personalised"
    scores = coupons.score(decisions, frame)
    # the planted optimum (A where x > 0) is worth 6 * P(x > 0) = 3 per offer
    for name in ("personalised", "t_learner"):
        m = scores[name]
        assert abs(m["incremental_margin"] - 3.0) < 3 * m["incremental_margin_se"] + 0.5
        a = decisions[name][0]
        assert (a[frame["x"].to_numpy() > 0.2] == "A").mean() > 0.9
        assert (a[frame["x"].to_numpy() < -0.2] == "").mean() > 0.9
    assert scores["everyone:B"]["incremental_margin"] < 0
    assert set(decisions["random"][0]) == {"", "A", "B"}


def test_cross_fitted_section_renders_in_the_report():
    from types import SimpleNamespace

    from features.settings import MemberwiseSettings, TrainingSettings

    frame = _one_off_campaign(n=900).assign(**{f: 0.0 for f in repo.COUPON_FEATURES})
    frame["recency_days"] = frame["x"]  # the planted effect rides on a coupon feature
    ctx = SimpleNamespace(settings=MemberwiseSettings(), cfg=TrainingSettings(), truth_dir=None,
                          notes={})  # fmt: skip
    sec = coupons.cross_fitted_section(ctx, frame)
    assert sec["offers"] == 900 and sec["outside_gate"] == ["random", "t_learner"]
    assert set(sec["baselines"]) >= {"no_coupon", "everyone:A", "everyone:B", "random"}
    assert "cross-fitting" in ctx.notes["coupons"]
    result = {"dataset": "mail", "as_of": "2020-01-01", "horizon_days": 14, "notes": ctx.notes,
              "coupons": {"primary": coupons.PRIMARY, **sec},
              "rows": {"visible": {}, "horizon": {}}}  # fmt: skip
    text = report.markdown(result)
    assert "Champion: **" in text and "cross-fitting" in text


def test_products_without_buyers_in_the_horizon_is_not_compared():
    from training.backtest import NotCompared, products
    from training.config import TrainConfig

    lines = pd.DataFrame({
        "member_id": ["a", "b"], "order_id": ["o1", "o2"], "product_id": ["p1", "p2"],
        "ts": pd.to_datetime(["2020-01-01", "2020-01-02"]), "quantity": [1, 1],
    })  # fmt: skip
    with pytest.raises(NotCompared, match="0 buyers"):
        products.compare(lines, pd.Timestamp("2020-02-01"), 14, TrainConfig(), shipped=None)


def test_tuning_window_without_buyers_raises_nothing_to_tune():
    from training.tuning import NothingToTune, grid_search

    lines = pd.DataFrame({
        "member_id": ["a"], "order_id": ["o1"], "product_id": ["p1"],
        "ts": pd.to_datetime(["2020-01-01"]), "quantity": [1],
    })  # fmt: skip
    with pytest.raises(NothingToTune, match="0 buyers"):
        grid_search(lambda p: None, [{}, {}], lines, pd.Timestamp("2020-02-01"),
                    pd.Timestamp("2020-02-10"))  # fmt: skip
