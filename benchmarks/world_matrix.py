"""Backtest every preset synthetic world and collect the results in one table.

Usage:
    python benchmarks/world_matrix.py [--worlds a,b] [--members 6000] [--seed 7]
        [--as-of 2025-09-30] [--horizon-days 90] [--data eval-data/worlds]
        [--out docs/evaluation/matrix] [--table-only]

For each world (default: every preset of ``pipelines.synthetic.WORLDS``) it runs
``memberwise generate --world NAME`` into DATA/NAME (``--members`` unless the world fixes its
own size, as ``small_shop`` does) and ``memberwise evaluate`` into OUT/NAME, records what it
ran and how long it took in OUT/NAME/world.json, and rewrites OUT/README.md after each world
from every OUT/*/evaluation.json found. ``--table-only`` just rewrites the table.

The coupon columns add the planted ceiling: on the same offers, the planted expected
incremental margin per offer of the oracle (each offer made only where the member's planted
effect of that campaign's coupon is positive), beside the shipped policy's and everyone's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.synthetic import WORLDS  # noqa: E402

CLI = str(REPO / ".venv" / "bin" / "memberwise")


def _run(cmd: list[str]) -> float:
    print("+ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def run_world(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Generate world ``name`` and backtest it; returns what world.json records."""
    w = WORLDS[name]
    data, out = Path(args.data) / name, Path(args.out) / name
    members = w.size(None if w.members else args.members)
    gen = [CLI, "generate", "--world", name, "--members", str(members), "--seed",
           str(args.seed), "--out", str(data)]  # fmt: skip
    ev = [CLI, "evaluate", "--data", str(data), "--as-of", args.as_of, "--horizon-days",
          str(args.horizon_days), "--out", str(out)]  # fmt: skip
    record = {
        "world": w.knobs(),
        "members": members,
        "seed": args.seed,
        "as_of": args.as_of,
        "horizon_days": args.horizon_days,
        "data": str(data),
        "seconds": {"generate": round(_run(gen), 1), "evaluate": round(_run(ev), 1)},
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "world.json").write_text(json.dumps(record, indent=2))
    return record


def planted_ceiling(data: Path, result: dict[str, Any]) -> dict[str, float] | None:
    """Planted expected incremental margin per offer on the backtest's coupon offers: the
    oracle (offer only where the planted effect is positive), everyone, and how many offers."""
    sec = result.get("coupons")
    truth = data / "truth" / "coupon_effects.parquet"
    if not sec or not truth.exists():
        return None
    offers = pd.read_parquet(data / "coupon_offers.parquet")
    offers = offers[offers["campaign_id"].isin(sec["campaigns"])]
    coupon = offers.groupby("campaign_id")["coupon_id"].agg(lambda s: s.dropna().iloc[0])
    fx = pd.read_parquet(truth, columns=["member_id", "coupon_id", "expected_incremental_margin"])
    effect = fx.set_index(["member_id", "coupon_id"])["expected_incremental_margin"]
    keys = pd.MultiIndex.from_arrays([offers["member_id"], offers["campaign_id"].map(coupon)])
    planted = effect.reindex(keys).fillna(0.0).to_numpy(float)
    return {
        "oracle": float(np.mean(np.maximum(planted, 0.0))),
        "everyone": float(np.mean(planted)),
        "offers": len(planted),
    }


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _best_peer(sec: dict[str, Any], metric: str) -> tuple[str, float]:
    name, m = max(sec["baselines"].items(), key=lambda kv: kv[1].get(metric, -np.inf))
    return name, m[metric]


GATE_SECTIONS = ("products", "churn", "coupons", "send_time")


def _gate_cell(sec: dict[str, Any] | None) -> str:
    """``champion est ± se (best rule est; within 1 se: yes/no)`` from a section's gate table."""
    gate = (sec or {}).get("gate")
    table = (gate or {}).get("rows") or (gate or {}).get("table")
    if not table:
        return "not compared"
    rows = {r["name"]: r for r in table}
    champ = rows.get(gate["champion"])
    rules = [r for r in table if r["role"] != "model" and r["estimate"] == r["estimate"]]
    if champ is None:
        return str(gate["champion"])
    best = max(rules, key=lambda r: r["estimate"]) if rules else champ
    # one standard error of the best rule's estimate (the noise a user would face choosing it)
    ok = champ["estimate"] >= best["estimate"] - max(best["se"], champ["se"])
    return (f"{gate['champion']} {_f(champ['estimate'], 4)} ± {_f(champ['se'], 4)} "
            f"(best rule {best['name']} {_f(best['estimate'], 4)}; {'yes' if ok else 'no'})")  # fmt: skip


def table(out_root: Path) -> str:
    """The combined Markdown table of every OUT/*/evaluation.json."""
    rows_main, rows_coupon, rows_gate, missing = [], [], [], []
    for name in WORLDS:
        path = out_root / name / "evaluation.json"
        if not path.exists():
            missing.append(name)
            continue
        r = json.loads(path.read_text())
        meta_path = out_root / name / "world.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        p, c, s = r.get("products"), r.get("churn"), r.get("send_time")
        prod = "not computed"
        if p:
            peer, v = _best_peer(p, "ndcg@10")
            prod = f"{_f(p['shipped']['ndcg@10'], 4)} / {_f(v, 4)} ({peer})"
        churn = "not computed"
        if c:
            churn = (f"{_f(c['shipped']['roc_auc'], 4)} / "
                     f"{_f(c['baselines']['bg_nbd']['roc_auc'], 4)}")  # fmt: skip
        send = "not computed"
        if s:
            b = s["baselines"]
            send = (f"{_f(s['shipped']['hit_rate_1h'], 4)} / "
                    f"{_f(b['member_most_frequent_hour']['hit_rate_1h'], 4)} / "
                    f"{_f(b['global_hour']['hit_rate_1h'], 4)}")  # fmt: skip
        rows_gate.append(
            "| " + " | ".join([name] + [_gate_cell(r.get(k)) for k in GATE_SECTIONS]) + " |"
        )
        secs = meta.get("seconds", {})
        took = f"{secs.get('generate', 0) + secs.get('evaluate', 0):.0f} s" if secs else "–"
        rows_main.append(f"| {name} | {meta.get('members', '–')} | {prod} | {churn} | {send} "
                         f"| {took} |")  # fmt: skip
        cp = r.get("coupons")
        if not cp:
            note = r.get("notes", {}).get("coupons", "no data")
            rows_coupon.append(f"| {name} | not computed: {note} |||||")
            continue
        sh, bl = cp["shipped"], cp["baselines"]
        everyone = max((m["incremental_margin"] for n, m in bl.items() if n.startswith("everyone:")),
                       default=None)  # the best coupon given to everyone  # fmt: skip
        ceiling = planted_ceiling(Path(meta["data"]), r) if meta.get("data") else None
        planted = (f"{_f(sh.get('planted_margin'))} / {_f(ceiling['everyone'])} / "
                   f"{_f(ceiling['oracle'])}") if ceiling else "–"  # fmt: skip
        rows_coupon.append(
            f"| {name} | {cp['offers']:,} | {_f(sh['incremental_margin'])} ± "
            f"{_f(sh['incremental_margin_se'])} | {_f(everyone)} / "
            f"{_f(bl['random']['incremental_margin'])} / "
            f"{_f(bl.get('propensity', {}).get('incremental_margin'))} | "
            f"{_f(sh['share_offered'], 2)} | {planted} |"
        )
    lines = [
        "# The matrix of synthetic worlds",
        "",
        "Each preset world of `pipelines.synthetic.WORLDS` (`memberwise generate --list-worlds`),"
        " generated and backtested by `make evaluate-matrix`"
        " (`benchmarks/world_matrix.py`); every figure comes from `WORLD/evaluation.json`.",
        "",
        "| world | what is planted |",
        "| --- | --- |",
        *[f"| {n} | {w.description} |" for n, w in WORLDS.items()],
        "",
        "| world | members | products NDCG@10: shipped / best peer | churn ROC AUC: shipped / "
        "BG/NBD | send time hit rate: shipped / member mode / global | generate + evaluate |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows_main,
        "",
        "Coupons: incremental margin per offer on the randomized campaign(s) inside the horizon "
        "(inverse-propensity value against the control group), and the planted expected "
        "incremental margin per offer of the shipped policy, of offering to everyone and of the "
        "oracle that offers only where the planted effect is positive.",
        "",
        "| world | offers | shipped | everyone (best coupon) / random / propensity | share offered | "
        "planted: shipped / everyone / oracle |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows_coupon,
        "",
        "The promotion gate on the horizon (training/gate.py over the candidates `memberwise run` "
        "compares, simplest first; a more complex policy wins only when the lower bound of its "
        "paired advantage is above zero): the champion, its estimate ± s.e., and the best simple "
        "rule's estimate. The champion is at least the best simple rule minus one standard error "
        "(the larger of the two estimates' standard errors) when the cell ends in yes.",
        "",
        "| world | products | churn | coupons | send time |",
        "| --- | --- | --- | --- | --- |",
        *rows_gate,
    ]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", default=",".join(WORLDS), help="comma-separated preset names")
    ap.add_argument("--members", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--as-of", default="2025-09-30")
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--data", default="eval-data/worlds")
    ap.add_argument("--out", default="docs/evaluation/matrix")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    names = [n.strip() for n in args.worlds.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        ap.error(f"unknown world(s) {', '.join(unknown)}; the presets are: {', '.join(WORLDS)}")
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for name in names:
            record = run_world(name, args)
            print(f"{name}: {record['seconds']}", flush=True)
            (out_root / "README.md").write_text(table(out_root))
    (out_root / "README.md").write_text(table(out_root))
    print(f"wrote {out_root / 'README.md'}")


if __name__ == "__main__":
    main()
