"""`memberwise run`: validate, tag, load Feast, train, evaluate, register, promote."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from features import repo
from features.levels import write_levels
from features.rules import LIVE_RULES, live_rules_path, load_rules
from features.settings import MemberwiseSettings
from features.tags import reference_instant
from models.registry import CHAMPION
from pipelines import erasure, steps
from pipelines.contract import TABLES
from pipelines.events import merge_event_log
from pipelines.home import Generation, building
from pipelines.ingest import DUPLICATE_LINE, ShopData, load_shop, write_quarantine
from pipelines.members import members_step
from pipelines.progress import silent, track
from pipelines.publish import publish_members
from training.churn import churn_labels, train_churn
from training.config import TrainConfig
from training.coupon import offer_outcomes, train_coupon
from training.gate import format_table
from training.products import train_products
from training.registry import alias_moves, log_and_register, setup_tracking
from training.result import TrainResult
from training.send_time import train_send_time
from training.similar import train_similar

Progress = Callable[[str], None]


def _ts(d: date) -> pd.Timestamp:
    return pd.Timestamp(d, tz="UTC")


def run_pipeline(
    data_dir: Path,
    as_of: date,
    settings: MemberwiseSettings,
    cfg: TrainConfig | None = None,
    progress: Progress = silent,
    tags_file: Path | None = None,
    wait: bool = False,
) -> dict[str, Any]:
    """Run every step into ``settings.home``; returns the run report (also written as JSON).
    ``progress`` hears what each step is doing (pipelines.progress; silent by default).
    ``tags_file``: a tag rules file to tag with, copied into the home as the rules in force
    (features.rules.live_rules_path); raises features.rules.RulesInvalid before anything
    is written when it has problems.

    The run is atomic (pipelines.home): it builds a new generation of the home under the
    home's lock and commits tags, online store, member table, ``latest_run.json`` and the
    champion aliases together at the end; a run that fails leaves the previous run serving.
    A second run into the same home raises pipelines.home.RunInProgress, or waits for the
    first with ``wait``.

    Every model is configured from ``settings`` (its ``products``, ``churn``, ``coupon`` and
    ``send_time`` sections); ``cfg`` replaces its ``training`` section when given.

    Raises pipelines.ingest.ContractError before anything is written when a required
    table or column is missing.
    """
    cfg = cfg or settings.training
    if tags_file is not None:
        load_rules(tags_file)  # raises RulesInvalid, listing every problem, before any write
    progress(f"reading {data_dir} as of {as_of}")
    shop = load_shop(data_dir, as_of, settings.ingest, progress=progress)  # raises before any write
    add_campaign_offers(shop, settings)
    with building(settings, wait=wait) as gen:
        report = build(shop, data_dir, as_of, gen, cfg, progress, tags_file)
    # the member store the segment queries, exports and console read (features.member_store;
    # DuckDB under the state folder or the PostgreSQL every replica shares): loaded from the
    # member table just committed, swapped in as a whole
    progress("loading the member table into the member store")
    report["member_store_rows"] = publish_members(settings)
    return report


def build(
    shop: ShopData,
    data_dir: Path,
    as_of: date,
    gen: Generation,
    cfg: TrainConfig,
    progress: Progress = silent,
    tags_file: Path | None = None,
) -> dict[str, Any]:
    """The steps of a run, writing into the generation ``gen`` (see :func:`run_pipeline`)."""
    settings = gen.settings
    home = settings.home_dir
    if tags_file is not None:
        shutil.copyfile(tags_file, home / LIVE_RULES)
    rules = load_rules(live_rules_path(settings))
    progress(f"tag rules {live_rules_path(settings)} (version {rules.version})")
    logged = merge_event_log(shop, settings)
    if logged["order_lines"] or logged["events"]:
        progress(f"  from the API's event log: {logged['order_lines']:,} order line(s), "
                 f"{logged['events']:,} event(s)")  # fmt: skip
    erased = erasure.drop_erased(shop, settings)
    if erased["members"]:
        progress(f"  {erased['members']:,} erased member(s): their rows are left out")
    write_quarantine(shop, settings.quarantine_dir, settings.reports_dir)
    notes = shop_notes(shop)
    for name, rep in shop.report.items():
        progress(f"  {name:<14} kept {rep.kept:>9,}  quarantined {rep.quarantined:>7,}  "
                 f"after as-of {rep.after_as_of:>7,}")  # fmt: skip

    dates = steps.snapshot_dates(shop, cfg)
    all_dates = [d for ds in dates.values() for d in ds]
    progress(f"computing member tags at {len(set(all_dates))} snapshot date(s)")
    frames = steps.write_snapshots(shop, all_dates, settings, progress=progress)
    tags_now = frames[as_of]
    progress(f"  {len(tags_now):,} members tagged as of {as_of}")
    levels = write_levels(settings, shop.tables, tags_now["member_id"], as_of)
    progress(f"  levels: {levels['level'].value_counts().to_dict()}")

    erased["snapshot_rows"] = erasure.scrub_snapshots(settings)
    progress("applying the Feast repo")
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints colour codes to stdout
        store = steps.apply_repo(settings)

    cutoff = pd.Timestamp(reference_instant(as_of))
    segments = dict(zip(tags_now["member_id"], tags_now["rfm_segment"], strict=False))
    trainers: list[tuple[str, Callable[[], TrainResult]]] = [
        ("products (every simple policy, the hybrid at its defaults and tuned)",
         lambda: train_products(shop.tables["order_lines"], cutoff, cfg, settings.products,
                                settings.gate, steps.member_countries(shop),
                                steps.product_categories(shop))),
        (f"churn (label: no purchase within {cfg.horizon_days} days)",
         lambda: train_churn(churn_training_frame(shop, store, frames, dates["churn_cutoff"], cfg),
                             repo.CHURN_FEATURES, cfg, settings.churn, history=tags_now,
                             gate=settings.gate)),
        ("coupon policy (uplift per coupon vs control, net of cost)",
         lambda: _train_coupon(shop, store, cutoff, cfg, settings)),
        ("similar products (bought together, against raw co-occurrence counts)",
         lambda: train_similar(shop.tables["order_lines"], cutoff, cfg.validation_days, cfg.top_k,
                               settings.products.similar_neighbours, settings.gate.z)),
        ("send time (hour of week per member and channel)",
         lambda: train_send_time(steps.engagements(shop), steps.member_timezones(shop),
                                 segments, cutoff, cfg, settings.send_time, settings.gate)),
    ]  # fmt: skip
    results: list[TrainResult] = []
    threads = cfg.openmp_threads or None  # None: threadpoolctl leaves every core
    with threadpool_limits(limits=threads, user_api="openmp"):
        for label, train in track(progress, trainers, "models trained"):
            progress(f"training {label}")
            results.append(train())

    progress("logging to MLflow and moving the champion aliases")
    with warnings.catch_warnings():
        # Feast turns DeprecationWarnings on for the whole process when imported; MLflow's
        # SQL store then shows SQLAlchemy's notice about a loader MLflow itself uses
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")
        setup_tracking(settings.tracking_uri, settings.artifact_root)
        regs = [
            log_and_register(
                r,
                as_of.isoformat(),
                {"data": str(data_dir), "tag_version": rules.version},
                aliases=False,
            )  # fmt: skip
            for r in track(progress, results, "models registered")
        ]
    for reg in regs:
        gen.stage_aliases(alias_moves(reg))
    progress("writing the member table")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")
        # the champions this run staged: the aliases only move when the generation commits
        staged = {name: version for name, alias, version in gen.aliases if alias == CHAMPION}
        member_path = members_step(settings, shop, tags_now, as_of, progress, staged)

    progress("materializing the tags to the online store")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Feast's offline read goes through dask, which warns of a pandas change of its own
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask\.")
        steps.materialize(store, as_of)
    erased["online_members"] = erasure.scrub_online(settings, store)
    report = {
        "as_of": as_of.isoformat(),
        "tag_version": rules.version,
        "member_table": str(member_path),
        "data": str(data_dir),
        "home": str(home),
        "ingest": {**shop.report_dict(), "erased": erased, "event_log": logged},
        "snapshots": {k: [d.isoformat() for d in v] for k, v in dates.items()},
        "members": len(tags_now),
        "notes": notes,
        "models": {
            r.name: {
                **asdict(r),
                "notes": res.notes,
                "policies": res.policies,
                "gate": None
                if res.selection is None
                else {
                    "champion": res.selection.champion,
                    "reason": res.selection.reason,
                    "units": res.selection.n_units,
                    "table": res.selection.as_records(),
                },
            }
            for r, res in zip(regs, results, strict=True)
        },
    }
    path = settings.reports_dir / as_of.isoformat() / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    gen.path("latest_run.json").write_text(
        json.dumps({"as_of": as_of.isoformat(), "report": str(path.relative_to(home))})
    )
    for r, res in zip(regs, results, strict=True):
        s = r.metrics.get("shipped", {}).get(res.primary)
        b = r.metrics.get("baseline", {}).get(res.primary)
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        policy = res.policies.get("shipped" if r.champion_role == "model" else "baseline", "")
        progress(f"  {r.name:<10} {res.primary:<20} model {fmt(s):>8}  baseline {fmt(b):>8}  "
                 f"-> champion: {r.champion_role} {policy} v{r.champion_version}")  # fmt: skip
        if res.selection is not None:
            progress(
                f"    gate on {res.selection.n_units:,} held-out units: {res.selection.reason}"
            )
            for line in format_table(res.selection, res.primary).splitlines():
                progress(line)
        for note in res.notes:
            progress(f"    note: {note}")
    for note in notes:
        progress(f"  note: {note}")
    progress(f"report: {path}")
    return report


def shop_notes(shop: ShopData) -> list[str]:
    """What this shop's data leaves out or changes, in words for the run report: optional
    tables absent, duplicate lines, order lines without product detail, members whose
    history is a single order. (Each model adds its own notes on what it skipped.)"""
    notes: list[str] = []
    absent = [n for n, t in TABLES.items() if not t.required and n not in shop.tables]
    if absent:
        notes.append("optional table(s) absent, their signals are left out: " + ", ".join(absent))
    rep = shop.report["order_lines"]
    if rep.duplicates:
        dropped = rep.reasons.get(DUPLICATE_LINE, 0)
        notes.append(
            f"{rep.duplicates:,} exact duplicate order line(s): "
            + (f"{dropped:,} quarantined (ingest.duplicate_lines=drop)" if dropped
               else "kept (ingest.duplicate_lines=keep)")
        )  # fmt: skip
    ol = shop.tables["order_lines"]
    no_product = int(ol["product_id"].isna().sum())
    if no_product:
        notes.append(f"{no_product:,} of {len(ol):,} order lines have no product_id (spend only)")
    orders = ol.loc[ol["quantity"] > 0].groupby("member_id")["order_id"].nunique()
    if len(orders) and (orders <= 1).all():
        notes.append("every member has a single order: no repeat purchase to learn from")
    return notes


def churn_training_frame(
    shop, store, frames: dict[date, pd.DataFrame], cutoffs: list[date], cfg: TrainConfig
) -> pd.DataFrame:
    """One row per member with a purchase before each cutoff: member_id, cutoff, the churn
    features at that cutoff (point-in-time, from the Feast offline store) and ``churned``
    (no purchase in the ``horizon_days`` after it). Cutoffs whose members all share one
    label are still kept; ``train_churn`` decides what it can learn."""
    ents = []
    for cutoff in sorted(set(cutoffs)):
        base = frames[cutoff]
        ids = base.loc[base["frequency"] > 0, "member_id"].astype(str)
        ents.append(pd.DataFrame({"member_id": ids, "event_timestamp": _ts(cutoff),
                                  "cutoff": cutoff.isoformat()}))  # fmt: skip
    ent = pd.concat(ents, ignore_index=True) if ents else pd.DataFrame()
    if ent.empty:
        return pd.DataFrame(columns=["member_id", "cutoff", *repo.CHURN_FEATURES, "churned"])
    feats = steps.historical(store, repo.CHURN_SERVICE, ent)  # one point-in-time join
    purchases = steps.purchases(shop)
    feats["churned"] = 0
    for cutoff, idx in feats.groupby("cutoff").groups.items():
        ref = pd.Timestamp(reference_instant(date.fromisoformat(cutoff)))
        feats.loc[idx, "churned"] = churn_labels(
            feats.loc[idx, "member_id"], purchases, ref, cfg.horizon_days
        ).to_numpy()
    return feats.sort_values(["cutoff", "member_id"]).reset_index(drop=True)


def coupon_training_frame(shop, store, cutoff: pd.Timestamp, cfg: TrainConfig) -> pd.DataFrame:
    """One row per past offer whose response window ended before ``cutoff``: member_id,
    arm ('' = control), net_margin, cost (the discounts in net_margin), redeemed (bool) and
    the member's coupon features the day before the offer (point-in-time, from the Feast
    offline store)."""
    offers = shop.get("coupon_offers")
    features = repo.COUPON_FEATURES
    empty = pd.DataFrame(
        columns=["member_id", "campaign_id", "arm", "net_margin", "cost", "redeemed", *features]
    )
    if offers is None or offers.empty:
        return empty
    out = offer_outcomes(offers, shop.tables["order_lines"], steps.margin_rates(shop), cfg, cutoff,
                         steps.offer_costs(shop))  # fmt: skip
    if out.empty:
        return empty
    ent = pd.DataFrame({
        "member_id": out["member_id"].astype(str),
        "event_timestamp": (out["offered_ts"] - pd.Timedelta(days=1)).dt.tz_localize("UTC"),
        "_row": range(len(out)),
    })  # fmt: skip
    feats = steps.historical(store, repo.COUPON_SERVICE, ent)
    feats = feats.sort_values("_row").reset_index(drop=True)
    out = out.reset_index(drop=True)
    redeemed = (
        out["redeemed_ts"].notna() if "redeemed_ts" in out else pd.Series(False, index=out.index)
    )
    return pd.concat(
        [out[["member_id", "campaign_id", "arm", "net_margin", "cost"]].assign(
            redeemed=redeemed.to_numpy()),
         feats[features].astype(float)], axis=1,
    )  # fmt: skip


def _train_coupon(
    shop, store, cutoff: pd.Timestamp, cfg: TrainConfig, settings: MemberwiseSettings
) -> TrainResult:
    frame = coupon_training_frame(shop, store, cutoff, cfg)
    return train_coupon(frame, repo.COUPON_FEATURES, cfg, settings.coupon, settings.gate)


def add_campaign_offers(shop: ShopData, settings: MemberwiseSettings) -> None:
    """Campaigns planned here (STATE_DIR/campaigns) become coupon-offer history, holdout
    included, so the coupon model learns from the shop's own experiments."""
    from features.campaign_store import logged_offers, with_campaign_offers

    merged = with_campaign_offers(shop.get("coupon_offers"), logged_offers(settings), shop.cutoff)
    if merged is not None:
        shop.tables["coupon_offers"] = merged
