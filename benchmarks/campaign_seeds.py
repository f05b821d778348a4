"""Does the campaign report recover the planted lift? The loop over many seeds.

Usage:
    python benchmarks/campaign_seeds.py [--seeds 20] [--members 3000] [--holdout 0.3]
        [--noise 1.0] [--out docs/evaluation/campaign_seeds.json]

For each seed: generate a synthetic shop, plan a campaign offering its four coupons
(targets: the planted per-offer margins plus Gaussian noise of sd ``--noise``, standing for
an imperfect uplift model; a budget that binds), let the shop answer the plan
(``pipelines.respond``, what ``memberwise generate --respond-to`` runs) and measure it
(``training.campaign_report.estimate``). Prints, per offer, in how many seeds the measured
conversion lift's interval covers the planted lift (offers with fewer than 20 held-out
members in a seed are not counted), and the off-policy value of "nobody" against the
planted base rate. Writes every seed's numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from features.settings import MemberwiseSettings
from models.campaign import CampaignSpec, plan
from pipelines.respond import planted_targets, respond
from pipelines.synthetic import generate
from serving.campaign_plans import defaults
from training.campaign_report import estimate, outcomes

COUPONS = ("PCT10", "PCT20", "AMT5", "FREESHIP")


def one_seed(seed: int, members: int, holdout: float, noise: float, work: Path) -> dict:
    shop = work / f"shop-{seed}"
    generate(shop, members=members, seed=seed)
    spec = CampaignSpec(name=f"bench-{seed}", offers=[{"coupon_id": c, "cost": 1.0} for c in COUPONS],
                        budget=members * 0.25, start=date(2026, 1, 2), holdout_share=holdout)  # fmt: skip
    targets = planted_targets(shop, noise=noise, seed=seed)
    sends = plan(targets, spec, defaults(MemberwiseSettings(home=work / "home")), seed=seed)
    respond(shop, sends, seed=seed)
    truth = pd.read_parquet(shop / "truth" / f"campaign_{spec.name}.parquet")
    report = estimate(outcomes(shop, sends), 0.95, truth)
    shutil.rmtree(shop)
    nobody = report["policies"]["nobody"]["converted"]
    return {
        "seed": seed,
        "spent": float(sends["expected_cost"].sum()), "budget": spec.budget,
        "offers": {o: {"n_treated": r["n_treated"], "n_control": r["n_control"],
                       "lift": r["converted"]["lift"], "low": r["converted"]["low"],
                       "high": r["converted"]["high"], "planted": r.get("planted"),
                       "covered": r.get("covered")} for o, r in report["offers"].items()},
        "nobody": {"dr": nobody["dr"], "se": nobody["dr_se"], "planted": float(truth["p0"].mean())},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--members", type=int, default=3000)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=Path("docs/evaluation/campaign_seeds.json"))
    a = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.seeds):
            rows.append(one_seed(seed, a.members, a.holdout, a.noise, Path(tmp)))
            print(f"seed {seed:>3}: " + "  ".join(
                f"{o} {'ok' if r['covered'] else ('--' if r['covered'] is None else 'MISS')}"
                for o, r in rows[-1]["offers"].items()), flush=True)  # fmt: skip
    print(f"\n{a.seeds} seeds x {a.members:,} members, holdout {a.holdout:.0%}, "
          f"score noise sd {a.noise} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(f"{'offer':<10} {'measured':>9} {'covered':>8}  mean |lift - planted|")
    for o in COUPONS:
        ok = [r["offers"][o] for r in rows if r["offers"][o]["n_control"] >= 20]
        cov = sum(bool(x["covered"]) for x in ok)
        err = sum(abs(x["lift"] - x["planted"]) for x in ok) / max(len(ok), 1)
        print(f"{o:<10} {len(ok):>9} {cov:>8}  {err:.3f}")
    within = sum(abs(r["nobody"]["dr"] - r["nobody"]["planted"]) <= 1.96 * r["nobody"]["se"]
                 for r in rows)  # fmt: skip
    print(f"nobody (off-policy DR) within 1.96 se of the planted base rate: {within}/{a.seeds}")
    print(f"budget never exceeded: {all(r['spent'] <= r['budget'] + 1e-6 for r in rows)}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "seeds": rows},
                                indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
