"""Gamma-Gamma against its likelihood integrated numerically and the published CDNOW
figures, recovery of planted parameters, and member value on hand-made members and on a
synthetic shop whose next year is known."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from models.clv import CLVConfig, GammaGammaModel, member_value, shrunk_cycle

# Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013), CDNOW sample
CDNOW_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


# ---------------------------------------------------------------- Gamma-Gamma
@pytest.mark.parametrize(("x", "m"), [(1, 11.77), (2, 22.35), (7, 40.0), (25, 3.5)])
def test_likelihood_is_the_integral_over_nu(x, m):
    """The mean of x Gamma(p, nu) order values is Gamma(px, x nu); integrate nu ~ Gamma(q,
    gamma) out numerically and compare with the closed form."""
    p, q, g = CDNOW_GG.values()

    def joint(nu: float) -> float:
        return stats.gamma.pdf(m, p * x, scale=1 / (x * nu)) * stats.gamma.pdf(nu, q, scale=1 / g)

    numeric, _ = integrate.quad(joint, 0, np.inf, limit=200)
    closed = GammaGammaModel(**CDNOW_GG).log_likelihood([x], [m])[0]
    assert closed == pytest.approx(math.log(numeric), abs=1e-6)


def test_published_cdnow_expected_spend():
    """Customers 1 and 2 of the CDNOW summary (x = 2, mean 22.35; x = 1, mean 11.77) and a
    customer with no repeat purchase (the population mean), as published with the
    lifetimes package's fit of the same data: 24.66, 18.91, 35.17."""
    gg = GammaGammaModel(**CDNOW_GG)
    got = gg.conditional_expected_spend([2, 1, 0], [22.35, 11.77, 0.0])
    assert got == pytest.approx([24.66, 18.91, 35.22], abs=0.02)
    assert gg.mean_spend() == pytest.approx(6.25 * 15.44 / 2.74)


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members with 1 + Poisson(2) orders; nu ~ Gamma(q, rate gamma); order values
    Gamma(p, rate nu). Returns x, mean order value, true mean spend p / nu."""
    rng = np.random.default_rng(seed)
    p, q, g = CDNOW_GG.values()
    nu = rng.gamma(q, 1 / g, n)
    x = 1 + rng.poisson(2.0, n)
    m = np.array([rng.gamma(p, 1 / v, k).mean() for v, k in zip(nu, x, strict=True)])
    return x, m, p / nu


def test_fit_recovers_planted_parameters_and_shrinkage_beats_the_raw_mean():
    x, m, true_mean = simulate(6000, seed=7)
    gg = GammaGammaModel().fit(x, m)
    assert gg.converged_
    assert gg.mean_spend() == pytest.approx(6.25 * 15.44 / 2.74, rel=0.05)
    assert gg.p == pytest.approx(6.25, rel=0.15)
    assert gg.q == pytest.approx(3.74, rel=0.15)
    # the fit is at least as likely as the truth on its own data
    assert gg.log_likelihood_ >= GammaGammaModel(**CDNOW_GG).log_likelihood(x, m).sum()
    shrunk = gg.conditional_expected_spend(x, m)
    assert np.mean((shrunk - true_mean) ** 2) < 0.8 * np.mean((m - true_mean) ** 2)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="order counts >= 1"):
        GammaGammaModel().fit([0, 2], [10.0, 12.0])
    with pytest.raises(ValueError, match="at least two members"):
        GammaGammaModel().fit([2], [10.0])
    with pytest.raises(ValueError, match="all three"):
        GammaGammaModel(p=1.0)
    with pytest.raises(ValueError, match="infinite"):
        GammaGammaModel(p=1.0, q=0.9, gamma=1.0).conditional_expected_spend([1], [1.0])
    assert GammaGammaModel.from_dict(CDNOW_GG.copy()).to_dict() == CDNOW_GG


# ---------------------------------------------------------------- member value
AS_OF = date(2025, 6, 30)


def hand_tags() -> pd.DataFrame:
    """Tag columns of five members, days before the end of the as-of day.

    A: 6 orders every 10 days, last 5 days ago; B: 2 orders 40 days apart, last 30 days ago;
    C: one order 100 days ago; D: no purchase; E: 11 orders every 30 days, last 300 ago."""
    return pd.DataFrame({
        "member_id": ["A", "B", "C", "D", "E"],
        "purchase_days": [6, 2, 1, 0, 11],
        "frequency": [6, 2, 1, 0, 11],
        "first_purchase_days": [55, 70, 100, np.nan, 600],
        "recency_days": [5, 30, 100, np.nan, 300],
        "avg_order_value": [20.0, 50.0, 80.0, np.nan, 30.0],
        "usual_cycle_days": [10.0, 40.0, np.nan, np.nan, 30.0],
    })  # fmt: skip


def test_member_value_on_hand_made_members():
    tags = hand_tags()
    mv = member_value(tags, AS_OF, CLVConfig(penalizer=1e-3, cycle_prior_gaps=2.0))
    f = mv.frame.set_index("member_id")
    assert list(mv.frame["member_id"]) == list(tags["member_id"])
    assert mv.bgnbd is not None and mv.gamma_gamma is not None and mv.notes == ()
    np.testing.assert_allclose(f["clv_12m"], f["expected_purchases"] * f["expected_spend"])
    # no purchase: nothing to say
    assert math.isnan(f.loc["D", "clv_12m"]) and f.loc["D", "expected_next_order"] is None
    # the frequent, recent buyer is worth more than the one who went quiet 300 days ago
    assert f.loc["A", "expected_purchases"] > f.loc["E", "expected_purchases"]
    # cycles: shop median of members with a cycle = median(10, 40, 30) = 30
    assert f.loc["A", "cycle_days"] == pytest.approx((5 * 10 + 2 * 30) / 7)
    assert f.loc["B", "cycle_days"] == pytest.approx((1 * 40 + 2 * 30) / 3)
    assert f.loc["C", "cycle_days"] == pytest.approx(30.0)  # one order: the shop's cycle
    # next order = last order (end of the as-of day - recency) + cycle
    end = pd.Timestamp(AS_OF) + pd.Timedelta(days=1)
    for m in "ABCE":
        due = end - pd.Timedelta(days=tags.set_index("member_id").loc[m, "recency_days"])
        due += pd.Timedelta(days=f.loc[m, "cycle_days"])
        assert f.loc[m, "expected_next_order"] == due.date(), m
    # expected spend is shrunk towards the shop: between the member's own and the mean
    mean = mv.gamma_gamma.mean_spend()
    for m, own in (("A", 20.0), ("C", 80.0)):
        lo, hi = sorted((own, mean))
        assert lo <= f.loc[m, "expected_spend"] <= hi


@pytest.mark.slow
def test_a_fit_that_does_not_settle_is_refit_with_a_small_penalty():
    """Four buyers cannot identify BG/NBD's dropout (a, b run off to infinity and the
    expected purchases are NaN): the fit is redone with a small penalty and a note says so."""
    mv = member_value(hand_tags(), AS_OF)
    assert mv.notes == ("BG/NBD did not settle without a penalty (too few members to identify "
                        "dropout): refit with penalizer 0.001",)  # fmt: skip
    assert mv.frame["expected_purchases"].notna().sum() == 4


def test_without_repeat_purchases_there_is_no_value_and_a_note():
    tags = hand_tags().iloc[[2, 3]]
    mv = member_value(tags, AS_OF)
    assert mv.bgnbd is None and mv.frame["clv_12m"].isna().all()
    assert any("repeat purchase" in n for n in mv.notes)
    assert any("two orders" in n for n in mv.notes)
    with pytest.raises(ValueError, match="usual_cycle_days"):
        member_value(tags.drop(columns=["usual_cycle_days"]), AS_OF)


def test_shrunk_cycle_weights_the_member_by_their_gaps():
    got = shrunk_cycle([10.0, 10.0, np.nan], [1, 8, 0], 40.0, 2.0)
    np.testing.assert_allclose(got, [30.0, 16.0, 40.0])
    np.testing.assert_allclose(shrunk_cycle([10.0], [1], 40.0, 0.0), [10.0])


# ---------------------------------------------------------------- the synthetic shop
@pytest.mark.slow
def test_value_on_a_synthetic_shop_matches_its_next_year(tmp_path):
    """Fit a year before the end of a synthetic shop's history: the predicted 12-month value
    adds up to what members spent in the following year (within 15%), ranks members by it
    (Spearman > 0.5), and the expected purchases follow the planted purchase rates of
    members who never churn; members who churned before the fit are worth less."""
    from features.tags import compute_tags
    from pipelines.ingest import load_shop
    from pipelines.synthetic import generate

    generate(tmp_path, members=400, seed=11)
    shop = load_shop(tmp_path, date(2025, 12, 31))
    as_of = date(2024, 12, 31)
    mv = member_value(compute_tags(shop.tables, as_of), as_of)
    ol = shop.tables["order_lines"]
    later = ol[ol["ts"] >= pd.Timestamp("2025-01-01")]
    spent = (later["quantity"] * later["unit_price"] - later["discount"]).groupby(
        later["member_id"]
    ).sum()  # fmt: skip
    f = mv.frame[mv.frame["clv_12m"].notna()].copy()
    f["actual"] = f["member_id"].map(spent).fillna(0.0)
    assert f["clv_12m"].sum() == pytest.approx(f["actual"].sum(), rel=0.15)
    assert stats.spearmanr(f["clv_12m"], f["actual"]).statistic > 0.5
    truth = pd.read_parquet(tmp_path / "truth" / "members.parquet")
    f = f.merge(truth[["member_id", "purchase_rate", "churn_ts"]], on="member_id")
    stays = f["churn_ts"].isna()
    rho = stats.spearmanr(f.loc[stays, "expected_purchases"], f.loc[stays, "purchase_rate"])
    assert rho.statistic > 0.7
    gone = f["churn_ts"] < pd.Timestamp(as_of)
    assert f.loc[gone, "clv_12m"].mean() < 0.6 * f.loc[stays, "clv_12m"].mean()
