"""Planning a campaign, composed in one place: the spec (a file or a request), its target
members (``features.campaign_targets``), the settings' defaults, the pure planner
(``models.campaign``) and the plan's files (``features.campaign_store``). The command line
(``memberwise campaign plan``), the API (``POST /v1/campaigns``) and the console call
:func:`plan_campaign`, so they can never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from features import campaign_store as store
from features.campaign_targets import target_members
from features.settings import MemberwiseSettings
from models.campaign import CampaignSpec, Defaults, plan, summary


def defaults(settings: MemberwiseSettings) -> Defaults:
    c = settings.campaigns
    return Defaults(
        holdout_share=c.holdout_share,
        exploration_share=c.exploration_share,
        frequency_cap=c.frequency_cap,
        quiet_hours=(c.quiet_start_hour, c.quiet_end_hour),
        send_hour=c.default_send_hour,
        window_days=c.window_days,
        abuse_threshold=settings.insight.abuse_threshold,
    )


def load_spec(path: Path) -> CampaignSpec:
    """A campaign file (YAML) -> the spec. Raises ValueError with every problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a campaign file is a mapping of fields (docs/campaigns.md)")
    try:
        return CampaignSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise ValueError(_problems(path, exc)) from None


def _problems(path: Path | str, exc: ValidationError) -> str:
    lines = [f"{path}: {len(exc.errors())} problem(s)"]
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(file)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def plan_campaign(
    settings: MemberwiseSettings,
    spec: CampaignSpec,
    seed: int = 0,
    targets: pd.DataFrame | None = None,
    save: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Plan ``spec`` over its segment's members (``targets``: given, else selected from the
    member table) and, with ``save``, write it under ``STATE_DIR/campaigns/NAME``.
    Returns the send list and its summary. Raises NoMembers, LookupError, RuleError."""
    if targets is None:
        seg = spec.segment or spec.predicate
        targets = target_members(settings, seg, saved=spec.segment is not None)
    sends = plan(targets, spec, defaults(settings), seed=seed,
                 prior=store.prior_sends(settings, exclude=spec.name))  # fmt: skip
    info = summary(sends, spec, targeted=len(targets)) | {"seed": seed}
    if save:
        store.write_plan(settings, spec.name, spec.model_dump_json(indent=2), sends, info)
    return sends, info


def load_plan(settings: MemberwiseSettings, name: str) -> tuple[CampaignSpec, pd.DataFrame, dict]:
    """A saved plan's spec, send list and summary. Raises LookupError for an unknown name."""
    spec, sends, info = store.load_plan(settings, name)
    return CampaignSpec.model_validate(spec), sends, info
