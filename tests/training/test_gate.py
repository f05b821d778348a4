"""The gate promotes a more complex policy only when it wins by more than the noise."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.gate import Candidate, bootstrap_stat, select


def _units(mean: float, n: int, seed: int, sd: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_a_clear_win_is_promoted():
    base = _units(0.0, 2000, 1)
    model = base + 0.2 + _units(0.0, 2000, 2, 0.1)
    sel = select([Candidate("rule", "baseline", 0, units=base),
                  Candidate("model", "model", 1, units=model)])  # fmt: skip
    assert sel.champion == "model" and sel.role == "model"
    assert sel.row("model").lcb > 0
    assert "beats rule" in sel.reason


def test_a_win_inside_the_noise_keeps_the_simpler_rule():
    base = _units(0.0, 300, 1)
    d = _units(0.0, 300, 2)
    model = base + (d - d.mean() + 0.02)  # measured edge 0.02, paired se ~0.06
    sel = select([Candidate("rule", "baseline", 0, units=base),
                  Candidate("model", "model", 1, units=model)])  # fmt: skip
    assert sel.row("model").estimate > sel.row("rule").estimate  # it "won" on the point
    assert sel.champion == "rule"  # ... but not by more than the noise
    assert "not better than rule" in sel.row("model").verdict


def test_noise_alone_never_promotes_over_many_seeds():
    promoted = 0
    for seed in range(200):
        base = _units(0.0, 200, seed)
        model = base + _units(0.0, 200, 1000 + seed)
        sel = select([Candidate("rule", "baseline", 0, units=base),
                      Candidate("model", "model", 1, units=model)])  # fmt: skip
        promoted += sel.champion == "model"
    assert promoted <= 200 * 0.1  # one-sided 5% level, with slack for 200 draws


def test_the_chain_compares_each_candidate_with_the_current_incumbent():
    a = _units(0.0, 5000, 1, 0.1)
    b = a + 0.5
    c = b + 0.001  # no better than b within noise
    sel = select([Candidate("a", "baseline", 0, units=a), Candidate("b", "baseline", 1, units=b),
                  Candidate("c", "model", 2, units=c + _units(0, 5000, 9, 0.5))])  # fmt: skip
    assert sel.champion == "b"
    assert sel.row("c").vs == "b"


def test_nan_units_are_dropped_for_everyone_and_unevaluable_candidates_never_win():
    base = np.array([1.0, np.nan, 0.0, 1.0] * 100)
    model = np.array([1.0, 5.0, 1.0, 1.0] * 100)
    broken = np.full(400, np.nan)
    sel = select([Candidate("rule", "baseline", 0, units=base),
                  Candidate("model", "model", 1, units=model),
                  Candidate("broken", "model", 2, units=broken)])  # fmt: skip
    assert sel.n_units == 300
    assert sel.row("model").estimate == pytest.approx(1.0)
    assert sel.champion == "model"
    assert "could not be evaluated" in sel.row("broken").verdict


def test_lower_is_better_metrics():
    base = _units(1.0, 1000, 1, 0.1)
    sel = select([Candidate("rule", "baseline", 0, units=base),
                  Candidate("model", "model", 1, units=base - 0.3)], higher_is_better=False)  # fmt: skip
    assert sel.champion == "model"


def test_bootstrapped_statistic_for_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    weak = y * 0.2 + rng.normal(0, 1, 3000)
    strong = y * 1.5 + rng.normal(0, 1, 3000)

    def auc(score):
        return bootstrap_stat(lambda idx: roc_auc_score(y[idx], score[idx]), len(y))

    sel = select([Candidate("rule", "baseline", 0, statistic=auc(weak)),
                  Candidate("model", "model", 1, statistic=auc(strong))], n_boot=100)  # fmt: skip
    assert sel.champion == "model"
    assert 0 < sel.row("model").se < 0.05
    same = select([Candidate("rule", "baseline", 0, statistic=auc(strong)),
                   Candidate("model", "model", 1, statistic=auc(strong + rng.normal(0, 1e-3, 3000)))],
                  n_boot=100)  # fmt: skip
    assert same.champion == "rule"


def test_candidate_needs_one_kind_of_score():
    with pytest.raises(ValueError, match="exactly one"):
        Candidate("x", "model", 0)
