"""The backtest: what `memberwise run` registers, scored on what happened after the as-of
date, side by side with simple baselines and the peers a data scientist would reach for.

`memberwise evaluate` (pipelines/evaluate.py) runs the pipeline of `memberwise run` on the
data up to the as-of date, so each section's *shipped* model is exactly the one `run`
registers from that data (same training function, same configuration): the ``challenger``
alias, read back through models.registry. Each section then fits its baselines and peers
on the same history and scores every candidate on the horizon after the as-of date:

- products (:mod:`.products`): ``training.products.train_products``'s hybrid (ALS +
  item-item + buy-again, its blend weights tuned by ``training.tuning`` before the gate's
  validation window) against popularity, buy-again, item-item cosine, ALS and BPR, each
  peer tuned the same way with the same budget; NDCG@10 (± s.e.), Recall@10, MAP@10 and
  coverage over the members who bought in the horizon.
- churn (:mod:`.churn`): ``training.churn.train_churn``'s calibrated classifier against
  BG/NBD fitted on the same purchases; ROC AUC (± s.e.), PR AUC and Brier of P(no
  purchase in the horizon) over members with a purchase before the as-of date.
- send time (:mod:`.send_time`): ``training.send_time.train_send_time``'s hour against the
  global best hour and the member's own most frequent hour (anywhere, and within the
  allowed hours); hit rate within 1 h (± s.e.) of the first engagement in the horizon.
- coupons (:mod:`.coupons`): ``training.coupon.train_coupon``'s uplift policy against
  everyone, none, random and redemption propensity at the same budget; incremental net
  margin per offer (± s.e.) over giving none, by inverse propensity on the randomized
  offers in the horizon.

Every section module has the same shape, so a promotion gate can call it on its own
held-out data: ``candidates(...)`` builds the candidate list (the shipped model passed in,
plus the section's simple policies and peers fitted on the history given),
``score(candidates, held_out)`` returns {candidate: metrics} with the primary metric's
standard error as ``<metric>_se``, ``PRIMARY`` (products: ``primary(cfg)``) names the
metric compared, and ``section(ctx)`` is the backtest's composition of the two for a
:class:`~training.backtest.context.Context`. :func:`run_all` runs the four sections and
:mod:`.report` renders, plots and logs the result.
"""

from __future__ import annotations

import json
from typing import Any

from training.backtest import churn, coupons, products, send_time
from training.backtest.context import Context, NotCompared
from training.backtest.report import SECTIONS, log_to_mlflow, markdown, plots, wins

__all__ = [
    "Context",
    "NotCompared",
    "SECTIONS",
    "log_to_mlflow",
    "markdown",
    "plots",
    "run_all",
    "wins",
]


def run_all(ctx: Context) -> dict[str, Any]:
    """Every section on ``ctx``; returns what evaluation.json holds."""
    result: dict[str, Any] = {
        "dataset": ctx.dataset,
        "as_of": ctx.as_of.isoformat(),
        "horizon_days": ctx.horizon_days,
        "rows": {
            "visible": {k: int(len(v)) for k, v in ctx.visible.items()},
            "horizon": {k: int(len(v)) for k, v in ctx.future.items()},
        },
    }
    steps: list[tuple[str, str, Any, str]] = [
        ("products", "shipped vs popularity, buy-again, item cosine, ALS, BPR",
         products.section, products.primary(ctx.cfg)),
        ("churn", "shipped vs BG/NBD", churn.section, churn.PRIMARY),
        ("send_time", "shipped vs global best hour, member's own mode", send_time.section,
         send_time.PRIMARY),
        ("coupons", "shipped vs everyone, none, random, propensity", coupons.section,
         coupons.PRIMARY),
    ]  # fmt: skip
    for name, what, run, primary in steps:
        ctx.progress(f"backtest: {name.replace('_', ' ')} ({what})")
        try:
            sec = run(ctx)
        except NotCompared as exc:  # nothing to evaluate here: the other sections still run
            ctx.notes[name] = f"not compared: {exc}"
            ctx.progress(f"backtest: {name.replace('_', ' ')} not compared: {exc}")
            sec = None
        result[name] = {"primary": primary, **sec} if sec else None
    if "coupon_propensity" in ctx.notes:
        result["coupon_propensity"] = json.loads(ctx.notes.pop("coupon_propensity"))
    result["notes"] = ctx.notes
    result["wins"] = wins(result)
    return result
