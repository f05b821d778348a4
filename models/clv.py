"""Expected value of a member over the next months and the date of their next order.

Two pieces, both over the tag frame (``features.tags``: one row per member):

- :class:`GammaGammaModel`: Fader & Hardie's Gamma-Gamma model of spend per order (a
  member's order values are Gamma(p, nu) with nu ~ Gamma(q, gamma) across members), fit by
  maximum likelihood. Its conditional mean ``p (gamma + x m) / (p x + q - 1)`` shrinks a
  member's own mean order value ``m`` over ``x`` orders towards the shop's mean.
- :func:`member_value`: ``clv_12m`` = BG/NBD expected purchases over the horizon
  (``models.bgnbd.BetaGeoModel``, fit on the same frame) x Gamma-Gamma expected spend per
  order; ``expected_next_order`` = the last purchase plus the member's usual purchase
  cycle (median gap between orders), shrunk towards the shop's median cycle when the member
  has few gaps to go on.

Tag columns read: ``purchase_days``, ``first_purchase_days``, ``recency_days`` (BG/NBD, as
in ``models.churn``), ``frequency`` (orders) and ``avg_order_value`` (Gamma-Gamma),
``usual_cycle_days`` (the cycle). Money is in the shop's currency, time in days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from models.bgnbd import BetaGeoModel
from models.churn import _rfm as bgnbd_inputs

GG_PARAM_NAMES = ("p", "q", "gamma")
# BG/NBD penalty used when the unpenalised fit does not settle (a handful of members)
FALLBACK_PENALIZER = 1e-3
_LOG_BOUND = 20.0


@dataclass(frozen=True)
class CLVConfig:
    """``horizon_days``: the value window (365: the next 12 months); ``penalizer``: the
    L2 penalty of both fits (the ``lifetimes`` convention); ``cycle_prior_gaps``: the
    shop's median cycle counts as this many observed gaps when a member's own cycle is
    shrunk towards it (weight of the member's own median = gaps / (gaps + this))."""

    horizon_days: int = 365
    penalizer: float = 0.0
    cycle_prior_gaps: float = 2.0


def _gg_terms(
    log_params: np.ndarray, x: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-member log-likelihood (n,) and its gradient (3, n) w.r.t. (p, q, gamma)."""
    from scipy.special import digamma, gammaln

    p, q, g = np.exp(log_params)
    px = p * x
    gxm = g + x * m
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gxm)
    )
    d_pq = digamma(px + q)
    grad = np.stack([
        x * (d_pq - digamma(px) + np.log(m) + np.log(x) - np.log(gxm)),
        d_pq - digamma(q) + np.log(g) - np.log(gxm),
        q / g - (px + q) / gxm,
    ])  # fmt: skip
    return ll, grad


class GammaGammaModel:
    """Gamma-Gamma spend per order with parameters ``p``, ``q``, ``gamma`` (currency).

    Fit by maximum likelihood on (n,) arrays of order counts ``x`` (>= 1) and mean order
    values ``m`` (> 0), or build from known parameters. The likelihood of a member is
    Fader & Hardie's (2013) equation (1a) after integrating nu out:
    ``G(px+q) / (G(px) G(q)) * gamma**q * m**(px-1) * x**px / (gamma + x m)**(px+q)``.
    After ``fit``: ``log_likelihood_`` (sum over members, without the penalty),
    ``n_members_``, ``converged_``.
    """

    def __init__(
        self, *, p: float | None = None, q: float | None = None, gamma: float | None = None
    ) -> None:
        given = [v for v in (p, q, gamma) if v is not None]
        if given and len(given) != 3:
            raise ValueError("give all three parameters p, q, gamma or none of them")
        self.p = float("nan") if p is None else float(p)
        self.q = float("nan") if q is None else float(q)
        self.gamma = float("nan") if gamma is None else float(gamma)
        if given and not all(math.isfinite(v) and v > 0 for v in given):
            raise ValueError(f"Gamma-Gamma parameters must be finite and > 0, got {given}")
        self.log_likelihood_: float = float("nan")
        self.n_members_: int = 0
        self.converged_: bool = False

    @staticmethod
    def _inputs(x: ArrayLike, m: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        xa = np.asarray(x, dtype=np.float64).ravel()
        ma = np.asarray(m, dtype=np.float64).ravel()
        if xa.shape != ma.shape:
            raise ValueError(f"{xa.size} order counts but {ma.size} mean order values")
        if not (np.isfinite(xa).all() and np.isfinite(ma).all()):
            raise ValueError("order counts and mean order values must be finite")
        if (xa < 1).any() or (ma <= 0).any():
            raise ValueError("Gamma-Gamma needs order counts >= 1 and mean order values > 0")
        return xa, ma

    def fit(self, x: ArrayLike, m: ArrayLike, *, penalizer: float = 0.0) -> Self:
        """Maximum likelihood on ``x`` (orders, >= 1) and ``m`` (mean order value, > 0),
        minimising ``-mean(ll) + penalizer * (p**2 + q**2 + gamma**2)`` over log-parameters
        with L-BFGS-B and the analytic gradient. Needs at least two members."""
        from scipy.optimize import minimize

        if penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, not {penalizer}")
        xa, ma = self._inputs(x, m)
        if xa.size < 2:
            raise ValueError("Gamma-Gamma needs at least two members with an order to fit")
        n = float(xa.size)

        def objective(lp: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(lp)
            ll, grad = _gg_terms(lp, xa, ma)
            value = -float(ll.sum()) / n + penalizer * float(params @ params)
            g = -grad.sum(axis=1) / n * params + 2.0 * penalizer * params**2
            return value, g

        # start: p = 1; spend per order has mean p * gamma / (q - 1) ~ mean(m)
        start = np.log([1.0, 2.0, float(ma.mean())])
        res = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 3,
            options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9},
        )
        self.p, self.q, self.gamma = (float(v) for v in np.exp(res.x))
        self.log_likelihood_ = float(_gg_terms(res.x, xa, ma)[0].sum())
        self.n_members_ = int(n)
        self.converged_ = bool(res.success)
        return self

    def log_likelihood(self, x: ArrayLike, m: ArrayLike) -> np.ndarray:
        """Per-member log-likelihood (n,) at the model's parameters."""
        self._check_fitted()
        xa, ma = self._inputs(x, m)
        return _gg_terms(np.log([self.p, self.q, self.gamma]), xa, ma)[0]

    def mean_spend(self) -> float:
        """The population's expected spend per order, ``p gamma / (q - 1)`` (inf for q <= 1)."""
        self._check_fitted()
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else math.inf

    def conditional_expected_spend(self, x: ArrayLike, m: ArrayLike) -> np.ndarray:
        """E[spend per order | x orders with mean m] (n,): ``p (gamma + x m) / (p x + q - 1)``.

        ``x`` = 0 (or m unknown, NaN) gives the population mean. Raises ValueError when q <= 1
        (the mean spend does not exist)."""
        self._check_fitted()
        if self.q <= 1:
            raise ValueError(f"q = {self.q:.4g} <= 1: the expected spend per order is infinite")
        xa = np.asarray(x, dtype=np.float64)
        ma = np.asarray(m, dtype=np.float64)
        own = np.isfinite(ma) & (xa > 0)
        xs, ms = np.where(own, xa, 0.0), np.where(own, ma, 0.0)
        out = self.p * (self.gamma + xs * ms) / (self.p * xs + self.q - 1)
        return np.asarray(out, dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        self._check_fitted()
        return {k: float(getattr(self, k)) for k in GG_PARAM_NAMES}

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> Self:
        missing = [k for k in GG_PARAM_NAMES if k not in params]
        if missing:
            raise ValueError(f"Gamma-Gamma parameters missing: {missing}")
        return cls(**{k: float(params[k]) for k in GG_PARAM_NAMES})

    @property
    def fitted(self) -> bool:
        return all(math.isfinite(getattr(self, k)) for k in GG_PARAM_NAMES)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("GammaGammaModel has no parameters: call fit() or from_dict()")

    def __repr__(self) -> str:
        return f"GammaGammaModel(p={self.p:.4g}, q={self.q:.4g}, gamma={self.gamma:.4g})"


@dataclass(frozen=True)
class MemberValue:
    """What :func:`member_value` returns: ``frame`` (member_id, clv_12m, expected_purchases,
    expected_spend, cycle_days, expected_next_order, in the input's row order), the fitted
    models (None where they could not be fit) and ``notes`` (why a part is missing)."""

    frame: pd.DataFrame
    bgnbd: BetaGeoModel | None
    gamma_gamma: GammaGammaModel | None
    notes: tuple[str, ...]


def shrunk_cycle(
    own_cycle: ArrayLike, gaps: ArrayLike, shop_cycle: float, prior_gaps: float
) -> np.ndarray:
    """A member's purchase cycle (days, (n,)): ``(gaps * own + prior_gaps * shop) / (gaps +
    prior_gaps)``, the shop's cycle where the member has no gap (own NaN or gaps 0)."""
    own = np.asarray(own_cycle, dtype=np.float64)
    k = np.asarray(gaps, dtype=np.float64)
    usable = np.isfinite(own) & (k > 0)
    k = np.where(usable, k, 0.0)
    own = np.where(usable, own, 0.0)
    if prior_gaps <= 0:
        return np.where(usable, own, shop_cycle)
    return (k * own + prior_gaps * shop_cycle) / (k + prior_gaps)


def _fit_bgnbd(
    rfm: tuple[np.ndarray, np.ndarray, np.ndarray], penalizer: float, horizon: float
) -> tuple[BetaGeoModel, np.ndarray]:
    """BG/NBD fit on (x, t_x, T) and its expected purchases over ``horizon`` days (n,)."""
    bg = BetaGeoModel().fit(*rfm, penalizer=penalizer)
    with np.errstate(all="ignore"):
        return bg, bg.conditional_expected_purchases(horizon, *rfm)


def member_value(tags: pd.DataFrame, as_of: date, config: CLVConfig | None = None) -> MemberValue:
    """Expected value over ``config.horizon_days`` and the next order date of every member
    of ``tags`` (one row per member, the tag columns listed in the module docstring).

    Members without a purchase get NaN value and no next order date (the models describe
    customers after their first purchase). When nobody made a repeat purchase BG/NBD cannot
    be fit and ``clv_12m`` is NaN for all; when fewer than two members have a positive
    order value the expected spend is each member's own mean order value. ``notes`` says
    which fallback applied.
    """
    cfg = config or CLVConfig()
    need = ["member_id", "purchase_days", "first_purchase_days", "recency_days", "frequency",
            "avg_order_value", "usual_cycle_days"]  # fmt: skip
    missing = [c for c in need if c not in tags]
    if missing:
        raise ValueError(f"member_value needs the tag columns {missing}")
    n = len(tags)
    notes: list[str] = []
    x, tx, T, known = bgnbd_inputs(tags)

    purchases = np.full(n, np.nan)
    bg: BetaGeoModel | None = None
    if known.any() and (x[known] > 0).any():
        k = (x[known], tx[known], T[known])
        bg, est = _fit_bgnbd(k, cfg.penalizer, float(cfg.horizon_days))
        if not (bg.converged_ and np.isfinite(est).all()) and cfg.penalizer < FALLBACK_PENALIZER:
            bg, est = _fit_bgnbd(k, FALLBACK_PENALIZER, float(cfg.horizon_days))
            notes.append(
                f"BG/NBD did not settle without a penalty (too few members to identify "
                f"dropout): refit with penalizer {FALLBACK_PENALIZER}"
            )
        purchases[known] = np.where(np.isfinite(est), est, np.nan)
    else:
        notes.append("no member made a repeat purchase: BG/NBD cannot be fit, no clv_12m")

    orders = tags["frequency"].to_numpy(np.float64)
    aov = tags["avg_order_value"].to_numpy(np.float64)
    usable = known & np.isfinite(aov) & (aov > 0) & (orders >= 1)
    spend = np.where(known, np.where(usable, aov, np.nan), np.nan)
    gg: GammaGammaModel | None = None
    if usable.sum() >= 2:
        gg = GammaGammaModel().fit(orders[usable], aov[usable], penalizer=cfg.penalizer)
        if gg.q > 1:
            spend = np.where(
                known, gg.conditional_expected_spend(np.where(usable, orders, 0.0), aov), np.nan
            )
        else:
            notes.append(
                f"Gamma-Gamma q = {gg.q:.3g} <= 1 (spend too dispersed for a finite mean): "
                "expected spend is each member's own mean order value"
            )
    else:
        notes.append("fewer than two members with a positive order value: no Gamma-Gamma fit")

    own = tags["usual_cycle_days"].to_numpy(np.float64)
    gaps = np.clip(np.nan_to_num(orders) - 1, 0, None)
    has_cycle = np.isfinite(own) & (gaps > 0)
    shop_cycle = float(np.median(own[has_cycle])) if has_cycle.any() else math.nan
    if not has_cycle.any():
        notes.append("no member has two orders: no purchase cycle, no expected_next_order")
    cycle = np.where(known, shrunk_cycle(own, gaps, shop_cycle, cfg.cycle_prior_gaps), np.nan)
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)  # the end of the as-of day, as in tags
    recency = tags["recency_days"].to_numpy(np.float64)
    due = [
        (end - timedelta(days=float(r)) + timedelta(days=float(c))).date()
        if math.isfinite(r) and math.isfinite(c)
        else None
        for r, c in zip(recency, cycle, strict=True)
    ]
    frame = pd.DataFrame({
        "member_id": tags["member_id"].to_numpy(),
        "clv_12m": purchases * spend,
        "expected_purchases": purchases,
        "expected_spend": spend,
        "cycle_days": cycle,
        "expected_next_order": pd.Series(due, dtype=object),
    })  # fmt: skip
    return MemberValue(frame, bg, gg, tuple(notes))
