"""BG/NBD against the paper's formulas written out independently, and against customers
simulated from the model's own story with the CDNOW parameters (weeks)."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from models.bgnbd import BetaGeoModel, rfm_summary

CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee 2005
N_SIM = 40_000
HOLDOUT_WEEKS = 39.0


def simulate(n: int, params: dict[str, float], holdout: float, seed: int) -> dict[str, np.ndarray]:
    """BG/NBD customers, CDNOW-like: first purchases spread over 12 weeks, calibration ends at
    week 39 (T ~ U(27, 39) weeks), then a ``holdout``-week window.

    lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b); the customer dies right after repeat
    purchase number N ~ Geometric(p). With K1 ~ Poisson(lambda T) events in [0, T], x =
    min(K1, N) and t_x is the x-th of K1 uniform order statistics on [0, T], i.e.
    T * Beta(x, K1 - x + 1). Alive at T iff K1 < N; holdout purchases min(K2, N - K1).
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    T = rng.uniform(27.0, 39.0, n)
    dies_at = rng.geometric(p)
    k1 = rng.poisson(lam * T)
    x = np.minimum(k1, dies_at)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(k1 - x + 1, 1)), 0.0)
    alive = k1 < dies_at
    future = np.where(alive, np.minimum(rng.poisson(lam * holdout), dies_at - k1), 0)
    return {"x": x, "tx": tx, "T": T, "alive": alive, "future": future}


@pytest.fixture(scope="module")
def sim() -> dict[str, np.ndarray]:
    return simulate(N_SIM, CDNOW, HOLDOUT_WEEKS, seed=2005)


@pytest.fixture(scope="module")
def fitted(sim) -> BetaGeoModel:
    return BetaGeoModel().fit(sim["x"], sim["tx"], sim["T"])


@pytest.fixture(scope="module")
def truth() -> BetaGeoModel:
    return BetaGeoModel.from_dict(CDNOW)


# ---------------------------------------------------------------- likelihood
def ll_excel_form(r: float, alpha: float, a: float, b: float, x: int, tx: float, T: float) -> float:
    """The paper's companion note ("Implementing the BG/NBD model in Excel"):
    ln L = ln A1 + ln A2 + ln(A3 + [x > 0] A4), with plain gamma functions and the ratio
    a / (b + x - 1) in place of the second beta function."""
    ln_a1 = math.lgamma(r + x) + r * math.log(alpha) - math.lgamma(r)
    ln_a2 = math.lgamma(a + b) + math.lgamma(b + x) - math.lgamma(b) - math.lgamma(a + b + x)
    a3 = (alpha + T) ** -(r + x)
    a4 = a / (b + x - 1) * (alpha + tx) ** -(r + x) if x > 0 else 0.0
    return ln_a1 + ln_a2 + math.log(a3 + a4)


def ll_by_integration(r: float, alpha: float, a: float, b: float, x: int, tx: float, T: float):
    """Integrate the individual likelihood (1-p)^x lam^x e^{-lam T} + [x>0] p (1-p)^{x-1}
    lam^x e^{-lam t_x} over the gamma and beta mixing densities numerically."""
    g = stats.gamma(r, scale=1 / alpha).pdf
    be = stats.beta(a, b).pdf

    def e_lam(t: float) -> float:
        return integrate.quad(lambda v: v**x * math.exp(-v * t) * g(v), 0, np.inf)[0]

    alive = integrate.quad(lambda p: (1 - p) ** x * be(p), 0, 1)[0] * e_lam(T)
    dead = integrate.quad(lambda p: p * (1 - p) ** (x - 1) * be(p), 0, 1)[0] * e_lam(tx) if x else 0
    return math.log(alive + dead)


CASES = [(0, 0.0, 38.86), (2, 30.43, 38.86), (1, 1.71, 38.86), (7, 29.43, 32.71), (3, 3.0, 3.0)]


def test_log_likelihood_matches_the_papers_formula_written_two_other_ways():
    x, tx, T = (np.array(c) for c in zip(*CASES, strict=True))
    got = BetaGeoModel.log_likelihood(list(CDNOW.values()), x, tx, T)
    excel = [ll_excel_form(*CDNOW.values(), *c) for c in CASES]
    integrated = [ll_by_integration(*CDNOW.values(), *c) for c in CASES]
    np.testing.assert_allclose(got, excel, rtol=1e-12)
    np.testing.assert_allclose(got, integrated, rtol=1e-5)
    # x = 0 needs no dropout term: ln(alpha^r / (alpha + T)^r)
    assert got[0] == pytest.approx(CDNOW["r"] * math.log(CDNOW["alpha"] / (CDNOW["alpha"] + 38.86)))


# ---------------------------------------------------------------- fitting
def test_fit_recovers_the_cdnow_parameters(fitted):
    # Tolerances are about 4 standard deviations of each estimate, measured by refitting 40
    # simulated samples of 40,000: relative sd r 1.1%, alpha 2.0%, a 5.0%, b 6.5%. The
    # dropout parameters are the hardest: only customers who stop buying inform them.
    tolerance = {"r": 0.05, "alpha": 0.08, "a": 0.20, "b": 0.25}
    assert fitted.converged_, fitted.optimizer_message_
    for name, true in CDNOW.items():
        assert getattr(fitted, name) == pytest.approx(true, rel=tolerance[name]), name


def test_fit_maximises_and_weights_duplicates(sim, fitted):
    x, tx, T = sim["x"], sim["tx"], sim["T"]
    true_ll = BetaGeoModel.log_likelihood(list(CDNOW.values()), x, tx, T).mean()
    assert fitted.log_likelihood_ >= true_ll
    # integer days: many identical rows are aggregated; twice the data -> the same optimum
    days = {"x": x[:5000], "tx": np.floor(tx[:5000] * 7), "T": np.floor(T[:5000] * 7)}
    once = BetaGeoModel().fit(days["x"], days["tx"], days["T"])
    twice = BetaGeoModel().fit(*(np.tile(days[k], 2) for k in ("x", "tx", "T")))
    for name in CDNOW:
        assert getattr(twice, name) == pytest.approx(getattr(once, name), rel=1e-4)
    assert once.alpha == pytest.approx(7 * CDNOW["alpha"], rel=0.25)  # alpha carries the unit


def test_penalizer_shrinks_the_parameters(sim):
    n = 2_000
    args = (sim["x"][:n], sim["tx"][:n], sim["T"][:n])
    plain = np.array(list(BetaGeoModel().fit(*args).to_dict().values()))
    shrunk = np.array(list(BetaGeoModel().fit(*args, penalizer=0.05).to_dict().values()))
    assert shrunk @ shrunk < plain @ plain


def test_fit_refuses_data_it_cannot_learn_from():
    with pytest.raises(ValueError, match="repeat purchase"):
        BetaGeoModel().fit([0, 0, 0], [0, 0, 0], [10, 20, 30])
    with pytest.raises(ValueError, match="recency must be 0"):
        BetaGeoModel().fit([0, 1], [2.0, 3.0], [10, 10])
    with pytest.raises(ValueError, match="recency <= T"):
        BetaGeoModel().fit([1, 1], [12.0, 3.0], [10, 10])
    with pytest.raises(RuntimeError, match="fit"):
        BetaGeoModel().conditional_probability_alive([1], [1], [2])


# ---------------------------------------------------------------- P(alive)
def test_probability_alive_shape(truth):
    a, b = CDNOW["a"], CDNOW["b"]
    # no repeat purchase: nobody can have dropped out yet
    np.testing.assert_array_equal(truth.conditional_probability_alive(0, 0, [1.0, 39, 500]), 1.0)
    # falls as the silence since the last purchase grows (x = 3, T = 39)
    p = truth.conditional_probability_alive(3, np.array([39.0, 30, 20, 10, 1]), 39)
    assert np.all(np.diff(p) < 0)
    # just bought: only the chance of dropping out right after that purchase remains
    for x in (1, 4, 20):
        expected = 1 / (1 + a / (b + x - 1))
        assert truth.conditional_probability_alive(x, 39, 39) == pytest.approx(expected)
    # the same silence says more about a frequent buyer
    assert truth.conditional_probability_alive(10, 10, 39) < truth.conditional_probability_alive(
        2, 10, 39
    )


def test_probability_alive_is_calibrated_on_the_simulation(sim, truth):
    p = truth.conditional_probability_alive(sim["x"], sim["tx"], sim["T"])
    for lo, hi in [(1, 1), (2, 3), (4, 8), (9, 10**6)]:
        g = (sim["x"] >= lo) & (sim["x"] <= hi)
        se = math.sqrt(np.mean(p[g] * (1 - p[g])) / g.sum())
        assert sim["alive"][g].mean() == pytest.approx(p[g].mean(), abs=4 * se + 1e-3), (lo, hi)


# ---------------------------------------------------------------- expected purchases
def test_expected_purchases_match_the_simulated_holdout(sim, truth, fitted):
    """E[Y | x-group] = mean over the group of E[Y | x, t_x, T], so the mean prediction must
    match the mean simulated holdout count within a few standard errors."""
    args = (sim["x"], sim["tx"], sim["T"])
    pred = truth.conditional_expected_purchases(HOLDOUT_WEEKS, *args)
    y = sim["future"]
    for lo, hi in [(0, 0), (1, 1), (2, 3), (4, 8), (9, 10**6)]:
        g = (sim["x"] >= lo) & (sim["x"] <= hi)
        se = y[g].std() / math.sqrt(g.sum())
        assert y[g].mean() == pytest.approx(pred[g].mean(), abs=4 * se), (lo, hi)
    # the fitted model forecasts the total within 5% (sampling error of the fit included)
    total = fitted.conditional_expected_purchases(HOLDOUT_WEEKS, *args).sum()
    assert total == pytest.approx(y.sum(), rel=0.05)
    # and the chance of no purchase at all
    p0 = truth.predict_no_purchase_probability(HOLDOUT_WEEKS, *args)
    for lo, hi in [(0, 0), (1, 2), (3, 10**6)]:
        g = (sim["x"] >= lo) & (sim["x"] <= hi)
        se = math.sqrt(np.mean(p0[g] * (1 - p0[g])) / g.sum())
        assert np.mean(y[g] == 0) == pytest.approx(p0[g].mean(), abs=4 * se + 1e-3), (lo, hi)


def expected_by_quadrature(m: BetaGeoModel, t: float, x: int, tx: float, T: float) -> float:
    """P(alive) * E[(1 - E[exp(-lambda p t)]) / p] with lambda ~ Gamma(r+x, alpha+T) and
    p ~ Beta(a, b+x) a posteriori: an alive customer buys (1 - e^{-lambda p t}) / p on average
    in t. One numerical integral over p, no hypergeometric function."""
    r, alpha, a, b = m.r, m.alpha, m.a, m.b

    def f(p: float) -> float:
        log_dens = (a - 1) * math.log(p) + (b + x - 1) * math.log1p(-p) - special.betaln(a, b + x)
        return (
            -math.expm1((r + x) * math.log((alpha + T) / (alpha + T + p * t)))
            / p
            * math.exp(log_dens)
        )

    return (
        float(m.conditional_probability_alive(x, tx, T))
        * integrate.quad(f, 0, 1, limit=200, epsrel=1e-10)[0]
    )


def test_expected_purchases_agree_with_direct_integration(truth):
    for x, tx, T, t in [
        (0, 0, 39, 39),
        (2, 30.43, 38.86, 39),
        (7, 35, 39, 52),
        (200, 300, 400, 520),
    ]:
        got = float(truth.conditional_expected_purchases(t, x, tx, T))
        assert got == pytest.approx(expected_by_quadrature(truth, t, x, tx, T), rel=1e-6)
    # a brand-new customer (x = t_x = T = 0) gets the unconditional forecast, eq. (7) as printed
    r, alpha, a, b = CDNOW.values()
    t = 39.0
    eq7 = (
        (a + b - 1)
        / (a - 1)
        * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    assert float(truth.conditional_expected_purchases(t, 0, 0, 0)) == pytest.approx(eq7, rel=1e-9)
    # no time, no purchases; more time, more purchases
    ts = np.array([0.0, 1, 10, 100])
    e = truth.conditional_expected_purchases(ts, 3, 20, 39)
    assert e[0] == 0 and np.all(np.diff(e) > 0)
    assert truth.predict_no_purchase_probability(0.0, 3, 20, 39) == pytest.approx(1.0)


# ---------------------------------------------------------------- saving and summaries
def test_parameters_round_trip_through_json(fitted):
    saved = json.loads(json.dumps(fitted.to_dict()))
    assert set(saved) == {"r", "alpha", "a", "b"}
    again = BetaGeoModel.from_dict(saved)
    args = ([0, 2, 9], [0, 10.5, 30], [39, 39, 39])
    np.testing.assert_array_equal(
        again.conditional_probability_alive(*args), fitted.conditional_probability_alive(*args)
    )
    with pytest.raises(ValueError, match="missing"):
        BetaGeoModel.from_dict({"r": 1.0})


def test_rfm_summary_counts_purchase_days():
    ts = pd.to_datetime(
        [
            "2025-01-01 09:00", "2025-01-01 18:00",  # m1: two orders, one purchase day
            "2025-01-08 10:00", "2025-01-15 23:59",  # m1: repeat purchases on days 7 and 14
            "2025-02-01 00:00",  # m1: after as_of, ignored
            "2025-01-10 12:00",  # m2: single purchase
            "2025-01-29 00:00",  # m3: on the as_of day itself, included
        ]
    )  # fmt: skip
    ids = ["m1", "m1", "m1", "m1", "m1", "m2", "m3"]
    days = rfm_summary(ids, ts, date(2025, 1, 29))
    assert days["member_id"].tolist() == ["m1", "m2", "m3"]
    assert days["frequency"].tolist() == [2, 0, 0]
    assert days["recency"].tolist() == [14.0, 0.0, 0.0]
    assert days["T"].tolist() == [28.0, 19.0, 0.0]
    weeks = rfm_summary(ids, ts, "2025-01-29 15:30", unit="W")
    np.testing.assert_allclose(weeks[["recency", "T"]].to_numpy()[0], [2.0, 4.0])
    with pytest.raises(ValueError, match="unit"):
        rfm_summary(ids, ts, date(2025, 1, 29), unit="M")
