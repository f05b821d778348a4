"""Coupon choice: per member, the coupon (or none) with the highest expected incremental
margin net of the coupon's cost, learnt from past randomized offers and their control group.

An uplift T-learner: one ridge regression of net margin on the member's features per arm
(the control group is an arm), so for coupon ``c``

    uplift_c(x) = E[net_margin | c, x] - E[net_margin | control, x]
                = (b_c - b_0) + (w_c - w_0) . z(x)

with ``z(x)`` the features standardised on all offers (missing values imputed with the
mean, i.e. z = 0). ``net_margin`` is the margin earned in the response window minus the
coupon cost actually paid, so the uplift is already net of cost. The coefficients are
evaluated with numpy: ``decide`` for one member is one (n_coupons, d) @ (d,) product.

A linear outcome model per arm captures effects that differ with a feature (a coupon that
pays for price-sensitive members only) but not interactions between features; arms are
compared on the same standardised scale.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

Decision = tuple[str | None, float, str]  # (coupon_id or None, expected margin, reason)

CONTROL = ""


@dataclass
class CouponConfig:
    """Margins are in the shop's currency per offer."""

    min_incremental_margin: float = 0.0  # offer a coupon only above this expected uplift
    min_rows_per_arm: int = 30  # arms (and the control group) with fewer offers are dropped
    ridge_alpha: float = 1.0  # L2 penalty on standardised coefficients, in rows


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(w (d,), b) minimising ||y - b - z w||^2 + alpha ||w||^2; the intercept is free."""
    zm, ym = z.mean(axis=0), float(y.mean())
    zc = z - zm
    d = z.shape[1]
    w = np.linalg.solve(zc.T @ zc + alpha * np.eye(d), zc.T @ (y - ym)) if d else np.zeros(0)
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = np.array(json.dumps(self._meta()))
        arrays: dict[str, Any] = {"kind": np.array(self.kind), "meta": meta, **self._arrays()}
        with path.open("wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a saved policy; ``_PolicyBase.load`` picks the class from the kind."""
        with np.load(Path(path), allow_pickle=False) as npz:
            z = {k: npz[k] for k in npz.files}
        kind = str(z.get("kind", ""))
        target = _KINDS.get(kind)
        if target is None:
            raise ValueError(f"{path} is not a coupon policy artifact (kind {kind!r})")
        if not issubclass(target, cls):
            raise ValueError(f"{path} holds a {target.__name__}, not a {cls.__name__}")
        obj = target._from_saved(json.loads(str(z["meta"])), z)
        return obj  # type: ignore[return-value]

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> _PolicyBase:
        raise NotImplementedError


class CouponPolicy(_PolicyBase):
    """T-learner over randomized offers. Unfitted (no usable history) it always answers
    ``(None, 0.0, reason_unfitted)``.

    After ``fit``: ``coupons`` (the coupon arms kept, in order), ``arm_rows`` (offers per
    arm, control = ""), ``dropped`` (arm -> why it was dropped), ``feature_names``.
    """

    kind = "coupon_policy"

    def __init__(self, config: CouponConfig | None = None) -> None:
        self.config = config if config is not None else CouponConfig()
        self._reset()

    def _reset(self) -> None:
        self.coupons = []
        self.feature_names: list[str] = []
        self.fitted = False
        self.reason_unfitted = "coupon policy not fitted: no randomized coupon history given"
        self.arm_rows: dict[str, int] = {}
        self.dropped: dict[str, str] = {}
        self._mean = np.zeros(0)
        self._inv_sd = np.zeros(0)
        self._coef = np.zeros((0, 0))  # (1 + n_coupons, d): control first
        self._intercept = np.zeros(0)  # (1 + n_coupons,)
        self._prepare()

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        net_margin: np.ndarray,
        feature_names: list[str],
    ) -> Self:
        """Learn from past offers.

        ``X``: (n, d) float features of the member at the offer (NaN allowed); ``arm``: (n,)
        str, the coupon offered, "" for the control group; ``net_margin``: (n,) float,
        margin earned in the response window minus the coupon cost paid; ``feature_names``:
        the d column names (the order ``decide`` expects).

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
        self._reset()  # forget any earlier fit
        self.feature_names = list(feature_names)
        min_rows = self.config.min_rows_per_arm
        arms, counts = np.unique(arm, return_counts=True)
        self.arm_rows = {str(a): int(c) for a, c in zip(arms, counts, strict=True)}
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
        for a, c in self.arm_rows.items():
            if a == CONTROL:
                continue
            if c < min_rows:
                self.dropped[a] = f"{c} offers, fewer than min_rows_per_arm={min_rows}"
            else:
                kept.append(a)
        if not kept:
            why = "; ".join(f"{a}: {r}" for a, r in self.dropped.items()) or "none offered"
            return self._unfitted(f"no coupon arm with at least {min_rows} offers ({why})")

        with warnings.catch_warnings():  # an all-NaN column warns; it is imputed with 0
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, sd = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        z = np.nan_to_num((X - mean) / sd, nan=0.0, posinf=0.0, neginf=0.0)
        coef, intercept = [], []
        for a in [CONTROL, *kept]:
            rows = arm == a
            w, b = _ridge(z[rows], y[rows], self.config.ridge_alpha)
            coef.append(w)
            intercept.append(b)
        self.coupons = kept
        self._mean, self._inv_sd = mean, 1.0 / sd
        self._coef, self._intercept = np.array(coef).reshape(len(kept) + 1, d), np.array(intercept)
        self.fitted = True
        self.reason_unfitted = ""
        self._prepare()
        return self

    def _unfitted(self, reason: str) -> Self:
        self.fitted = False
        self.reason_unfitted = reason
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Uplift coefficients (treated arm minus control) for ``decide``."""
        if self.fitted:
            self._w_up = np.ascontiguousarray(self._coef[1:] - self._coef[0])
            self._b_up = self._intercept[1:] - self._intercept[0]
        self._d = len(self.feature_names)

    # ------------------------------------------------------------------ predict
    def _z(self, X: np.ndarray) -> np.ndarray:
        z = (X - self._mean) * self._inv_sd
        z[np.isnan(z)] = 0.0
        return z

    def _check(self, X: np.ndarray, ndim: int) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != ndim or X.shape[-1] != self._d:
            raise ValueError(
                f"expected {self._d} features {self.feature_names}, got shape {X.shape}"
            )
        return X

    def expected_outcome(self, X: np.ndarray) -> np.ndarray:
        """E[net_margin | arm, x]: (n, 1 + n_coupons), control first."""
        X = self._check(X, 2)
        if not self.fitted:
            return np.zeros((len(X), 0))
        return self._z(X) @ self._coef.T + self._intercept

    def expected_uplift(self, X: np.ndarray) -> np.ndarray:
        """E[net_margin | coupon c, x] - E[net_margin | control, x]: (n, n_coupons), in
        ``coupons`` order; (n, 0) when unfitted."""
        X = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return np.zeros((len(X), 0))
        X = self._check(X, 2)
        return self._z(X) @ self._w_up.T + self._b_up

    def _reason(self, c: str, u: float) -> Decision:
        thr = self.config.min_incremental_margin
        if u > thr:
            return c, u, f"{c}: {u:+.2f} expected incremental margin net of cost"
        verb = "is below" if u < thr else "is not above"
        why = f"no coupon: best expected incremental margin {u:.2f} ({c}) {verb} {thr:.2f}"
        return None, u, why

    def decide(self, x: np.ndarray) -> Decision:
        """For one member's features ``x`` (d,) float in ``feature_names`` order (NaN =
        unknown, imputed with the mean): (coupon_id or None, expected incremental margin
        net of cost, reason). The margin is the best coupon's even when none is given."""
        if not self.fitted:
            return None, 0.0, self.reason_unfitted
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self._d,):
            raise ValueError(
                f"expected {self._d} features {self.feature_names}, got shape {x.shape}"
            )
        z = (x - self._mean) * self._inv_sd
        if self._d:
            z[np.isnan(z)] = 0.0
        up = self._w_up @ z + self._b_up
        best = int(up.argmax())
        return self._reason(self.coupons[best], float(up[best]))

    def decide_many(self, X: np.ndarray) -> list[Decision]:
        """``decide`` for each row of ``X`` (n, d)."""
        X = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return [(None, 0.0, self.reason_unfitted)] * len(X)
        up = self.expected_uplift(X)
        best = up.argmax(axis=1)
        vals = up[np.arange(len(X)), best].tolist()
        return [self._reason(self.coupons[b], v) for b, v in zip(best.tolist(), vals, strict=True)]

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "coupons": self.coupons,
            "feature_names": self.feature_names,
            "fitted": self.fitted,
            "reason_unfitted": self.reason_unfitted,
            "arm_rows": self.arm_rows,
            "dropped": self.dropped,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self._mean,
            "inv_sd": self._inv_sd,
            "coef": self._coef,
            "intercept": self._intercept,
        }

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> CouponPolicy:
        known = {f.name for f in fields(CouponConfig)}
        obj = cls(CouponConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        obj.coupons = list(meta["coupons"])
        obj.feature_names = list(meta["feature_names"])
        obj.fitted = bool(meta["fitted"])
        obj.reason_unfitted = str(meta["reason_unfitted"])
        obj.arm_rows = dict(meta["arm_rows"])
        obj.dropped = dict(meta["dropped"])
        obj._mean, obj._inv_sd = z["mean"], z["inv_sd"]
        obj._coef, obj._intercept = z["coef"], z["intercept"]
        obj._prepare()
        return obj


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

    def _meta(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "feature_names": self.feature_names}

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], z: dict[str, np.ndarray]) -> NoCouponPolicy:
        known = {f.name for f in fields(CouponConfig)}
        obj = cls(CouponConfig(**{k: v for k, v in meta["config"].items() if k in known}))
        obj.feature_names = list(meta.get("feature_names", []))
        return obj


_KINDS: dict[str, type[_PolicyBase]] = {
    CouponPolicy.kind: CouponPolicy,
    NoCouponPolicy.kind: NoCouponPolicy,
}


def load_coupon_policy(path: Path) -> CouponPolicy | NoCouponPolicy:
    """Load either policy, choosing the class from the artifact's kind."""
    return _PolicyBase.load(path)  # type: ignore[return-value]
