"""Evaluation metrics shared by the training promotion gate and the backtest.

Pure functions of arrays; numpy throughout, scikit-learn (ranking AUCs) and pandas (the
calibration table) are imported when called. A metric that cannot be computed on the data
given (no member with a held-out purchase, a single class) is NaN, which the promotion gate
reads as "could not be evaluated".

- Ranking (top-k lists against held-out sets, binary relevance): ``ndcg_at_k``,
  ``ndcg_per_member``, ``recall_at_k``, ``precision_at_k``, ``map_at_k``,
  ``catalogue_coverage``.
- Churn (probabilities of the positive class, label 1): ``churn_metrics``,
  ``roc_auc_standard_error``, ``calibration_table``.
- Noise: ``standard_error`` of a mean of per-member values.
- Uplift and policies on randomized offers: ``qini_curve``, ``qini_coefficient``,
  ``policy_value``, ``policy_value_multi``.
- Send time (hours of the week, Monday 00:00 = 0 ... Sunday 23:00 = 167): ``hour_hit_rate``,
  ``hour_of_day_hit_rate``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pandas as pd

HOURS_PER_WEEK = 168
HOURS_PER_DAY = 24

# ---------------------------------------------------------------------------- ranking
# Conventions shared by the ranking metrics:
# - ``recommended[i]`` is member i's ranked list, best first; ``relevant[i]`` the set of items
#   member i interacted with in the held-out window (binary relevance).
# - Members whose relevant set is empty are skipped: they carry no information about the
#   ranking and would pull every model towards 0 alike. The result is the mean over the
#   remaining members, NaN if none remain.
# - A list is cut to its first k *distinct* items (a repeated item counts once).


def _top_k(items: Sequence[Hashable], k: int) -> list[Hashable]:
    seen: set[Hashable] = set()
    out: list[Hashable] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
            if len(out) == k:
                break
    return out


def _mean_over_members(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int,
    per_member: Callable[[NDArray[np.bool_], int], float],
) -> float:
    """Mean of ``per_member(hits, n_relevant)`` over members with a relevant item; ``hits``
    (<= k,) bool marks which of the member's top-k distinct items are relevant."""
    if len(recommended) != len(relevant):
        raise ValueError(
            f"{len(recommended)} recommendation lists but {len(relevant)} relevant sets: "
            "pass one of each per member, in the same order"
        )
    scores = _per_member(recommended, relevant, k, per_member)
    return float(np.mean(scores)) if scores.size else float("nan")


def _per_member(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int,
    per_member: Callable[[NDArray[np.bool_], int], float],
) -> NDArray[np.float64]:
    """``per_member(hits, n_relevant)`` of each member with a relevant item, in order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    return np.array(
        [
            per_member(np.array([item in rel for item in _top_k(recs, k)], dtype=bool), len(rel))
            for recs, rel in zip(recommended, relevant, strict=True)
            if len(rel) > 0
        ],
        dtype=np.float64,
    )


def _discounts(n: int) -> NDArray[np.float64]:
    """1 / log2(rank + 1) for ranks 1..n, shape (n,)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def ndcg_at_k(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> float:
    """Mean NDCG@k with binary relevance, in [0, 1].

    DCG = sum over ranks i <= k of rel_i / log2(i + 1); the ideal DCG puts
    min(k, |relevant|) relevant items first. A list holding all relevant items at the top
    scores 1.
    """

    return _mean_over_members(recommended, relevant, k, _ndcg_one(k))


def _ndcg_one(k: int) -> Callable[[NDArray[np.bool_], int], float]:
    def one(hits: NDArray[np.bool_], n_rel: int) -> float:
        ideal = _discounts(min(k, n_rel)).sum()
        return float(_discounts(len(hits))[hits].sum() / ideal)

    return one


def standard_error(values: ArrayLike) -> float:
    """Standard error of the mean of ``values`` (n,): sample std (ddof 1) / sqrt(n); NaN
    for fewer than two values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        return float("nan")
    return float(v.std(ddof=1) / np.sqrt(v.size))


def recall_at_k(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> float:
    """Mean of hits / min(k, |relevant|), in [0, 1].

    The denominator is capped at k (the convention of Liang et al. 2018 and most top-k
    recommender evaluations) so that a perfect list scores 1 even for members with more
    than k relevant items; plain recall would cap those members below 1.
    """
    return _mean_over_members(
        recommended, relevant, k, lambda hits, n_rel: hits.sum() / min(k, n_rel)
    )


def precision_at_k(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> float:
    """Mean of hits / k, in [0, 1]. The denominator is always k: a list shorter than k
    is penalised for the slots it left empty."""
    return _mean_over_members(recommended, relevant, k, lambda hits, n_rel: hits.sum() / k)


def map_at_k(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> float:
    """Mean average precision at k, in [0, 1].

    AP@k = sum over ranks i <= k of precision@i * rel_i, divided by min(k, |relevant|)
    (the same cap as ``recall_at_k``, so a perfect list scores 1).
    """

    def one(hits: NDArray[np.bool_], n_rel: int) -> float:
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        return float(precision[hits].sum() / min(k, n_rel))

    return _mean_over_members(recommended, relevant, k, one)


def catalogue_coverage(recommended: Sequence[Sequence[Hashable]], catalogue_size: int) -> float:
    """Share of the catalogue recommended to at least one member: |union of all lists| /
    ``catalogue_size``, in [0, 1]. Lists are taken whole (cut them to k first); every
    member counts, including those skipped by the accuracy metrics."""
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be >= 1, not {catalogue_size}")
    shown: set[Hashable] = set()
    for recs in recommended:
        shown.update(recs)
    if len(shown) > catalogue_size:
        raise ValueError(
            f"{len(shown)} distinct items recommended but catalogue_size is {catalogue_size}"
        )
    return len(shown) / catalogue_size


# ---------------------------------------------------------------------------- churn
def _labels_and_probs(
    y_true: ArrayLike, p: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    q = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise ValueError(f"y_true has {y.size} rows but p has {q.size}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must be 0/1 labels (1 = churned)")
    if not (np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()):
        raise ValueError("p must be probabilities in [0, 1] (no NaN)")
    return y, q


def churn_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Discrimination and calibration of churn probabilities.

    ``y_true`` (n,) 0/1 with 1 = churned; ``p`` (n,) predicted P(churned). Returns
    roc_auc, pr_auc (average precision), brier (mean squared error of p), log_loss (mean
    negative log-likelihood in nats, p clipped to [1e-15, 1 - 1e-15]), base_rate (share of
    1s) and n. The AUCs are NaN when only one class is present; everything but n is NaN
    when n = 0.
    """
    y, q = _labels_and_probs(y_true, p)
    n = y.size
    nan = float("nan")
    if n == 0:
        return {"roc_auc": nan, "pr_auc": nan, "brier": nan, "log_loss": nan,
                "base_rate": nan, "n": 0.0}  # fmt: skip
    from sklearn.metrics import average_precision_score, roc_auc_score

    both = 0 < y.sum() < n
    qc = np.clip(q, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": float(roc_auc_score(y, q)) if both else nan,
        "pr_auc": float(average_precision_score(y, q)) if both else nan,
        "brier": float(np.mean((q - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(qc) + (1 - y) * np.log1p(-qc))),
        "base_rate": float(y.mean()),
        "n": float(n),
    }


def roc_auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of a ROC AUC from ``n_pos`` positives and ``n_neg`` negatives
    (Hanley & McNeil 1982): sqrt((A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) /
    (n_pos n_neg)) with Q1 = A/(2-A), Q2 = 2A^2/(1+A). NaN when either class is empty or
    ``auc`` is NaN."""
    if n_pos < 1 or n_neg < 1 or auc != auc:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return float(np.sqrt(max(var, 0.0)))


def calibration_table(
    y_true: ArrayLike,
    p: ArrayLike,
    bins: int = 10,
    *,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> pd.DataFrame:
    """Reliability table: one row per bin of ``p`` with columns bin, lower, upper,
    mean_predicted, observed_rate, count.

    ``strategy`` "uniform": ``bins`` equal-width bins on [0, 1], every bin listed (empty
    ones with count 0 and NaN means). "quantile": equal-count bins at the quantiles of
    ``p``; tied edges are merged, so there may be fewer rows. Bins are [lower, upper) except
    the last, which includes 1 (or the top quantile).
    """
    import pandas as pd

    y, q = _labels_and_probs(y_true, p)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, not {bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    elif strategy == "quantile":
        if q.size == 0:
            raise ValueError("a quantile calibration table needs at least one prediction")
        edges = np.unique(np.quantile(q, np.linspace(0.0, 1.0, bins + 1)))
        if edges.size == 1:  # every prediction equal: one bin holding them all
            edges = np.array([edges[0], edges[0]])
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}")
    n_bins = edges.size - 1
    idx = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=q, minlength=n_bins) / count
        rate = np.bincount(idx, weights=y, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "mean_predicted": mean_p,
            "observed_rate": rate,
            "count": count.astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------- uplift
def _uplift_inputs(
    treated: ArrayLike, outcome: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    t = np.asarray(treated).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if not (t.size == y.size == s.size):
        raise ValueError(f"treated, outcome, score differ in length: {t.size}, {y.size}, {s.size}")
    if t.dtype != np.bool_:
        if not np.isin(t, (0, 1)).all():
            raise ValueError("treated must be boolean (or 0/1)")
        t = t.astype(bool)
    if not (np.isfinite(y).all() and np.isfinite(s).all()):
        raise ValueError("outcome and score must be finite (no NaN)")
    return t, y, s


def qini_curve(
    treated: ArrayLike, outcome: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Qini curve (Radcliffe 2007) of targeting by descending ``score``.

    ``treated`` (n,) bool, ``outcome`` (n,) float (e.g. net margin in currency), ``score``
    (n,) predicted uplift, higher = target first. For the top-n rows,
    ``Q(n) = Y_t(n) - Y_c(n) * N_t(n) / N_c(n)``: the treated rows' summed outcome minus
    the control rows' summed outcome scaled to as many rows; the scaled term is 0 while no
    control row has been reached. Rows with tied scores are one step (the curve is only
    evaluated where the score changes), so the curve does not depend on row order; a
    constant score gives the random line.

    Returns ``(x, y)``, each (n_distinct_scores + 1,): x the fraction of rows targeted, from
    0 to 1; y = Q, cumulative incremental outcome in outcome units (a total, not a mean),
    from 0 to Q(n) = N_t * (mean_t - mean_c).
    """
    t, y, s = _uplift_inputs(treated, outcome, score)
    n = t.size
    if n == 0:
        return np.zeros(1), np.zeros(1)
    order = np.argsort(-s, kind="stable")
    t, y, s = t[order], y[order], s[order]
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), n - 1]  # last row of each tie group
    n_t = np.cumsum(t)[ends].astype(np.float64)
    n_c = (ends + 1) - n_t
    y_t = np.cumsum(np.where(t, y, 0.0))[ends]
    y_c = np.cumsum(np.where(t, 0.0, y))[ends]
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    q = y_t - y_c * ratio
    return np.r_[0.0, (ends + 1) / n], np.r_[0.0, q]


def qini_coefficient(treated: ArrayLike, outcome: ArrayLike, score: ArrayLike) -> float:
    """Area between the Qini curve and the random-targeting line, divided by the number
    of rows: incremental outcome per row (outcome units), higher is better.

    The random line joins (0, 0) and (1, Q(n)); the area is the trapezoid integral over the
    fraction targeted, so it is a total in outcome units, and dividing by n makes it a
    per-row average that does not grow with the sample. Positive = the score ranks
    responders to treatment above random, 0 = no better than random (a constant score is
    exactly 0), negative = worse. This normalisation was chosen over "relative to the
    perfect curve" because outcomes here are continuous, can be negative, and the perfect
    curve is then ill-defined and its area can be near zero, which makes that ratio
    unstable. NaN for an empty sample.
    """
    t, _, _ = _uplift_inputs(treated, outcome, score)
    if t.size == 0:
        return float("nan")
    x, q = qini_curve(treated, outcome, score)
    gain = q - x * q[-1]
    area = float(np.sum((gain[1:] + gain[:-1]) * np.diff(x)) / 2.0)
    return area / t.size


def policy_value(
    treated: ArrayLike,
    outcome: ArrayLike,
    assigned: ArrayLike,
    propensity: ArrayLike | float | None = None,
    *,
    self_normalize: bool = False,
) -> float:
    """Inverse-propensity (IPW) estimate of the mean outcome per member had members been
    treated exactly as ``assigned`` says.

    ``treated``, ``assigned`` (n,) bool; ``outcome`` (n,) float; ``propensity`` P(treated)
    per row (n,) or a scalar; None = the treated share (right for a randomized
    experiment). Only rows whose actual treatment agrees with the assignment count, each
    weighted by 1 / P(actual treatment):
    ``V = sum_i [t_i = a_i] y_i / P(t_i) / n``
    (Horvitz-Thompson; with ``self_normalize`` the denominator is the sum of the weights
    instead, the Hajek estimator: a little biased, lower variance). Raises ValueError if a
    member is assigned a treatment it had no chance of receiving.
    """
    t, y, a = _policy_inputs(treated, outcome, assigned)
    if t.size == 0:
        return float("nan")
    if propensity is None:
        e = np.full(t.size, t.mean())
    else:
        e = np.broadcast_to(np.asarray(propensity, dtype=np.float64), t.shape)
        if not (np.isfinite(e).all() and (e >= 0).all() and (e <= 1).all()):
            raise ValueError("propensity must be probabilities in [0, 1]")
    p_assigned = np.where(a, e, 1.0 - e)
    if (p_assigned <= 0).any():
        raise ValueError(
            "the policy assigns a treatment some members could not have received "
            "(propensity 0): the data cannot value it"
        )
    match = t == a
    w = np.where(match, 1.0 / p_assigned, 0.0)
    return _ipw(w, y, self_normalize)


def policy_value_multi(
    arm: ArrayLike,
    outcome: ArrayLike,
    assigned_arm: ArrayLike,
    *,
    self_normalize: bool = False,
) -> float:
    """IPW estimate of the mean outcome per member under a multi-arm policy, on data from
    a randomized experiment.

    ``arm`` (n,) str: the arm each member actually got ('' = control); ``outcome`` (n,)
    float; ``assigned_arm`` (n,) str: the arm the policy picks ('' = none). The propensity
    of each arm is its share of rows. ``V = sum_i [arm_i = assigned_i] y_i / share(arm_i) / n``
    (Hajek with ``self_normalize``). So "give nobody anything" is the control mean and
    "everyone gets arm k" the arm-k mean. Raises ValueError when the policy assigns an arm
    that no row received (nothing to estimate it from).
    """
    got = np.asarray(arm).astype(str).ravel()
    want = np.asarray(assigned_arm).astype(str).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    if not (got.size == want.size == y.size):
        raise ValueError(
            f"arm, outcome, assigned_arm differ in length: {got.size}, {y.size}, {want.size}"
        )
    if not np.isfinite(y).all():
        raise ValueError("outcome must be finite (no NaN)")
    if got.size == 0:
        return float("nan")
    return _ipw(policy_weights(got, want), y, self_normalize)


def policy_weights(arm: ArrayLike, assigned_arm: ArrayLike) -> NDArray[np.float64]:
    """(n,) inverse-propensity weights of a multi-arm policy on randomized data:
    ``[arm_i = assigned_i] / share(arm_i)``, each arm's propensity its share of rows (see
    ``policy_value_multi``). Raises ValueError when the policy assigns an arm no row got."""
    got = np.asarray(arm).astype(str).ravel()
    want = np.asarray(assigned_arm).astype(str).ravel()
    arms, counts = np.unique(got, return_counts=True)
    unseen = sorted(set(np.unique(want).tolist()) - set(arms.tolist()))
    if unseen:
        raise ValueError(
            f"the policy assigns arms never offered in the data ({unseen}): their value "
            "cannot be estimated; evaluate on data where every arm was randomized"
        )
    share = counts / got.size
    p_assigned = share[np.searchsorted(arms, want)]
    return np.where(got == want, 1.0 / p_assigned, 0.0)


def _policy_inputs(
    treated: ArrayLike, outcome: ArrayLike, assigned: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]]:
    t = np.asarray(treated).ravel()
    a = np.asarray(assigned).ravel()
    y = np.asarray(outcome, dtype=np.float64).ravel()
    if not (t.size == a.size == y.size):
        raise ValueError(
            f"treated, outcome, assigned differ in length: {t.size}, {y.size}, {a.size}"
        )
    for name, v in (("treated", t), ("assigned", a)):
        if v.dtype != np.bool_ and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1)")
    if not np.isfinite(y).all():
        raise ValueError("outcome must be finite (no NaN)")
    return t.astype(bool), y, a.astype(bool)


def _ipw(w: NDArray[np.float64], y: NDArray[np.float64], self_normalize: bool) -> float:
    if self_normalize:
        total = w.sum()
        return float(w @ y / total) if total > 0 else float("nan")
    return float(w @ y / w.size)


# ---------------------------------------------------------------------------- send time
def _circular_hits(
    recommended: NDArray[np.int64], actual: NDArray[np.int64], tolerance: int, wrap: int
) -> float:
    if recommended.size == 0:
        return float("nan")
    d = np.abs(recommended - actual) % wrap
    return float(np.mean(np.minimum(d, wrap - d) <= tolerance))


def _hours(values: ArrayLike, name: str, wrap: int) -> NDArray[np.int64]:
    v = np.asarray(values).ravel()
    if v.size and (not np.issubdtype(v.dtype, np.number) or (v != np.round(v)).any()):
        raise ValueError(f"{name} must be whole hours")
    v = v.astype(np.int64)
    if ((v < 0) | (v >= wrap)).any():
        raise ValueError(f"{name} must be hours in [0, {wrap})")
    return v


def hour_hit_rate(
    recommended_how: ArrayLike,
    actual_how: ArrayLike,
    tolerance_hours: int = 1,
    *,
    wrap: int = HOURS_PER_WEEK,
) -> float:
    """Share of members whose actual hour lies within ``tolerance_hours`` of the
    recommended one, measured around the circle of ``wrap`` hours.

    ``recommended_how``, ``actual_how`` (n,) int hours of the week in [0, wrap) (Monday
    00:00 = 0, so Sunday 23:00 = 167 is 1 hour from Monday 00:00 = 0). With the default
    tolerance of 1 a hit is the recommended hour or either neighbour. NaN when n = 0.
    """
    if wrap < 1 or tolerance_hours < 0:
        raise ValueError("wrap must be >= 1 and tolerance_hours >= 0")
    rec = _hours(recommended_how, "recommended_how", wrap)
    act = _hours(actual_how, "actual_how", wrap)
    if rec.shape != act.shape:
        raise ValueError(f"{rec.size} recommended hours but {act.size} actual ones")
    return _circular_hits(rec, act, tolerance_hours, wrap)


def hour_of_day_hit_rate(
    recommended_how: ArrayLike, actual_how: ArrayLike, tolerance_hours: int = 1
) -> float:
    """``hour_hit_rate`` on the hour of day only: both (n,) hours of the week in [0, 168)
    are reduced modulo 24 and compared around the 24-hour circle (23:00 is 1 hour from
    00:00), whatever the day."""
    rec = _hours(recommended_how, "recommended_how", HOURS_PER_WEEK) % HOURS_PER_DAY
    act = _hours(actual_how, "actual_how", HOURS_PER_WEEK) % HOURS_PER_DAY
    return hour_hit_rate(rec, act, tolerance_hours, wrap=HOURS_PER_DAY)


def ndcg_per_member(
    recommended: Sequence[Sequence[Hashable]],
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> NDArray[np.float64]:
    """(n_members,) NDCG@k of each member's list (binary relevance), in the order given,
    NaN for a member with no relevant item: ``ndcg_at_k`` is the mean of the finite
    values, their spread gives its standard error (``standard_error``), and the promotion
    gate compares policies member by member with it."""
    if len(recommended) != len(relevant):
        raise ValueError(
            f"{len(recommended)} recommendation lists but {len(relevant)} relevant sets: "
            "pass one of each per member, in the same order"
        )
    out = np.full(len(recommended), np.nan)
    has = np.array([len(rel) > 0 for rel in relevant], dtype=bool)
    out[has] = _per_member(recommended, relevant, k, _ndcg_one(k))
    return out
