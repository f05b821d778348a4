"""Where campaigns live: ``STATE_DIR/campaigns/NAME/`` holds the spec (``spec.json``), the
send list (``sends.parquet`` and ``sends.csv``, one row per target member with its decision
id and propensities), the plan's summary and, once measured, ``report.json`` /
``report.png``. Feedback events (impressions, clicks, redemptions by decision id) are
appended to ``STATE_DIR/campaigns/feedback.jsonl``.

Files only: planning itself (``serving.campaign_plans.plan_campaign``) composes the member
selection (``features.campaign_targets``), the pure planner (``models.campaign``) and these
files; the command line, the API and the console all call it, so they cannot disagree.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features import decision_ids
from features.settings import MemberwiseSettings

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FEEDBACK_KINDS = ("impression", "click", "redemption")


def campaigns_dir(settings: MemberwiseSettings) -> Path:
    return settings.state_dir / "campaigns"


def plan_dir(settings: MemberwiseSettings, name: str) -> Path:
    """The campaign's folder. Raises LookupError for a name a campaign cannot have."""
    if not NAME.fullmatch(name):
        raise LookupError(f"no campaign named {name!r}")
    return campaigns_dir(settings) / name


def prior_sends(settings: MemberwiseSettings, exclude: str | None = None) -> pd.DataFrame:
    """Messages other saved campaigns send (member_id, send_at_utc): the frequency cap
    counts them."""
    frames = []
    root = campaigns_dir(settings)
    for p in sorted(root.glob("*/sends.parquet")) if root.exists() else []:
        if p.parent.name == exclude:
            continue
        s = pd.read_parquet(p, columns=["member_id", "send_at_utc", "channel"])
        frames.append(s.loc[s["channel"].notna(), ["member_id", "send_at_utc"]])
    if not frames:
        return pd.DataFrame({"member_id": [], "send_at_utc": pd.to_datetime([])})
    return pd.concat(frames, ignore_index=True)


def write_plan(
    settings: MemberwiseSettings, name: str, spec_json: str, sends: pd.DataFrame, info: Mapping
) -> Path:
    """Write a plan: ``spec_json`` (the spec as JSON), the send list, its summary."""
    d = plan_dir(settings, name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(spec_json)
    sends.to_parquet(d / "sends.parquet", index=False)
    sends.to_csv(d / "sends.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    (d / "summary.json").write_text(json.dumps(dict(info), indent=2, sort_keys=True))
    (d / "report.json").unlink(missing_ok=True)  # a new plan is not yet measured
    return d


def list_campaigns(settings: MemberwiseSettings) -> list[dict[str, Any]]:
    root = campaigns_dir(settings)
    out = []
    for p in sorted(root.glob("*/summary.json")) if root.exists() else []:
        info = json.loads(p.read_text())
        info["measured"] = (p.parent / "report.json").exists()
        out.append(info)
    return out


def load_plan(settings: MemberwiseSettings, name: str) -> tuple[dict, pd.DataFrame, dict]:
    """A saved plan's spec (as written), send list and summary. Raises LookupError for an
    unknown name."""
    d = plan_dir(settings, name)
    if not (d / "sends.parquet").is_file():
        raise LookupError(f"no campaign named {name!r}")
    spec = json.loads((d / "spec.json").read_text())
    return spec, pd.read_parquet(d / "sends.parquet"), json.loads((d / "summary.json").read_text())


def load_report(settings: MemberwiseSettings, name: str) -> dict[str, Any] | None:
    p = plan_dir(settings, name) / "report.json"
    return json.loads(p.read_text()) if p.is_file() else None


def known_decisions(settings: MemberwiseSettings) -> set[str]:
    root = campaigns_dir(settings)
    ids: set[str] = set()
    for p in sorted(root.glob("*/sends.parquet")) if root.exists() else []:
        ids.update(pd.read_parquet(p, columns=["decision_id"])["decision_id"].astype(str))
    return ids


def record_feedback(settings: MemberwiseSettings, events: Iterable[Mapping[str, Any]]) -> int:
    """Append feedback events ({decision_id, kind, ts}) to ``feedback.jsonl`` under a file
    lock. A decision id is a campaign send list's or one the member decision API signed
    (features.decision_ids; the member, coupon and model versions it names are kept with the
    event). Raises LookupError naming the first unknown decision id (nothing is written)."""
    rows = [dict(e) for e in events]
    known: set[str] | None = None
    for e in rows:
        api = decision_ids.verify(settings, str(e["decision_id"]))
        if api is not None:  # an answer of the member decision API: what it decided, kept
            e.update(source="api", member_id=api["member_id"], coupon_id=api["coupon_id"],
                     decided_at=api["at"], versions=api["versions"])  # fmt: skip
            continue
        known = known_decisions(settings) if known is None else known
        if str(e["decision_id"]) not in known:
            raise LookupError(f"unknown decision_id {e['decision_id']!r}")
        e["source"] = "campaign"
    path = campaigns_dir(settings) / "feedback.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    with path.open("a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for e in rows:
            f.write(json.dumps({**e, "received": now}, default=str) + "\n")
        f.flush()
    return len(rows)


def feedback(settings: MemberwiseSettings) -> pd.DataFrame:
    """Every feedback event received: decision_id, kind, ts, received."""
    path = campaigns_dir(settings) / "feedback.jsonl"
    if not path.exists():
        return pd.DataFrame(columns=["decision_id", "kind", "ts", "received"])
    return pd.read_json(path, lines=True, dtype={"decision_id": str})


def logged_offers(settings: MemberwiseSettings) -> pd.DataFrame:
    """Every saved campaign's offers as ``coupon_offers`` rows (docs/data-format.md):
    treated members with their coupon, holdout members with a null coupon (the control the
    coupon model learns from). Exploration and policy offers alike; messages-only
    campaigns are not coupon offers and are left out."""
    frames = []
    root = campaigns_dir(settings)
    for p in sorted(root.glob("*/sends.parquet")) if root.exists() else []:
        s = pd.read_parquet(p)
        s = s.loc[(s["coupon_id"].notna()) | (s["arm"] == "holdout")]
        s = s.loc[~s["action"].eq("message")]
        frames.append(pd.DataFrame({
            "member_id": s["member_id"].astype(str), "campaign_id": s["campaign"].astype(str),
            "offered_ts": pd.to_datetime(s["send_at_utc"]), "coupon_id": s["coupon_id"],
            "redeemed_ts": pd.NaT,
        }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=["member_id", "campaign_id", "offered_ts", "coupon_id",
                                     "redeemed_ts"])  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def with_campaign_offers(
    offers: pd.DataFrame | None, logged: pd.DataFrame, cutoff: pd.Timestamp
) -> pd.DataFrame | None:
    """The shop's ``coupon_offers`` with the campaigns' logged offers added: those made
    before ``cutoff`` that the shop's own table does not already hold (same member and
    campaign). The next training so learns from the campaigns, controls included."""
    logged = logged.loc[pd.to_datetime(logged["offered_ts"]) < cutoff]
    if logged.empty:
        return offers
    if offers is None or offers.empty:
        return logged.reset_index(drop=True)
    seen = pd.MultiIndex.from_frame(offers[["member_id", "campaign_id"]].astype(str))
    key = pd.MultiIndex.from_frame(logged[["member_id", "campaign_id"]].astype(str))
    new = logged.loc[~key.isin(seen)].reindex(columns=offers.columns)
    if new.empty:
        return offers
    new = new.astype(offers.dtypes.to_dict())
    return pd.concat([offers, new], ignore_index=True)
