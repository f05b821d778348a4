"""The promotion gate: the best policy wins only when it beats the simpler ones by more than noise.

Every section (products, churn, coupons, send time) hands the gate its candidates on the same
held-out units (members, or offers where the data is randomized offers), simplest first. The
simplest candidate starts as the incumbent; each following candidate replaces it only when its
paired advantage over the incumbent has a lower confidence bound above zero:

    lcb = mean(candidate - incumbent) - z * se(candidate - incumbent)

For a metric that is a mean over units (NDCG of each member, an offer's inverse-propensity or
doubly robust contribution, a member's send-hour hit) the standard error is the analytic one of
the paired differences; for a metric that is not (ROC AUC) it is a paired bootstrap over units.
The same code decides promotion in ``memberwise run`` and the verdicts of ``memberwise
evaluate``, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Statistic = Callable[[NDArray[np.int64]], float]


@dataclass
class Candidate:
    """One policy on the held-out units.

    Give exactly one of ``units`` — (n_units,) float, the policy's score per unit, NaN where
    the unit carries no information (dropped for every candidate alike) — or ``statistic`` — a
    function of unit indices (n,) int returning the metric on those units (bootstrapped).
    ``complexity`` orders the candidates (0 = simplest); ``role`` is "baseline" for a simple
    rule and "model" for a learned policy.
    """

    name: str
    role: str
    complexity: int
    units: NDArray[np.float64] | None = None
    statistic: Statistic | None = None
    model: Any = None
    reason: str = ""

    def __post_init__(self) -> None:
        if (self.units is None) == (self.statistic is None):
            raise ValueError(f"candidate {self.name!r}: give exactly one of units or statistic")
        if self.units is not None:
            self.units = np.asarray(self.units, dtype=np.float64)


@dataclass
class Row:
    """One line of the gate's comparison table."""

    name: str
    role: str
    complexity: int
    estimate: float
    se: float
    vs: str | None = None  # the incumbent it was compared with
    advantage: float = float("nan")  # mean paired difference against that incumbent
    lcb: float = float("nan")  # its lower confidence bound
    verdict: str = ""


@dataclass
class Selection:
    """The champion and the table that chose it."""

    champion: str
    role: str
    reason: str
    rows: list[Row] = field(default_factory=list)
    n_units: int = 0
    z: float = 1.645
    chain: list[str] = field(default_factory=list)  # the successive incumbents, simplest first

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def as_records(self) -> list[dict[str, Any]]:
        return [vars(r).copy() for r in self.rows]


def _mean_se(x: NDArray[np.float64]) -> tuple[float, float]:
    if len(x) == 0:
        return float("nan"), float("nan")
    se = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("inf")
    return float(np.mean(x)), se


def select(
    candidates: Sequence[Candidate],
    *,
    z: float = 1.645,
    n_boot: int = 200,
    seed: int = 0,
    higher_is_better: bool = True,
) -> Selection:
    """Choose the champion among ``candidates`` (see the module docstring).

    A candidate whose estimate is NaN (it could not be evaluated) never wins. Candidates are
    visited by ``complexity`` (stable for ties, so list simpler rules first within a tier).
    """
    if not candidates:
        raise ValueError("the gate needs at least one candidate")
    cands = sorted(candidates, key=lambda c: c.complexity)
    sign = 1.0 if higher_is_better else -1.0
    per_unit = [c for c in cands if c.units is not None]
    if per_unit and len(per_unit) != len(cands):
        raise ValueError("candidates mix per-unit scores and statistics: give one kind")
    if per_unit:
        n = {len(c.units) for c in per_unit if c.units is not None}
        if len(n) != 1:
            raise ValueError(f"candidates scored different numbers of units: {sorted(n)}")
        mat = np.vstack([c.units for c in per_unit if c.units is not None]) * sign
        usable = np.isfinite(mat)
        # a unit counts when every candidate that could be evaluated scored it
        evaluable = usable.any(axis=1)
        keep = usable[evaluable].all(axis=0) if evaluable.any() else np.zeros(mat.shape[1], bool)
        mat = mat[:, keep]
        n_units = int(keep.sum())
        est_se = [
            _mean_se(mat[i]) if evaluable[i] else (float("nan"), float("nan"))
            for i in range(len(cands))
        ]

        def diff(i: int, j: int) -> tuple[float, float]:
            return _mean_se(mat[i] - mat[j])
    else:
        n_units = _n_units_of(cands)
        rng = np.random.default_rng(seed)
        boots = [rng.integers(0, n_units, n_units) for _ in range(n_boot)]
        full = np.arange(n_units)
        point = [sign * _safe(c.statistic, full) for c in cands]
        samples = np.array([[sign * _safe(c.statistic, b) for b in boots] for c in cands])
        est_se = [
            (point[i], float(np.nanstd(samples[i], ddof=1)) if n_boot > 1 else float("nan"))
            for i in range(len(cands))
        ]

        def diff(i: int, j: int) -> tuple[float, float]:
            d = samples[i] - samples[j]
            return point[i] - point[j], float(np.nanstd(d, ddof=1))

    rows = [
        Row(c.name, c.role, c.complexity, sign * est_se[i][0], est_se[i][1])
        for i, c in enumerate(cands)
    ]
    inc: int | None = None
    chain: list[str] = []
    for i in range(len(cands)):
        if not np.isfinite(est_se[i][0]):
            rows[i].verdict = "could not be evaluated on the held-out data"
            continue
        if inc is None:
            inc = i
            chain.append(cands[i].name)
            rows[i].verdict = "simplest policy that could be evaluated"
            continue
        adv, se = diff(i, inc)
        lcb = adv - z * se
        rows[i].vs, rows[i].advantage, rows[i].lcb = cands[inc].name, sign * adv, sign * lcb
        if lcb > 0:
            rows[i].verdict = f"beats {cands[inc].name} by more than the noise"
            inc = i
            chain.append(cands[i].name)
        else:
            rows[i].verdict = f"not better than {cands[inc].name} by more than the noise"
    if inc is None:  # nothing could be evaluated: the simplest rule serves
        inc = 0
        reason = "no candidate could be evaluated on held-out data: the simplest rule serves"
    else:
        r = rows[inc]
        reason = (
            f"{r.name}: {r.verdict}"
            if r.vs is None
            else f"{r.name} beats {r.vs} by {r.advantage:+.4g} (lower bound {r.lcb:+.4g}, z={z:g})"
        )
    for i, r in enumerate(rows):
        if i == inc:
            r.verdict = f"champion; {r.verdict}"
    return Selection(
        cands[inc].name, cands[inc].role, reason, rows, n_units, z, chain or [cands[0].name]
    )


def best_rule(sel: Selection) -> str:
    """The last simple rule ("baseline" role) in the chain of incumbents: what a model had to
    beat, or the champion itself when no model beat it."""
    roles = {r.name: r.role for r in sel.rows}
    rules = [n for n in sel.chain if roles[n] != "model"]
    return rules[-1] if rules else sel.rows[0].name


def _n_units_of(cands: Sequence[Candidate]) -> int:
    n = getattr(cands[0].statistic, "n_units", None)
    if n is None:
        raise ValueError("a statistic candidate needs an n_units attribute (see bootstrap_stat)")
    return int(n)


def _safe(fn: Statistic | None, idx: NDArray[np.int64]) -> float:
    assert fn is not None
    try:
        v = float(fn(idx))
    except ValueError:  # e.g. a resample with a single class for ROC AUC
        return float("nan")
    return v


def bootstrap_stat(fn: Statistic, n_units: int) -> Statistic:
    """Mark ``fn`` (a function of unit indices) with the number of units it resamples."""
    fn.n_units = n_units  # type: ignore[attr-defined]
    return fn


def format_table(sel: Selection, metric: str) -> str:
    """The comparison table as aligned text lines (for the run log)."""
    width = max(22, *(len(r.name) for r in sel.rows))
    head = f"    {'policy':<{width}} {'role':<8} {metric:>12} {'± se':>9} {'lcb vs incumbent':>18}  verdict"
    lines = [head]
    for r in sel.rows:
        lcb = "" if r.vs is None else f"{r.lcb:+.4f} vs {r.vs}"
        lines.append(
            f"    {r.name:<{width}} {r.role:<8} {r.estimate:>12.4f} {r.se:>9.4f} {lcb:>18}  {r.verdict}"
        )
    return "\n".join(lines)
