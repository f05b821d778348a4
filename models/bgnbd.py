"""BG/NBD: the beta-geometric / negative binomial model of repeat buying (Fader, Hardie & Lee
2005, "Counting your customers the easy way", Marketing Science 24(2)).

Each customer, while alive, buys at Poisson rate ``lambda`` and, right after each *repeat*
purchase, drops out for good with probability ``p``. Across customers
``lambda ~ Gamma(shape r, rate alpha)`` and ``p ~ Beta(a, b)``. A customer is summarised by
the usual RFM triple, all arrays of shape (n_customers,) in one time unit (days or weeks):

- ``frequency`` x: number of repeat purchases (purchase days after the first; an integer >= 0);
- ``recency`` t_x: time from the first to the last purchase (0 when x = 0);
- ``T``: time from the first purchase to the end of the calibration period (t_x <= T).

``alpha`` is in that time unit (the mean rate is r / alpha purchases per unit); r, a and b
are unitless. ``rfm_summary`` builds the triple from purchase timestamps.

Nothing here does I/O; scipy and pandas are imported when a function needs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pandas as pd

PARAM_NAMES = ("r", "alpha", "a", "b")
_LOG_BOUND = 20.0  # optimiser box in log-parameter space: params in [2e-9, 4.9e8]
_UNIT_DAYS = {"D": 1.0, "W": 7.0}

Array = NDArray[np.float64]


def _as_rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[Array, Array, Array]:
    """Broadcast and check an RFM triple; float64 arrays of one shape."""
    x, tx, tt = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(tt).all()):
        raise ValueError("frequency, recency and T must be finite (no NaN or inf)")
    if (x < 0).any() or (x != np.round(x)).any():
        raise ValueError("frequency must be a whole number of repeat purchases >= 0")
    if (tx < 0).any() or (tx > tt * (1 + 1e-12) + 1e-12).any():
        raise ValueError("need 0 <= recency <= T for every customer; build them with rfm_summary")
    if (tx[x == 0] != 0).any():
        raise ValueError(
            "recency must be 0 where frequency is 0 (no repeat purchase: first = last purchase)"
        )
    return x, tx, tt


def _log_likelihood(
    r: float, alpha: float, a: float, b: float, x: Array, tx: Array, T: Array
) -> tuple[Array, Array, Array, Array]:
    """Per-customer log-likelihood and its pieces: (ll, A2, A3, logaddexp(A2, A3)).

    ll = A1 + log(exp(A2) + [x > 0] exp(A3)) with
    A1 = lnG(r + x) - lnG(r) + r ln(alpha),
    A2 = lnB(a, b + x) - lnB(a, b) - (r + x) ln(alpha + T),
    A3 = lnB(a + 1, b + x - 1) - lnB(a, b) - (r + x) ln(alpha + t_x)  (-inf where x = 0).
    """
    from scipy.special import betaln, gammaln

    repeat = x > 0
    lnb_ab = betaln(a, b)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - lnb_ab - (r + x) * np.log(alpha + T)
    # x = 0 rows: evaluate with x = 1 (always finite), then drop them with -inf.
    x1 = np.where(repeat, x, 1.0)
    a3 = betaln(a + 1, b + x1 - 1) - lnb_ab - (r + x) * np.log(alpha + tx)
    a3 = np.where(repeat, a3, -np.inf)
    lse = np.logaddexp(a2, a3)
    return a1 + lse, a2, a3, lse


def _objective(
    log_params: Array,
    x: Array,
    tx: Array,
    T: Array,
    weight: Array,
    n: float,
    penalizer: float,
) -> tuple[float, Array]:
    """Negative mean log-likelihood (+ penalizer * sum(params**2)) and its gradient with
    respect to the log-parameters (4,). ``weight`` (m,) counts customers per unique row."""
    from scipy.special import digamma

    r, alpha, a, b = np.exp(log_params)
    ll, a2, a3, lse = _log_likelihood(r, alpha, a, b, x, tx, T)
    w2 = np.exp(a2 - lse)  # share of the likelihood from "alive at T"
    w3 = 1.0 - w2  # ... and from "dropped out right after the last purchase" (0 if x = 0)

    ln_at, ln_atx = np.log(alpha + T), np.log(alpha + tx)
    d_ab, d_abx, d_bx = digamma(a + b), digamma(a + b + x), digamma(b + x)
    bx1 = np.where(x > 0, b + x - 1, 1.0)
    # d ll / d theta, per row (A3's derivative only matters where w3 > 0)
    g_r = digamma(r + x) - digamma(r) + np.log(alpha) - w2 * ln_at - w3 * ln_atx
    g_alpha = r / alpha - (r + x) * (w2 / (alpha + T) + w3 / (alpha + tx))
    g_a = d_ab - d_abx + w3 / a
    g_b = d_bx - d_abx - digamma(b) + d_ab - w3 / bx1
    grads = np.stack([g_r, g_alpha, g_a, g_b])  # (4, m)

    params = np.array([r, alpha, a, b])
    value = -float(weight @ ll) / n + penalizer * float(params @ params)
    grad = -(grads @ weight) / n * params + 2.0 * penalizer * params**2
    return value, grad


def _aggregate(x: Array, tx: Array, T: Array) -> tuple[Array, Array, Array, Array]:
    """Unique (x, t_x, T) rows and how many customers share each: four (m,) arrays."""
    _, cx = np.unique(x, return_inverse=True)
    utx, ctx = np.unique(tx, return_inverse=True)
    ut, ct = np.unique(T, return_inverse=True)
    # combine codes two at a time so the keys stay below n**2 (no int64 overflow)
    _, c1 = np.unique(cx.astype(np.int64) * len(utx) + ctx, return_inverse=True)
    key = c1.astype(np.int64) * len(ut) + ct
    _, first, count = np.unique(key, return_index=True, return_counts=True)
    return x[first], tx[first], T[first], count.astype(np.float64)


class BetaGeoModel:
    """BG/NBD with parameters ``r``, ``alpha`` (time unit of the data), ``a``, ``b``.

    Fit by maximum likelihood on an RFM summary, or build from known parameters with
    ``BetaGeoModel(r=..., alpha=..., a=..., b=...)`` / ``from_dict``. Every prediction takes
    arrays (n_customers,) (scalars broadcast) in the time unit used for fitting and returns
    a float64 array of the broadcast shape.

    After ``fit``: ``log_likelihood_`` (mean per customer, without the penalty),
    ``n_customers_``, ``converged_`` and ``optimizer_message_``.
    """

    def __init__(
        self,
        *,
        r: float | None = None,
        alpha: float | None = None,
        a: float | None = None,
        b: float | None = None,
    ) -> None:
        given = [v for v in (r, alpha, a, b) if v is not None]
        if given and len(given) != 4:
            raise ValueError("give all four parameters r, alpha, a, b or none of them")
        self.r = float("nan") if r is None else float(r)
        self.alpha = float("nan") if alpha is None else float(alpha)
        self.a = float("nan") if a is None else float(a)
        self.b = float("nan") if b is None else float(b)
        if given:
            self._check_params()
        self.log_likelihood_: float = float("nan")
        self.n_customers_: int = 0
        self.converged_: bool = False
        self.optimizer_message_: str = ""

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        penalizer: float = 0.0,
        max_iter: int = 500,
    ) -> Self:
        """Maximum likelihood on (n_customers,) arrays of frequency, recency, T.

        Minimises ``-mean(log-likelihood) + penalizer * (r**2 + alpha**2 + a**2 + b**2)``
        (the ``lifetimes`` convention, so a penalizer means the same there and here) over
        log-parameters with L-BFGS-B and the analytic gradient; identical (x, t_x, T) rows
        are aggregated first. Falls back to Nelder-Mead if L-BFGS-B stops without
        converging. Raises ValueError when nobody made a repeat purchase (a and b are then
        not identified) or the summary is inconsistent.
        """
        from scipy.optimize import minimize

        if penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, not {penalizer}")
        x, tx, tt = (v.ravel() for v in _as_rfm(frequency, recency, T))
        if x.size == 0:
            raise ValueError("no customers to fit")
        if not (x > 0).any():
            raise ValueError(
                "no customer made a repeat purchase: the dropout parameters a, b cannot be "
                "estimated; use a longer calibration period"
            )
        ux, utx, ut, w = _aggregate(x, tx, tt)
        n = float(x.size)

        # start: r = 1, alpha from the pooled purchase rate, p ~ Beta(1, 1)
        rate = x.sum() / max(tt.sum(), 1e-12)
        start = np.log([1.0, np.clip(1.0 / rate, 1e-6, 1e6), 1.0, 1.0])
        args = (ux, utx, ut, w, n, float(penalizer))
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
        res = minimize(
            _objective,
            start,
            args=args,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-8},
        )
        if not res.success or not np.isfinite(res.fun):
            x0 = res.x if np.isfinite(res.fun) else start
            res = minimize(
                lambda lp: _objective(np.clip(lp, -_LOG_BOUND, _LOG_BOUND), *args)[0],
                x0,
                method="Nelder-Mead",
                options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12},
            )
        log_params = np.clip(res.x, -_LOG_BOUND, _LOG_BOUND)
        self.r, self.alpha, self.a, self.b = (float(v) for v in np.exp(log_params))
        ll = _log_likelihood(self.r, self.alpha, self.a, self.b, ux, utx, ut)[0]
        self.log_likelihood_ = float(w @ ll) / n
        self.n_customers_ = int(n)
        self.converged_ = bool(res.success)
        self.optimizer_message_ = str(res.message)
        return self

    @staticmethod
    def log_likelihood(
        params: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """Per-customer log-likelihood (n_customers,) at ``params`` = (r, alpha, a, b).

        Equation (6) of the paper, on the log scale:
        ``lnG(r+x) - lnG(r) + r ln(alpha) + log(exp(A2) + [x > 0] exp(A3))`` with
        ``A2 = lnB(a, b+x) - lnB(a, b) - (r+x) ln(alpha+T)`` and
        ``A3 = lnB(a+1, b+x-1) - lnB(a, b) - (r+x) ln(alpha+t_x)``. Sum it for the total.
        """
        r, alpha, a, b = (float(v) for v in params)
        if min(r, alpha, a, b) <= 0:
            raise ValueError(f"BG/NBD parameters must be > 0, got {tuple(params)}")
        x, tx, tt = _as_rfm(frequency, recency, T)
        return _log_likelihood(r, alpha, a, b, x, tx, tt)[0]

    # ------------------------------------------------------------------ predictions
    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """P(alive at T | x, t_x, T) (n_customers,), in [0, 1].

        ``1 / (1 + [x > 0] a / (b + x - 1) * ((alpha + T) / (alpha + t_x))**(r + x))``
        (paper, eq. 12): 1 for x = 0 (in BG/NBD dropout can only follow a repeat purchase),
        falling as the gap T - t_x grows. Evaluated as a logistic of the log-odds.
        """
        from scipy.special import expit

        x, tx, tt = _as_rfm(frequency, recency, T)
        return expit(-self._log_odds_dead(x, tx, tt))

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """E[number of purchases in (T, T + t] | x, t_x, T] (n_customers,); ``t`` in the
        data's time unit (scalar or per customer).

        The paper's eq. (10):
        ``(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))**(r+x)
        * 2F1(r+x, b+x; a+b+x-1; z)] * P(alive)`` with ``z = t/(alpha+T+t)``,
        evaluated after Euler's transformation of the hypergeometric function, which folds
        the power into it: ``((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; c; z) =
        ((alpha+T+t)/(alpha+T))**(1-a) * 2F1(a+b-1-r, a-1; c; z)``, c = a+b+x-1. The two
        forms are equal; the printed one multiplies a vanishing power by a diverging series
        and gives NaN for large x or t, the second has small upper parameters whatever x is.
        Where scipy's hyp2f1 returns NaN (x + r - a + 1 a large integer) c is moved by a
        relative 1e-9, and a = 1 exactly by 1e-9; both are continuous limits.
        """
        from scipy.special import expit, hyp2f1

        self._check_fitted()
        x, tx, tt = _as_rfm(frequency, recency, T)
        t_arr = np.asarray(t, dtype=np.float64)
        if (t_arr < 0).any() or not np.isfinite(t_arr).all():
            raise ValueError("t must be finite and >= 0")
        r, alpha, b = self.r, self.alpha, self.b
        a = self.a if abs(self.a - 1.0) > 1e-9 else 1.0 + 1e-9
        c = a + b + x - 1
        power = np.exp((1 - a) * np.log1p(t_arr / (alpha + tt)))
        z = t_arr / (alpha + tt + t_arr)
        series = power * hyp2f1(a + b - 1 - r, a - 1, c, z)
        bad = ~np.isfinite(series)
        if bad.any():  # scipy gives NaN when c - (a+b-1-r) - (a-1) = x + r - a + 1 is a
            # large integer; the function is continuous in c, so step off the integer
            series = np.where(bad, power * hyp2f1(a + b - 1 - r, a - 1, c * (1 + 1e-9), z), series)
        p_alive = expit(-self._log_odds_dead(x, tx, tt))
        return np.asarray(c / (a - 1) * (1.0 - series) * p_alive, dtype=np.float64)

    def predict_no_purchase_probability(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """P(no purchase in (T, T + t] | x, t_x, T) (n_customers,): the churn probability to
        compare with other churn models over a horizon of ``t`` time units.

        ``(1 - P(alive)) + P(alive) * ((alpha + T) / (alpha + T + t))**(r + x)``: a dead
        customer never buys; an alive one has lambda ~ Gamma(r + x, alpha + T) a posteriori,
        and cannot drop out before its next purchase, so P(no purchase | alive) =
        E[exp(-lambda t)].
        """
        from scipy.special import expit

        self._check_fitted()
        x, tx, tt = _as_rfm(frequency, recency, T)
        t_arr = np.asarray(t, dtype=np.float64)
        if (t_arr < 0).any() or not np.isfinite(t_arr).all():
            raise ValueError("t must be finite and >= 0")
        p_alive = expit(-self._log_odds_dead(x, tx, tt))
        none_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + tt) - np.log(self.alpha + tt + t_arr))
        )
        return np.asarray(1.0 - p_alive + p_alive * none_if_alive, dtype=np.float64)

    def _log_odds_dead(self, x: Array, tx: Array, tt: Array) -> Array:
        """log(P(dead) / P(alive)) (n,); -inf where x = 0."""
        self._check_fitted()
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        bx1 = np.where(x > 0, b + x - 1, 1.0)
        lo = np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + tt) - np.log(alpha + tx))
        return np.where(x > 0, lo, -np.inf)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, float]:
        """The four parameters, JSON-ready: {"r", "alpha", "a", "b"}."""
        self._check_fitted()
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> Self:
        """Rebuild from ``to_dict()`` output (extra keys are ignored)."""
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise ValueError(f"BG/NBD parameters missing: {missing}")
        return cls(**{k: float(params[k]) for k in PARAM_NAMES})

    @property
    def fitted(self) -> bool:
        return all(np.isfinite(getattr(self, k)) for k in PARAM_NAMES)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("BetaGeoModel has no parameters: call fit() or from_dict() first")

    def _check_params(self) -> None:
        values = [getattr(self, k) for k in PARAM_NAMES]
        if not all(np.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"BG/NBD parameters must be finite and > 0, got {values}")

    def __repr__(self) -> str:
        return (
            f"BetaGeoModel(r={self.r:.4g}, alpha={self.alpha:.4g}, a={self.a:.4g}, b={self.b:.4g})"
        )


def rfm_summary(
    member_ids: ArrayLike,
    order_ts: ArrayLike,
    as_of: date | datetime | str,
    unit: str = "D",
) -> pd.DataFrame:
    """One row per member with an order on or before ``as_of``: member_id, frequency, recency, T.

    ``member_ids`` and ``order_ts`` (n_orders,) pair each order with its member; timestamps
    are naive UTC (tz-aware ones are converted to UTC). Purchases are counted per calendar
    day (several orders on one day are one purchase, as in the BG/NBD literature).
    ``as_of`` is the last day of the calibration period (its time of day is ignored, as in
    ``features.tags``: everything up to the end of that day is visible); orders on later
    days are dropped. ``unit`` "D" gives days, "W" weeks (days / 7, fractional as in the
    CDNOW data). Returns, sorted by member_id:

    - frequency (int64): purchase days after the first one;
    - recency (float64): last purchase day - first purchase day, in ``unit``;
    - T (float64): ``as_of`` day - first purchase day, in ``unit``.
    """
    import pandas as pd

    if unit not in _UNIT_DAYS:
        raise ValueError(f"unit must be one of {sorted(_UNIT_DAYS)}, not {unit!r}")
    ts = pd.Series(pd.to_datetime(np.asarray(order_ts)))
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    end = pd.Timestamp(as_of)
    if end.tzinfo is not None:
        end = end.tz_convert("UTC").tz_localize(None)
    end = end.normalize()
    ids = np.asarray(member_ids)
    if len(ids) != len(ts):
        raise ValueError(f"{len(ids)} member_ids but {len(ts)} order timestamps")
    orders = pd.DataFrame({"member_id": ids, "day": ts.dt.normalize().to_numpy()})
    orders = orders[orders["day"].notna() & (orders["day"] <= end)].drop_duplicates()
    days = orders.groupby("member_id", sort=True)["day"]
    first, last, n_days = days.min(), days.max(), days.size()
    per_unit = pd.Timedelta(days=_UNIT_DAYS[unit])
    return pd.DataFrame(
        {
            "member_id": first.index.to_numpy(),
            "frequency": (n_days - 1).to_numpy(np.int64),
            "recency": ((last - first) / per_unit).to_numpy(np.float64),
            "T": ((end - first) / per_unit).to_numpy(np.float64),
        }
    )
