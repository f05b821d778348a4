"""The closed vocabularies of the API, as enums built from the one place each is defined
(``features.tags``, the tag rules files, the configuration's value tier names, the models'
constants), so the
OpenAPI schema lists the allowed values and an unknown one in a request is a 422 naming
them.

Value tier names and message channels are configurable (``MEMBERWISE_TAGS__VALUE_TIER_NAMES``,
``MEMBERWISE_SEND_TIME__MESSAGE_CHANNELS``): they are read from the configuration when this
module is first imported, i.e. when the app starts.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum

from features.rules import DEFAULT_RULES, RulesInvalid, live_rules_path, load_rules, tag_names
from features.settings import get_settings
from features.tags import LIFECYCLE_STAGES, RFM_SEGMENTS
from models.decision import BASELINE, MODEL, PARTS, RULES
from models.products import BUY_AGAIN, POPULAR, POPULAR_IN_SEGMENT, SIMILAR_MEMBERS
from models.send_time import GLOBAL, MEMBER, SEGMENT

NO_PURCHASE = "no_purchase"  # the RFM segment of a member without a purchase (features.tags)


def _values(*names: str) -> dict[str, str]:
    return {n: n for n in dict.fromkeys(names)}


def rule_tag_names() -> list[str]:
    """The tags members can carry: the default rules' and those of the rules file in force
    for the configured home (``memberwise run --tags FILE``), custom names included."""
    names = tag_names(load_rules(DEFAULT_RULES))
    with contextlib.suppress(OSError, RulesInvalid):  # a broken live file: the run refused it
        names += tag_names(load_rules(live_rules_path(get_settings())))
    return list(dict.fromkeys(names))


Tag = StrEnum("Tag", _values(*rule_tag_names()))  # type: ignore[misc]
Tag.__doc__ = "A rule tag (true for the member as of the snapshot)."

LifecycleStage = StrEnum("LifecycleStage", _values(*LIFECYCLE_STAGES))  # type: ignore[misc]
LifecycleStage.__doc__ = "Where the member is in their life with the shop (first rule wins)."

RfmSegment = StrEnum(  # type: ignore[misc]
    "RfmSegment", _values(*(name for name, _, _ in RFM_SEGMENTS), NO_PURCHASE)
)
RfmSegment.__doc__ = "The classic RFM grid on recency and frequency scores."

ValueTier = StrEnum("ValueTier", _values(*get_settings().tags.value_tier_names))  # type: ignore[misc]
ValueTier.__doc__ = "A pyramid on total spend, top tier first (configured tier names)."

Channel = StrEnum("Channel", _values(*get_settings().send_time.message_channels))  # type: ignore[misc]
Channel.__doc__ = "A message channel (the configured send_time.message_channels)."

Role = StrEnum("Role", _values(MODEL, BASELINE, RULES))  # type: ignore[misc]
Role.__doc__ = (
    "model: the trained model is the champion; baseline: it did not beat its baseline, "
    "which answers instead; rules: the tag rules of the snapshot."
)

DecisionPart = StrEnum("DecisionPart", _values(*PARTS))  # type: ignore[misc]
DecisionPart.__doc__ = "A part of a member's decision."

ProductReason = StrEnum(  # type: ignore[misc]
    "ProductReason", _values(BUY_AGAIN, SIMILAR_MEMBERS, POPULAR_IN_SEGMENT, POPULAR)
)
ProductReason.__doc__ = "Why a product is recommended."

SendSource = StrEnum("SendSource", _values(MEMBER, SEGMENT, GLOBAL))  # type: ignore[misc]
SendSource.__doc__ = "Whose engagement history chose the hour."


class HealthStatus(StrEnum):
    """What /healthz and /readyz say."""

    OK = "ok"
    READY = "ready"
    NOT_READY = "not ready"
    DEGRADED = "degraded"


class DegradedReason(StrEnum):
    """Why an answer came from fallbacks instead of the member's online features."""

    STORE_TIMEOUT = "store_timeout"  # the online read took longer than serving.online_budget_ms
    STORE_ERROR = "store_error"  # the online store refused or failed the read
    CIRCUIT_OPEN = "circuit_open"  # recent reads failed: no read is tried until the breaker resets
    STORE_NOT_CONNECTED = "store_not_connected"  # the store could not be opened yet (retrying)


class KeyScope(StrEnum):
    """What an API key reaches (serving/security.py)."""

    STOREFRONT = "storefront"
    MARKETING = "marketing"
    ADMIN = "admin"
