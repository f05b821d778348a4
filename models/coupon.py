"""Coupon choice: per member, the coupon (or none) with the highest expected incremental
margin net of the coupon's cost, learnt from past randomized offers and their control group.

Members' features are standardised on all offers (missing values imputed with the mean,
i.e. z = 0, and clipped to +-``z_clip``).

**Decomposed** (``fit`` given each offer's ``cost``, the discount paid; the default in the
pipeline). The incremental margin of coupon ``c`` is split into what it earns and what it
costs::

    uplift_c(x) = gain_c(x) - cost_c(x)
    gain_c(x)   = dP_c(x) * value(x)          (gain_outcome = "purchase")
                = dG_c(x)                     (gain_outcome = "margin")

- ``cost_c(x)``: the discount a member pays with coupon ``c``, learnt on the coupon offers.
  Redemptions are observed directly, so this part is precise.
- ``dP_c(x)``: how much the coupon raises the chance of a purchase in the response window,
  a DR-learner: doubly robust pseudo-outcomes of "bought in the window" (cross-fitted
  outcome models, the randomization's treatment share as propensity, within each campaign
  when campaigns are given), regressed on the features and the coupon with strong
  regularisation: the pseudo-outcomes are noisy, so the estimate stays close to "the same
  lift for everyone" until the data say otherwise.
- ``value(x)``: the gross margin of a window with a purchase, so dP * value is the margin of
  the purchases the coupon adds.

``learner = "boosted"`` (default) fits every part with gradient-boosted trees (scikit-learn's
HistGradientBoosting; the gain model with leaves of at least ``gain_min_samples_leaf``
pseudo-outcomes). Trees learn the interactions that decide who is moved, e.g. "has redeemed
coupons before but is not a heavy buyer" (a heavy buyer who redeems buys anyway). On the
synthetic shop's randomized campaigns the linear version (``learner = "ridge"``: shared
ridge slopes on z plus a per-coupon intercept) offered coupons at a loss while the boosted
one earned money (docs/evaluation/synthetic). ``decide`` memoises its answer per feature
vector, since a member's features only change when the online store is materialized.

Why not regress net margin directly: a window's margin is dominated by how much the member
happens to buy (standard deviation about twice its mean), while a coupon moves it by a few
currency units, so direct uplift models of net margin mostly fit noise (the backtest showed
a T-learner ranking members against their planted uplift). A purchase is a binary outcome
with far less noise, and the cost part needs no uplift estimate at all. The price:
``gain_outcome = "purchase"`` assumes a coupon changes *whether* a member buys, not how much
a buyer spends; set ``gain_outcome = "margin"`` (DR-learner on gross margin, noisier) when
basket-size effects matter.

**T-learner** (``fit`` without ``cost``): one ridge regression of net margin per arm (the
control group is an arm), ``uplift_c(x) = (b_c - b_0) + (w_c - w_0) . z(x)``.

Everything is stored in one ``.npz`` loaded with ``allow_pickle=False``: plain arrays, and
the boosted parts as skops bytes, loaded with an explicit list of trusted types.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from models.artifact import class_for, meta_of, read_npz, write_npz

Decision = tuple[str | None, float, str]  # (coupon_id or None, expected margin, reason)

CONTROL = ""


@dataclass
class CouponConfig:
    """Margins are in the shop's currency per offer; penalties in rows (standardised)."""

    min_incremental_margin: float = 0.0  # offer a coupon only above this expected uplift
    min_rows_per_arm: int = 30  # arms (and the control group) with fewer offers are dropped
    ridge_alpha: float = 1.0  # L2 penalty of the T-learner, value, cost and outcome models
    gain_alpha: float = 300.0  # L2 penalty of the gain model on noisy DR pseudo-outcomes
    gain_outcome: str = "purchase"  # "purchase" (dP * value) or "margin" (dG), see the doc
    cross_fit_folds: int = 4  # outcome models for the DR pseudo-outcomes are cross-fitted
    z_clip: float = 5.0  # standardised features are clipped to +-this many sd
    seed: int = 0  # the cross-fitting folds and the boosted trees
    # "boosted": gradient-boosted trees for every part of the decomposed estimator (they
    # learn interactions such as "redeems coupons but is not a heavy buyer"); "ridge": the
    # linear parts above. The T-learner is always ridge.
    learner: str = "boosted"
    boost_max_iter: int = 50
    boost_learning_rate: float = 0.1
    boost_max_leaf_nodes: int = 7
    boost_min_samples_leaf: int = 40  # outcome, value and cost models
    gain_min_samples_leaf: int = 400  # the gain model on noisy pseudo-outcomes: large leaves
    boost_l2: float = 1.0
    decision_cache_size: int = 100_000  # ``decide`` answers memoised per feature vector
    # member-level effects shrunk towards each coupon's measured average effect by how much
    # of the predicted heterogeneity held-out offers confirm (see ``CouponPolicy.shrinkage``)
    shrink: bool = True
    shrink_folds: int = 2  # out-of-fold refits used to measure that
    # offer a coupon only where its expected incremental margin is above
    # ``min_incremental_margin`` with this one-sided confidence (0.5: on the point estimate)
    offer_confidence: float = 0.8

    def __post_init__(self) -> None:
        if self.gain_outcome not in GAIN_OUTCOMES:
            raise ValueError(
                f"gain_outcome must be one of {GAIN_OUTCOMES}, got {self.gain_outcome!r}"
            )
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if not 0.5 <= self.offer_confidence < 1.0:
            raise ValueError(f"offer_confidence must be in [0.5, 1), got {self.offer_confidence}")


GAIN_OUTCOMES = ("purchase", "margin")
LEARNERS = ("boosted", "ridge")
# skops types the saved boosted parts hold (loaded with these trusted, never with pickle)
_SKOPS_TRUSTED = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "numpy.dtype",
]
T_LEARNER, DECOMPOSED = "t_learner", "decomposed"


def _ridge(
    z: np.ndarray, y: np.ndarray, alpha: float, weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """(w (d,), b) minimising sum_i weight_i (y_i - b - z_i w)^2 + alpha ||w||^2; the
    intercept is free. No rows: (zeros, 0.0)."""
    d = z.shape[1]
    wt = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    total = float(wt.sum())
    if total <= 0:
        return np.zeros(d), 0.0
    zm, ym = (wt @ z) / total, float(wt @ y) / total
    zc = z - zm
    if not d:
        return np.zeros(0), ym
    w = np.linalg.solve(zc.T @ (zc * wt[:, None]) + alpha * np.eye(d), zc.T @ (wt * (y - ym)))
    return w, ym - float(zm @ w)


class _PolicyBase:
    """Shared persistence: one ``.npz`` with a ``kind``, a JSON ``meta`` and arrays."""

    kind: ClassVar[str]
    coupons: list[str]
    fitted: bool
    reason_unfitted: str

    def _meta(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def save(self, path: Path) -> None:
        """Write one ``.npz`` at exactly ``path`` (no suffix added); loads without pickle."""
        write_npz(path, self.kind, self._arrays(), self._meta())

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a saved policy; ``_PolicyBase.load`` picks the class from the kind."""
        kind, z = read_npz(path)
        target = class_for(_KINDS, kind, cls, path, "coupon policy")
        return target._from_saved(meta_of(z), z)  # type: ignore[no-any-return]

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> _PolicyBase:
        raise NotImplementedError


class CouponPolicy(_PolicyBase):
    """Uplift model over randomized offers (see the module doc). Unfitted (no usable
    history) it always answers ``(None, 0.0, reason_unfitted)``.

    After ``fit``: ``method`` ("decomposed" or "t_learner"), ``coupons`` (the coupon arms
    kept, in order), ``arm_rows`` (offers per arm, control = ""), ``dropped`` (arm -> why it
    was dropped), ``feature_names``.
    """

    kind = "coupon_policy"

    def __init__(self, config: CouponConfig | None = None) -> None:
        self.config = config if config is not None else CouponConfig()
        self._reset()

    def _reset(self) -> None:
        self.coupons = []
        self.feature_names: list[str] = []
        self.method = ""
        self.fitted = False
        self.reason_unfitted = "coupon policy not fitted: no randomized coupon history given"
        self.arm_rows: dict[str, int] = {}
        self.dropped: dict[str, str] = {}
        self._mean = np.zeros(0)
        self._inv_sd = np.zeros(0)
        # t_learner: (1 + n_coupons, d) and (1 + n_coupons,), control first
        self._coef = np.zeros((0, 0))
        self._intercept = np.zeros(0)
        # decomposed: (n_coupons, d) and (n_coupons,) per part; value: (d,) and ()
        self._gain_w = np.zeros((0, 0))
        self._gain_b = np.zeros(0)
        self._cost_w = np.zeros((0, 0))
        self._cost_b = np.zeros(0)
        self._value_w = np.zeros(0)
        self._value_b = 0.0
        # decomposed, boosted: sklearn estimators on (z | z + coupon indicators)
        self._boosted: dict[str, Any] = {}
        # shrinkage, per coupon (n_coupons,): measured mean effect and its se, the share of
        # the predicted deviation held-out offers confirm (slope) and its se, and the mean
        # raw prediction the deviation is measured from; empty: no shrinkage
        self.shrinkage: dict[str, np.ndarray] = {}
        self._prepare()

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        net_margin: np.ndarray,
        feature_names: list[str],
        cost: np.ndarray | None = None,
        campaign: np.ndarray | None = None,
    ) -> Self:
        """Learn from past offers.

        ``X``: (n, d) float features of the member at the offer (NaN allowed); ``arm``: (n,)
        str, the coupon offered, "" for the control group; ``net_margin``: (n,) float,
        margin earned in the response window minus the coupon cost paid; ``feature_names``:
        the d column names (the order ``decide`` expects). ``cost``: (n,) float, the
        discount paid in the window (0 for the control group); given, the decomposed
        estimator is used, else the T-learner. ``campaign``: (n,) str, the randomized
        experiment each offer belongs to (its treatment share is the propensity); None =
        one experiment.

        Leaves the policy unfitted, with ``reason_unfitted``, when there are no offers, no
        control group, too few control offers or no coupon arm with enough offers.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-d (n_offers, n_features), got shape {X.shape}")
        arm = np.asarray(arm).astype(str)
        y = np.asarray(net_margin, dtype=np.float64)
        n, d = X.shape
        if len(arm) != n or len(y) != n or len(feature_names) != d:
            raise ValueError(
                f"X is {X.shape} but arm has {len(arm)}, net_margin {len(y)} and "
                f"feature_names {len(feature_names)} entries"
            )
        if not np.isfinite(y).all():
            raise ValueError("net_margin has NaN or infinite values: use 0.0 for no purchase")
        c = None if cost is None else np.asarray(cost, dtype=np.float64)
        if c is not None and (len(c) != n or not np.isfinite(c).all()):
            raise ValueError(f"cost must be {n} finite values (0.0 where nothing was paid)")
        camp = np.zeros(n, dtype=str) if campaign is None else np.asarray(campaign).astype(str)
        if len(camp) != n:
            raise ValueError(f"campaign has {len(camp)} entries, X has {n} rows")
        self._reset()  # forget any earlier fit
        self.feature_names = list(feature_names)
        min_rows = self.config.min_rows_per_arm
        arms, counts = np.unique(arm, return_counts=True)
        self.arm_rows = {str(a): int(k) for a, k in zip(arms, counts, strict=True)}
        n_control = self.arm_rows.get(CONTROL, 0)
        if n == 0:
            return self._unfitted("no randomized coupon history: no past offers")
        if n_control == 0:
            return self._unfitted("no randomized coupon history: no control group in past offers")
        if n_control < min_rows:
            return self._unfitted(
                f"too little randomized coupon history: {n_control} control offers, "
                f"fewer than min_rows_per_arm={min_rows}"
            )
        kept = []
        for a, k in self.arm_rows.items():
            if a == CONTROL:
                continue
            if k < min_rows:
                self.dropped[a] = f"{k} offers, fewer than min_rows_per_arm={min_rows}"
            else:
                kept.append(a)
        if not kept:
            why = "; ".join(f"{a}: {r}" for a, r in self.dropped.items()) or "none offered"
            return self._unfitted(f"no coupon arm with at least {min_rows} offers ({why})")

        with warnings.catch_warnings():  # an all-NaN column warns; it is imputed with 0
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, sd = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
        self._mean = np.where(np.isfinite(mean), mean, 0.0)
        self._inv_sd = 1.0 / np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        self.coupons = kept
        z = self._z(X)
        if c is None:
            self._fit_t_learner(z, arm, y)
        else:
            rows = np.isin(arm, [CONTROL, *kept])
            why = self._fit_decomposed(z[rows], arm[rows], y[rows], c[rows], camp[rows])
            if why:
                return self._unfitted(why)
        self.fitted = True
        self.reason_unfitted = ""
        self._prepare()
        if self.config.shrink:
            self._fit_shrinkage(X, arm, y, c, camp)
        return self

    def _fit_shrinkage(
        self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, cost: np.ndarray | None,
        camp: np.ndarray,
    ) -> None:  # fmt: skip
        """Measure, on offers the model did not see, how much of its member-level variation
        is real. For each coupon j, with (offer, j) contrasts of its campaigns:

        - psi: the offer's net margin minus an out-of-fold ridge baseline, times the
          inverse-propensity contrast (t / e - (1 - t) / (1 - e)): unbiased for the effect;
        - mean effect = weighted mean of psi, with its standard error;
        - slope = cov(psi, d) / var(d) with d the out-of-fold predicted deviation from the
          coupon's mean prediction (the best linear predictor's heterogeneity coefficient),
          with its standard error, shrunk by its evidence (:func:`_evidence_slope`): 0 when
          the held-out offers do not confirm the predicted spread, 1 when they confirm all.

        The shrunk effect of a member is ``mean + slope * (raw - centre)``.
        """
        from dataclasses import replace

        cfg = self.config
        k = len(self.coupons)
        index = {a: j for j, a in enumerate(self.coupons)}
        code = np.array([index.get(a, -1 if a == CONTROL else -2) for a in arm.tolist()])
        keep = code > -2
        row, cpn, treated, prop, _ = _experiments(code[keep], camp[keep], k)
        if len(row) < 4 * cfg.min_rows_per_arm:
            return
        Xk, yk, armk = X[keep], y[keep], arm[keep]
        ck = None if cost is None else cost[keep]
        folds = max(2, cfg.shrink_folds)
        fold = np.random.default_rng(cfg.seed + 1).permutation(len(yk)) % folds
        oof = np.full((len(yk), k), np.nan)
        base = np.zeros(len(yk))
        zk = self._z(Xk)
        inner = replace(cfg, shrink=False)
        for f in range(folds):
            tr, te = fold != f, fold == f
            part = CouponPolicy(inner).fit(
                Xk[tr], armk[tr], yk[tr], self.feature_names,
                None if ck is None else ck[tr], camp[keep][tr],
            )  # fmt: skip
            w, b = _ridge(zk[tr], yk[tr], cfg.ridge_alpha)
            base[te] = zk[te] @ w + b
            if not part.fitted:
                return
            up = part.expected_uplift(Xk[te])
            for j, cpn_id in enumerate(self.coupons):
                if cpn_id in part.coupons:
                    oof[te, j] = up[:, part.coupons.index(cpn_id)]
        raw = self._raw_uplift(zk)
        contrast = np.where(treated, 1.0 / prop, -1.0 / (1.0 - prop))
        psi = (yk[row] - base[row]) * contrast
        out = {n: np.zeros(k) for n in ("mean", "se", "slope", "slope_se", "centre")}
        for j in range(k):
            sel = (cpn == j) & np.isfinite(oof[row, j])
            # every unit of the contrast weighs the same (an inverse-propensity mean)
            wj, pj = np.ones(int(sel.sum())), psi[sel]
            if wj.sum() <= 0 or sel.sum() < 2:
                out["mean"][j], out["se"][j] = 0.0, np.inf
                continue
            wn = wj / wj.sum()
            mean = float(wn @ pj)
            se = float(np.sqrt(np.sum(wn**2 * (pj - mean) ** 2)))
            d = oof[row[sel], j] - float(wn @ oof[row[sel], j])
            var_d = float(wn @ d**2)
            slope, slope_se = 0.0, 0.0
            if var_d > 1e-12:
                resid = pj - mean
                slope = float(wn @ (resid * d)) / var_d
                slope_se = float(np.sqrt(np.sum(wn**2 * (resid - slope * d) ** 2 * d**2))) / var_d
            out["mean"][j], out["se"][j] = mean, se
            out["slope"][j], out["slope_se"][j] = _evidence_slope(slope, slope_se), slope_se
            out["centre"][j] = float(wn @ raw[row[sel], j])
        self.shrinkage = out
        self._prepare()

    def _fit_t_learner(self, z: np.ndarray, arm: np.ndarray, y: np.ndarray) -> None:
        coef, intercept = [], []
        for a in [CONTROL, *self.coupons]:
            rows = arm == a
            w, b = _ridge(z[rows], y[rows], self.config.ridge_alpha)
            coef.append(w)
            intercept.append(b)
        self.method = T_LEARNER
        self._coef = np.array(coef).reshape(len(self.coupons) + 1, z.shape[1])
        self._intercept = np.array(intercept)

    def _fit_decomposed(
        self, z: np.ndarray, arm: np.ndarray, y: np.ndarray, cost: np.ndarray, camp: np.ndarray
    ) -> str:
        """Fit the three parts; returns why it could not ("" when it could)."""
        cfg = self.config
        d, k = z.shape[1], len(self.coupons)
        gross = y + cost
        purchase = cfg.gain_outcome == "purchase"
        target = (gross > 0).astype(np.float64) if purchase else gross
        index = {a: j for j, a in enumerate(self.coupons)}
        arm_code = np.array([index.get(a, -1) for a in arm.tolist()], dtype=np.int64)  # -1: control

        row, cpn, treated, prop, weight = _experiments(arm_code, camp, k)
        if not len(row):
            return "no randomized coupon history: no campaign has both a control group and a coupon"
        if not (gross > 0).any():  # e.g. every member placed a single order, before any offer
            return "no purchase in any offer's response window: no coupon effect to learn"
        if cfg.learner == "boosted":
            self._fit_boosted(z, arm_code, target, cost, gross, row, cpn, treated, prop, weight)
            self.method = DECOMPOSED
            return ""

        # cost of each coupon, from its own offers; value of a window with a purchase
        self._cost_w, self._cost_b = np.zeros((k, d)), np.zeros(k)
        for j in range(k):
            rows = arm_code == j
            self._cost_w[j], self._cost_b[j] = _ridge(z[rows], cost[rows], cfg.ridge_alpha)
        if purchase:
            bought = gross > 0
            self._value_w, self._value_b = _ridge(z[bought], gross[bought], cfg.ridge_alpha)
        else:  # the gain model is already in currency
            self._value_w, self._value_b = np.zeros(d), 1.0

        # DR pseudo-outcomes, one per (offer, coupon of its experiment)
        mu = _cross_fitted_outcomes(z, arm_code, target, k, cfg, row, cpn)
        phi = _pseudo_outcomes(mu, target[row], treated, prop)

        # gain: shared slopes on z plus a per-coupon intercept, all strongly shrunk
        onehot = (cpn[:, None] == np.arange(k)).astype(np.float64)
        share = (weight @ onehot) / weight.sum()  # 0/1 columns: variance = share (1 - share)
        oh_sd = np.sqrt(share * (1.0 - share))
        oh_sd = np.where(oh_sd > 0, oh_sd, 1.0)
        w, b = _ridge(np.hstack([z[row], onehot / oh_sd]), phi, cfg.gain_alpha, weight)
        self._gain_w = np.tile(w[:d], (k, 1))
        self._gain_b = b + w[d:] / oh_sd
        self.method = DECOMPOSED
        return ""

    def _fit_boosted(
        self,
        z: np.ndarray,
        arm_code: np.ndarray,
        target: np.ndarray,
        cost: np.ndarray,
        gross: np.ndarray,
        row: np.ndarray,
        cpn: np.ndarray,
        treated: np.ndarray,
        prop: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        """The decomposed estimator with gradient-boosted trees for every part: cost on the
        coupon offers (z + coupon indicators), value on windows with a purchase, cross-fitted
        outcome models (control: z; coupon: z + indicators) for the DR pseudo-outcomes, and
        the gain on those pseudo-outcomes with large leaves (they are noisy)."""
        cfg = self.config
        k = len(self.coupons)
        purchase = cfg.gain_outcome == "purchase"
        offered = arm_code >= 0
        cost_model = _booster(cfg, "regressor").fit(
            _with_coupon(z[offered], arm_code[offered], k), cost[offered]
        )
        if purchase:
            bought = gross > 0
            value_model = _booster(cfg, "regressor").fit(z[bought], gross[bought])
        folds, fold = _cross_fit_folds(len(target), cfg)
        mu = np.zeros((len(row), 2))
        kind = "classifier" if purchase else "regressor"
        for f in range(folds):
            fit_rows = fold != f
            sel = fold[row] == f
            if not sel.any():
                continue
            ctrl, trt = fit_rows & ~offered, fit_rows & offered
            m0 = _fit_outcome(cfg, kind, z[ctrl], target[ctrl])
            m1 = _fit_outcome(cfg, kind, _with_coupon(z[trt], arm_code[trt], k), target[trt])
            mu[sel, 0] = _predict_outcome(m0, z[row[sel]])
            mu[sel, 1] = _predict_outcome(m1, _with_coupon(z[row[sel]], cpn[sel], k))
        phi = _pseudo_outcomes(mu, target[row], treated, prop)
        gain_model = _booster(cfg, "regressor", min_samples_leaf=cfg.gain_min_samples_leaf)
        gain_model.fit(_with_coupon(z[row], cpn, k), phi, sample_weight=weight)
        self._boosted = {"gain": gain_model, "cost": cost_model}
        if purchase:
            self._boosted["value"] = value_model

    def _unfitted(self, reason: str) -> Self:
        self.fitted = False
        self.reason_unfitted = reason
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Uplift coefficients (treated arm minus control) of the T-learner for ``decide``."""
        if self.fitted and self.method == T_LEARNER:
            self._w_up = np.ascontiguousarray(self._coef[1:] - self._coef[0])
            self._b_up = self._intercept[1:] - self._intercept[0]
        self._purchase = self.config.gain_outcome == "purchase"
        self._d = len(self.feature_names)
        self._decide_memo = functools.lru_cache(maxsize=self.config.decision_cache_size)(
            self._decide_bytes
        )
        self._precomputed: dict[bytes, Decision] = {}

    # ------------------------------------------------------------------ predict
    def _z(self, X: np.ndarray) -> np.ndarray:
        z = (X - self._mean) * self._inv_sd
        z[np.isnan(z)] = 0.0
        lim = self.config.z_clip
        return np.clip(z, -lim, lim, out=z)

    def _check(self, X: np.ndarray, ndim: int) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != ndim or X.shape[-1] != self._d:
            raise ValueError(
                f"expected {self._d} features {self.feature_names}, got shape {X.shape}"
            )
        return X

    def _parts(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decomposed estimate from ``z`` (n, d): lift (n, k), value (n,), cost (n, k)."""
        k = len(self.coupons)
        if self._boosted and not len(z):
            return np.zeros((0, k)), np.zeros(0), np.zeros((0, k))
        if self._boosted:
            n = len(z)
            zz = np.repeat(z, k, axis=0)
            codes = np.tile(np.arange(k), n)
            design = _with_coupon(zz, codes, k)
            lift = self._boosted["gain"].predict(design).reshape(n, k)
            cost = self._boosted["cost"].predict(design).reshape(n, k)
            value = self._boosted["value"].predict(z) if "value" in self._boosted else np.ones(n)
        else:
            lift = z @ self._gain_w.T + self._gain_b
            cost = z @ self._cost_w.T + self._cost_b
            value = z @ self._value_w + self._value_b
        return lift, np.maximum(value, 0.0), np.maximum(cost, 0.0)

    def _raw_uplift(self, z: np.ndarray) -> np.ndarray:
        """(n, n_coupons) the learner's own estimate, before shrinkage."""
        if self.method == T_LEARNER:
            return z @ self._w_up.T + self._b_up
        lift, value, cost = self._parts(z)
        if self._purchase:
            lift = np.clip(lift, -1.0, 1.0) * value[:, None]
        return lift - cost

    def _uplift_and_se(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_coupons) expected incremental net margin from standardised ``z`` (n, d),
        shrunk when the policy measured its shrinkage, and its standard error (0 without)."""
        raw = self._raw_uplift(z)
        sh = self.shrinkage
        if not sh:
            return raw, np.zeros_like(raw)
        dev = raw - sh["centre"]
        up = sh["mean"] + sh["slope"] * dev
        # without confirmed heterogeneity (slope 0) every member has the average effect and
        # its standard error: the decision is the same for everyone
        slope_se = np.where(sh["slope"] > 0, sh["slope_se"], 0.0)
        se = np.sqrt(sh["se"] ** 2 + (slope_se * dev) ** 2)
        return up, se

    def _uplift(self, z: np.ndarray) -> np.ndarray:
        return self._uplift_and_se(z)[0]

    def expected_uplift(self, X: np.ndarray) -> np.ndarray:
        """E[net_margin | coupon c, x] - E[net_margin | control, x]: (n, n_coupons), in
        ``coupons`` order; (n, 0) when unfitted."""
        X = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return np.zeros((len(X), 0))
        return self._uplift(self._z(self._check(X, 2)))

    def uplift_bounds(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected uplift, its lower bound at ``offer_confidence``), each (n, n_coupons) in
        ``coupons`` order: the numbers ``decide`` offers on (equal without shrinkage)."""
        X = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return np.zeros((len(X), 0)), np.zeros((len(X), 0))
        up, se = self._uplift_and_se(self._z(self._check(X, 2)))
        if not self.shrinkage:
            return up, up
        from scipy.stats import norm

        return up, up - float(norm.ppf(self.config.offer_confidence)) * se

    def expected_parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The decomposed estimate's parts, each (n, n_coupons) in ``coupons`` order: the
        lift in purchase probability ("purchase_lift", or the gross margin lift with
        gain_outcome "margin"), the margin of a purchasing window ("value", the same for
        every coupon), and the expected discount ("cost"). Empty for the T-learner."""
        if not self.fitted or self.method != DECOMPOSED:
            return {}
        lift, value, cost = self._parts(self._z(self._check(X, 2)))
        return {
            "purchase_lift" if self._purchase else "margin_lift": lift,
            "value": np.repeat(value[:, None], len(self.coupons), axis=1),
            "cost": cost,
        }

    def _reason(self, c: str, u: float, lower: float | None = None) -> Decision:
        thr = self.config.min_incremental_margin
        if lower is None:
            if u > thr:
                return c, u, f"{c}: {u:+.2f} expected incremental margin net of cost"
            verb = "is below" if u < thr else "is not above"
            why = f"no coupon: best expected incremental margin {u:.2f} ({c}) {verb} {thr:.2f}"
            return None, u, why
        conf = f"{self.config.offer_confidence:.0%}"
        if lower > thr:
            return c, u, (f"{c}: {u:+.2f} expected incremental margin net of cost "
                          f"({conf} lower bound {lower:+.2f})")  # fmt: skip
        return None, u, (f"no coupon: best expected incremental margin {u:.2f} ({c}) has a "
                         f"{conf} lower bound {lower:.2f}, not above {thr:.2f}")  # fmt: skip

    def _choose(self, up: np.ndarray, se: np.ndarray) -> list[Decision]:
        """Per row: the coupon with the highest expected margin among those whose lower
        bound clears the threshold; else none, quoting the best expected margin."""
        if not self.shrinkage:
            best = up.argmax(axis=1)
            vals = up[np.arange(len(up)), best].tolist()
            return [
                self._reason(self.coupons[b], v) for b, v in zip(best.tolist(), vals, strict=True)
            ]
        from scipy.stats import norm

        lower = up - float(norm.ppf(self.config.offer_confidence)) * se
        ok = lower > self.config.min_incremental_margin
        masked = np.where(ok, up, -np.inf)
        pick = np.where(ok.any(axis=1), masked.argmax(axis=1), up.argmax(axis=1))
        r = np.arange(len(up))
        return [
            self._reason(self.coupons[b], u, lo)
            for b, u, lo in zip(
                pick.tolist(), up[r, pick].tolist(), lower[r, pick].tolist(), strict=True
            )
        ]

    def decide(self, x: np.ndarray) -> Decision:
        """For one member's features ``x`` (d,) float in ``feature_names`` order (NaN =
        unknown, imputed with the mean): (coupon_id or None, expected incremental margin
        net of cost, reason). The margin is the best coupon's even when none is given.

        Answers are memoised on the feature values (``decision_cache_size`` of them): a
        member's features change only when the online store is materialized, so a
        storefront asking about the same member on every page pays for the trees once."""
        if not self.fitted:
            return None, 0.0, self.reason_unfitted
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self._d,):
            raise ValueError(
                f"expected {self._d} features {self.feature_names}, got shape {x.shape}"
            )
        key = x.tobytes()
        hit = self._precomputed.get(key)
        return hit if hit is not None else self._decide_memo(key)

    def precompute(self, X: np.ndarray) -> int:
        """Decide for every row of ``X`` (n, d) in one vectorised pass and keep the answers,
        keyed by the feature values, for ``decide``: the serving app does this at start-up
        for the members of the latest snapshot, so the storefront path does no tree
        traversal for them. Replaces earlier precomputed answers; returns how many."""
        self._precomputed = {}
        if self.fitted and len(X):
            X = np.ascontiguousarray(self._check(X, 2), dtype=np.float64)
            answers = self.decide_many(X)
            self._precomputed = {row.tobytes(): a for row, a in zip(X, answers, strict=True)}
        return len(self._precomputed)

    def __getstate__(self) -> dict[str, Any]:  # the memo holds a bound method: not pickled
        skip = ("_decide_memo", "_precomputed")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._prepare()

    def _decide_bytes(self, key: bytes) -> Decision:
        x = np.frombuffer(key, dtype=np.float64)
        up, se = self._uplift_and_se(self._z(x[None, :]))
        return self._choose(up, se)[0]

    def decide_many(self, X: np.ndarray) -> list[Decision]:
        """``decide`` for each row of ``X`` (n, d)."""
        X = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return [(None, 0.0, self.reason_unfitted)] * len(X)
        up, se = self._uplift_and_se(self._z(self._check(X, 2)))
        return self._choose(up, se)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "method": self.method,
            "coupons": self.coupons,
            "feature_names": self.feature_names,
            "fitted": self.fitted,
            "reason_unfitted": self.reason_unfitted,
            "arm_rows": self.arm_rows,
            "dropped": self.dropped,
            "value_intercept": self._value_b,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self._mean,
            "inv_sd": self._inv_sd,
            "coef": self._coef,
            "intercept": self._intercept,
            "gain_coef": self._gain_w,
            "gain_intercept": self._gain_b,
            "cost_coef": self._cost_w,
            "cost_intercept": self._cost_b,
            "value_coef": self._value_w,
            **{f"boosted_{k}": _dump_estimator(m) for k, m in self._boosted.items()},
            **{f"shrink_{k}": v for k, v in self.shrinkage.items()},
        }

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> CouponPolicy:
        known = {f.name for f in fields(CouponConfig)}
        obj = cls(CouponConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        obj.method = str(meta.get("method", T_LEARNER if meta["fitted"] else ""))
        obj.coupons = list(meta["coupons"])
        obj.feature_names = list(meta["feature_names"])
        obj.fitted = bool(meta["fitted"])
        obj.reason_unfitted = str(meta["reason_unfitted"])
        obj.arm_rows = dict(meta["arm_rows"])
        obj.dropped = dict(meta["dropped"])
        obj._mean, obj._inv_sd = z["mean"], z["inv_sd"]
        obj._coef, obj._intercept = z["coef"], z["intercept"]
        if obj.method == DECOMPOSED:
            obj._gain_w, obj._gain_b = z["gain_coef"], z["gain_intercept"]
            obj._cost_w, obj._cost_b = z["cost_coef"], z["cost_intercept"]
            obj._value_w, obj._value_b = z["value_coef"], float(meta["value_intercept"])
            obj._boosted = {
                k.removeprefix("boosted_"): _load_estimator(v)
                for k, v in z.items()
                if k.startswith("boosted_")
            }
        obj.shrinkage = {
            k.removeprefix("shrink_"): v for k, v in z.items() if k.startswith("shrink_")
        }
        obj._prepare()
        return obj


def _evidence_slope(slope: float, se: float) -> float:
    """The measured heterogeneity slope shrunk by its evidence, in [0, 1]: positive-part
    James-Stein, ``slope * max(0, 1 - (se / slope)^2)``, then clipped to 1. A slope within
    one standard error of zero (no heterogeneity the held-out offers confirm) becomes 0,
    so every member gets the coupon's average effect; a slope many standard errors above
    zero is kept almost whole."""
    if not np.isfinite(slope) or slope <= 0.0:
        return 0.0
    factor = max(0.0, 1.0 - (se / slope) ** 2) if np.isfinite(se) else 0.0
    return float(min(slope * factor, 1.0))


def _pseudo_outcomes(
    mu: np.ndarray, y: np.ndarray, treated: np.ndarray, prop: np.ndarray
) -> np.ndarray:
    """Doubly robust pseudo-outcomes (m,) of the coupon's effect on ``y`` (m,), from
    outcome predictions ``mu`` (m, 2) (control, coupon) and the treatment propensity."""
    t = treated.astype(np.float64)
    phi = mu[:, 1] - mu[:, 0] + t * (y - mu[:, 1]) / prop
    return phi - (1.0 - t) * (y - mu[:, 0]) / (1.0 - prop)


def _cross_fit_folds(n: int, cfg: CouponConfig) -> tuple[int, np.ndarray]:
    """(number of folds, fold of each of the ``n`` offers) for cross-fitted outcome models."""
    folds = max(2, min(cfg.cross_fit_folds, n))
    return folds, np.random.default_rng(cfg.seed).permutation(n) % folds


def _with_coupon(z: np.ndarray, code: np.ndarray, n_coupons: int) -> np.ndarray:
    """``z`` (n, d) with n_coupons indicator columns of ``code`` (n,) appended."""
    return np.hstack([z, (code[:, None] == np.arange(n_coupons)).astype(np.float64)])


def _booster(cfg: CouponConfig, kind: str, min_samples_leaf: int | None = None) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if kind == "classifier" else HistGradientBoostingRegressor
    return cls(
        max_iter=cfg.boost_max_iter,
        learning_rate=cfg.boost_learning_rate,
        max_leaf_nodes=cfg.boost_max_leaf_nodes,
        min_samples_leaf=min_samples_leaf or cfg.boost_min_samples_leaf,
        l2_regularization=cfg.boost_l2,
        early_stopping=False,
        random_state=cfg.seed,
    )


def _fit_outcome(cfg: CouponConfig, kind: str, X: np.ndarray, y: np.ndarray) -> Any:
    """A boosted outcome model, or the mean when the rows cannot support one (no rows, or
    a single class for the classifier)."""
    if len(y) == 0:
        return 0.0
    if kind == "classifier" and np.unique(y).size < 2:
        return float(y[0])
    return _booster(cfg, kind).fit(X, y)


def _predict_outcome(model: Any, X: np.ndarray) -> np.ndarray:
    if isinstance(model, float):
        return np.full(len(X), model)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X)[:, 1])
    return np.asarray(model.predict(X))


def _dump_estimator(model: Any) -> np.ndarray:
    """A fitted sklearn estimator as uint8 bytes (skops), so the .npz needs no pickle."""
    import skops.io as sio

    return np.frombuffer(sio.dumps(model), dtype=np.uint8)


def _load_estimator(blob: np.ndarray) -> Any:
    import skops.io as sio

    return sio.loads(np.asarray(blob, dtype=np.uint8).tobytes(), trusted=_SKOPS_TRUSTED)


def _experiments(
    arm_code: np.ndarray, campaign: np.ndarray, n_coupons: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The randomized contrasts in the offers, as pseudo-rows (m,): (offer row, coupon
    index, treated, propensity of treatment, weight).

    Within each campaign every coupon offered is compared with the campaign's control
    group; its propensity is its share of (its offers + the controls). A control row is a
    control for each coupon of its campaign, with weight 1 / (number of those coupons), so
    every offer weighs 1 in total. Campaigns without a control group or without a coupon
    carry no contrast and are left out.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    for g in np.unique(campaign):
        rows = np.flatnonzero(campaign == g)
        codes = arm_code[rows]
        ctrl = rows[codes < 0]
        offered = [j for j in range(n_coupons) if (codes == j).any()]
        if not len(ctrl) or not offered:
            continue
        for j in offered:
            tr = rows[codes == j]
            e = len(tr) / (len(tr) + len(ctrl))
            both = np.concatenate([tr, ctrl])
            parts.append((
                both,
                np.full(len(both), j),
                np.r_[np.ones(len(tr), bool), np.zeros(len(ctrl), bool)],
                np.full(len(both), e),
                np.r_[np.ones(len(tr)), np.full(len(ctrl), 1.0 / len(offered))],
            ))  # fmt: skip
    if not parts:
        empty = np.zeros(0)
        return empty.astype(int), empty.astype(int), empty.astype(bool), empty, empty
    row, cpn, treated, prop, weight = (np.concatenate(p) for p in zip(*parts, strict=True))
    return row, cpn, treated, prop, weight


def _cross_fitted_outcomes(
    z: np.ndarray,
    arm_code: np.ndarray,
    target: np.ndarray,
    n_coupons: int,
    cfg: CouponConfig,
    row: np.ndarray,
    cpn: np.ndarray,
) -> np.ndarray:
    """(m, 2): E[target | control, x] and E[target | coupon cpn, x] for each pseudo-row,
    from a ridge outcome model on (z, coupon indicators) fitted without the offer's fold."""
    design = _with_coupon(z, arm_code, n_coupons)
    folds, fold = _cross_fit_folds(len(target), cfg)
    out = np.zeros((len(row), 2))
    d = z.shape[1]
    for f in range(folds):
        w, b = _ridge(design[fold != f], target[fold != f], cfg.ridge_alpha)
        sel = fold[row] == f
        base = z[row[sel]] @ w[:d] + b
        out[sel, 0] = base
        out[sel, 1] = base + w[d:][cpn[sel]]
    return out


class NoCouponPolicy(_PolicyBase):
    """The baseline: nobody gets a coupon. Same interface as ``CouponPolicy``."""

    kind = "no_coupon"
    REASON = "no coupon: the baseline policy offers none"

    def __init__(self, config: CouponConfig | None = None) -> None:
        self.config = config if config is not None else CouponConfig()
        self.coupons = []
        self.feature_names: list[str] = []
        self.fitted = True
        self.reason_unfitted = ""

    def fit(
        self, X: np.ndarray, arm: np.ndarray, net_margin: np.ndarray, feature_names: list[str]
    ) -> Self:
        """Nothing to learn; keeps ``feature_names`` for the record."""
        self.feature_names = list(feature_names)
        return self

    def expected_uplift(self, X: np.ndarray) -> np.ndarray:
        return np.zeros((len(np.asarray(X)), 0))

    def decide(self, x: np.ndarray) -> Decision:
        return None, 0.0, self.REASON

    def decide_many(self, X: np.ndarray) -> list[Decision]:
        return [(None, 0.0, self.REASON)] * len(np.asarray(X))

    def precompute(self, X: np.ndarray) -> int:
        """Nothing to precompute: the answer is always none."""
        return 0

    def _meta(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "feature_names": self.feature_names}

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> NoCouponPolicy:
        known = {f.name for f in fields(CouponConfig)}
        obj = cls(CouponConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        obj.feature_names = list(meta.get("feature_names", []))
        return obj


class FixedCouponPolicy(_PolicyBase):
    """A simple rule: every member gets the same coupon. ``expected_margin`` is what the gate
    measured for it on held-out offers (per offer, net of cost), quoted in the reason."""

    kind = "fixed_coupon"

    def __init__(self, coupon_id: str = "", expected_margin: float = 0.0,
                 config: CouponConfig | None = None) -> None:  # fmt: skip
        self.config = config if config is not None else CouponConfig()
        self.coupon_id = coupon_id
        self.expected_margin = float(expected_margin)
        self.coupons = [coupon_id] if coupon_id else []
        self.feature_names: list[str] = []
        self.fitted = bool(coupon_id)
        self.reason_unfitted = "" if coupon_id else "no coupon chosen"

    def fit(self, X: np.ndarray, arm: np.ndarray, net_margin: np.ndarray,
            feature_names: list[str]) -> Self:  # fmt: skip
        """Nothing to learn; keeps ``feature_names`` so callers pass the same features."""
        self.feature_names = list(feature_names)
        return self

    @property
    def reason(self) -> str:
        return (f"{self.coupon_id} for every member: {self.expected_margin:+.2f} incremental "
                "margin per offer on held-out randomized offers")  # fmt: skip

    def expected_uplift(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(np.asarray(X)), len(self.coupons)), self.expected_margin)

    def decide(self, x: np.ndarray) -> Decision:
        return self.coupon_id or None, self.expected_margin, self.reason

    def decide_many(self, X: np.ndarray) -> list[Decision]:
        return [self.decide(np.zeros(0))] * len(np.asarray(X))

    def precompute(self, X: np.ndarray) -> int:
        return 0

    def _meta(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "feature_names": self.feature_names,
                "coupon_id": self.coupon_id, "expected_margin": self.expected_margin}  # fmt: skip

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> FixedCouponPolicy:
        known = {f.name for f in fields(CouponConfig)}
        cfg = CouponConfig(**{k: v for k, v in meta["config"].items() if k in known})
        obj = cls(str(meta["coupon_id"]), float(meta["expected_margin"]), cfg)
        obj.feature_names = list(meta.get("feature_names", []))
        return obj


_KINDS: dict[str, type[_PolicyBase]] = {
    CouponPolicy.kind: CouponPolicy,
    NoCouponPolicy.kind: NoCouponPolicy,
    FixedCouponPolicy.kind: FixedCouponPolicy,
}


def load_coupon_policy(path: Path) -> CouponPolicy | NoCouponPolicy | FixedCouponPolicy:
    """Load any policy, choosing the class from the artifact's kind."""
    return _PolicyBase.load(path)  # type: ignore[return-value]
