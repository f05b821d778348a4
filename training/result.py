"""What a training step hands to the registry: the model, its baseline and their metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """A fitted candidate and its simple baseline, compared on the same held-out data.

    ``metrics`` maps "shipped" and "baseline" to {metric name: value}; ``primary`` names
    the metric the promotion gate compares (higher is better unless ``higher_is_better``).
    ``flavor`` is "sklearn" (native MLflow flavour) or "pyfunc" (``models.pyfunc``, logged
    from code). ``evaluation`` holds held-out arrays the run's figures draw (see
    ``training.plots``): for churn ``y_true`` and each role's P(churned) under ``shipped``
    and ``baseline``; for coupon each held-out offer's ``arm`` ('' = control) and
    ``net_margin``.
    """

    name: str
    shipped: Any
    baseline: Any
    metrics: dict[str, dict[str, float]]
    primary: str
    higher_is_better: bool = True
    flavor: str = "pyfunc"
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input_example: Any = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    # the gate's comparison (training.gate.Selection) when the section ran one, and the
    # policy name of each registered role ("shipped" -> "hybrid", "baseline" -> "buy_again")
    selection: Any = None
    policies: dict[str, str] = field(default_factory=dict)

    @property
    def shipped_wins(self) -> bool:
        """True when the shipped model is the champion: the gate chose a "model" policy, or
        (sections without a gate) it beats its baseline on the primary metric."""
        if self.selection is not None:
            return self.selection.role == "model"
        s = self.metrics.get("shipped", {}).get(self.primary)
        b = self.metrics.get("baseline", {}).get(self.primary)
        if s is None or s != s:  # missing or NaN: the model could not be evaluated
            return False
        if b is None or b != b:
            return True
        return s > b if self.higher_is_better else s < b
