"""A synthetic shop in the canonical format (docs/data-format.md), with what was planted in it.

``generate(out, members, seed)`` writes every table of the contract as Parquet into ``out/``
and the planted truth into ``out/truth/`` (never read by the pipeline; evaluations use it):

- ``truth/members.parquet``: member_id, timezone, country, segment, signup_ts, churn_ts
  (null = still buying at the end), purchase_rate (orders per 30 days), heavy_buyer,
  price_sensitive, coupon_response (persuadable / sure_thing / lost_cause / sleeping_dog),
  preferred_categories (list, main first), preferred_share (expected share of order lines in
  them), staples (list of product ids re-bought again and again), peak_how_local (hour of
  week in the member's own timezone, Monday 00:00 = 0), peak_day_local, peak_hour_local,
  preferred_channel, best_coupon (the coupon with the highest planted expected incremental
  margin, null when none is positive) and best_expected_incremental_margin (its margin, 0
  for none).
- ``truth/coupon_effects.parquet``: one row per (member, coupon): the planted response
  (coupon_response, extra_order_prob: chance a treated member places one extra order in
  the window, skip_prob: chance a treated member skips the window's orders) and the expected
  effect of offering that coupon instead of nothing, over the campaign window, while the
  member is active: uplift_purchase_prob, expected_cost (discount given away, currency) and
  expected_incremental_margin (product margin gained minus that cost, currency).
- ``truth/products.parquet`` (category, within-category popularity and rank, consumable),
  ``truth/campaigns.parquet`` (dates, coupon, group sizes) and ``truth/manifest.json``
  (seed, members, the world's knobs, every config value, row counts).

A :class:`World` is a named family of shops: a few knobs (repeat rate, coupon effect and
heterogeneity, shop and catalogue size, noise, channel mix) over :class:`SyntheticConfig`;
``WORLDS`` holds the presets (``memberwise generate --list-worlds``) and ``World()`` is the
base config unchanged.

What is planted, all of it tunable in :class:`SyntheticConfig`:

- products in categories with Zipf-like popularity inside each category; consumables are
  bought again and again (each member has a few staples), other products once per member;
- each member prefers one or two categories, which get most of their lines and views;
- purchase rates vary log-normally around a segment's median (heavy and light buyers);
- a share of members churn at a planted instant spread over the history, with a fading
  of activity in the weeks before it; nothing (orders, events, opens) happens after it;
  some members sign up during the history;
- each member is active around a planted local hour of week (a peak weekday and hour, the
  segment's other weekdays, the same hour of day give or take an hour or two); orders,
  browsing and message opens happen mostly then, converted to UTC when written;
- each member opens one channel much more than the others;
- coupon campaigns offer one coupon each to a random share of eligible members with a
  randomized control group (offer rows with a null coupon_id); persuadables buy more in the
  window only when treated, sure things buy anyway and redeem (pure cost), lost causes
  ignore it, sleeping dogs buy less when treated. Redemptions are order lines with the
  coupon_id and a discount (free shipping: the waived fee on the order's first line) and
  ``coupon_offers.redeemed_ts``.

Everything is vectorised over members and rows (loops only over campaigns, zones, chunks and
a few de-duplication rounds), and deterministic: the same seed, members and config give
byte-identical tables. Members are generated in chunks of ``chunk_members`` with their own
random streams, so memory stays bounded for a million members.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.contract import CHANNELS
from pipelines.progress import Reporter, silent, track

if TYPE_CHECKING:
    import pyarrow as pa

RESPONSES = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
_PERSUADABLE, _SURE_THING, _LOST_CAUSE, _SLEEPING_DOG = range(4)
EVENT_TYPES = ("view", "cart", "login")
CAMPAIGN_GROUPS = ("eligible", "treated", "control", "redeemed")
DISCOUNT_KINDS = ("percent_off", "amount_off", "free_shipping")  # the coupons planted here
_VIEW, _CART, _LOGIN = range(3)

_HOUR = 3600
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
_MONTH = 30 * _DAY  # "per 30 days" rates


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class CategorySpec:
    """A product category: typical price (currency), margin rate (0..1), the share of its
    products that are consumables (re-bought), and its relative popularity."""

    name: str
    median_price: float
    margin_rate: float
    consumable_share: float
    popularity: float


@dataclass(frozen=True)
class SegmentSpec:
    """A planted behavioural segment.

    ``peak_hour``: typical local hour of day of activity (members deviate by up to
    ``SyntheticConfig.hour_deviations``); ``days``: active weekdays (Monday = 0), one of
    which is each member's peak day; ``orders_per_30d``: median purchase rate;
    ``price_sensitive_share``: chance a member is price-sensitive; ``channel_weights``:
    chance each of email, sms, push is the member's preferred channel.
    """

    name: str
    share: float
    peak_hour: int
    days: tuple[int, ...]
    orders_per_30d: float
    price_sensitive_share: float
    channel_weights: tuple[float, float, float]


@dataclass(frozen=True)
class ZoneSpec:
    """An IANA timezone, the country of its members and the share of members living there."""

    timezone: str
    country: str
    share: float


@dataclass(frozen=True)
class CouponSpec:
    """A coupon of the catalogue and its planted effect.

    ``value``: percent (percent_off), amount (amount_off) or the waived shipping fee
    (free_shipping), in currency. ``lift_price_sensitive`` / ``lift_other``: chance that a
    treated persuadable member (price-sensitive or not) places one extra order in the
    campaign window.
    """

    coupon_id: str
    kind: str
    value: float
    lift_price_sensitive: float
    lift_other: float


_CATEGORIES = (
    CategorySpec("grocery", 6.0, 0.22, 0.9, 1.0),
    CategorySpec("beauty", 18.0, 0.45, 0.7, 0.8),
    CategorySpec("fashion", 40.0, 0.50, 0.05, 0.9),
    CategorySpec("home", 35.0, 0.35, 0.2, 0.7),
    CategorySpec("kitchen", 28.0, 0.32, 0.3, 0.6),
    CategorySpec("electronics", 90.0, 0.15, 0.05, 0.55),
    CategorySpec("sports", 45.0, 0.30, 0.1, 0.5),
    CategorySpec("toys", 22.0, 0.38, 0.05, 0.45),
    CategorySpec("books", 14.0, 0.28, 0.0, 0.4),
    CategorySpec("pets", 16.0, 0.30, 0.8, 0.35),
)
_SEGMENTS = (
    SegmentSpec("early_bird", 0.15, 7, (0, 1, 2, 3, 4), 0.9, 0.3, (0.55, 0.15, 0.30)),
    SegmentSpec("lunch_break", 0.20, 12, (0, 1, 2, 3, 4), 0.8, 0.4, (0.60, 0.10, 0.30)),
    SegmentSpec("evening_regular", 0.25, 20, (0, 1, 2, 3), 1.2, 0.3, (0.45, 0.15, 0.40)),
    SegmentSpec("night_owl", 0.15, 23, (2, 3, 4, 5, 6), 0.7, 0.5, (0.20, 0.20, 0.60)),
    SegmentSpec("weekend_browser", 0.25, 10, (5, 6), 0.6, 0.6, (0.35, 0.30, 0.35)),
)
_ZONES = (
    ZoneSpec("Europe/London", "GB", 0.35),
    ZoneSpec("Europe/Berlin", "DE", 0.15),
    ZoneSpec("Europe/Paris", "FR", 0.10),
    ZoneSpec("America/New_York", "US", 0.15),
    ZoneSpec("America/Los_Angeles", "US", 0.10),
    ZoneSpec("Asia/Tokyo", "JP", 0.08),
    ZoneSpec("Australia/Sydney", "AU", 0.07),
)
_COUPONS = (
    CouponSpec("PCT10", "percent_off", 10.0, 0.25, 0.10),
    CouponSpec("PCT20", "percent_off", 20.0, 0.60, 0.22),
    CouponSpec("AMT5", "amount_off", 5.0, 0.30, 0.12),
    CouponSpec("FREESHIP", "free_shipping", 4.95, 0.18, 0.12),
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Every number of the synthetic world. Rates are per 30 days, times in days or hours."""

    # history: from the start of ``start`` to the end of ``end`` (UTC)
    start: date = date(2024, 1, 1)
    end: date = date(2025, 12, 31)

    # catalogue
    categories: tuple[CategorySpec, ...] = _CATEGORIES
    products: int = 300  # catalogue size at 2,000 members
    products_scale_exponent: float = 0.25  # products = products * (members / 2000) ** this
    min_products_per_category: int = 8
    zipf_exponent: float = 1.0  # popularity of the r-th product of a category ~ r ** -this
    price_sigma: float = 0.45  # log-normal spread of prices around the category median
    margin_sd: float = 0.05  # spread of margin rates around the category's
    in_stock_share: float = 0.95

    # members
    segments: tuple[SegmentSpec, ...] = _SEGMENTS
    zones: tuple[ZoneSpec, ...] = _ZONES
    late_signup_share: float = 0.2  # sign up during the history (new members)
    signup_history_days: int = 1095  # the others signed up within this many days before start
    rate_sigma: float = 0.7  # log-normal spread of purchase rates around the segment median
    heavy_rate: float = 1.5  # orders per 30 days from which a member is a heavy buyer
    # (name, minimum orders per 30 days), highest first; the last should start at 0
    tiers: tuple[tuple[str, float], ...] = (("premium", 2.0), ("plus", 1.0), ("basic", 0.0))

    # preferences
    two_categories_share: float = 0.5  # members with a second preferred category
    preferred_share_range: tuple[float, float] = (0.65, 0.80)  # of non-staple lines
    main_category_weight: float = 0.65  # of preferred lines, when there are two
    staples_per_member: int = 2  # consumables of a preferred category bought again and again
    staple_line_share: float = 0.25  # share of a member's lines that are staples
    extra_lines_per_order: float = 0.8  # lines per order = 1 + Poisson(this)
    extra_quantity_consumable: float = 0.6  # consumable quantity = 1 + Poisson(this)
    dedup_rounds: int = 6  # redraws of a durable product a member already bought

    # churn
    churn_share: float = 0.25
    min_days_before_churn: int = 30  # a churner is active at least this long
    decline_days: int = 60  # activity fades over this many days before churn_ts
    decline_floor: float = 0.25  # to this fraction of the usual rate

    # active hours
    peak_day_share: float = 0.45  # activity on the member's peak weekday
    active_day_share: float = 0.40  # on one of the segment's weekdays (else any weekday)
    peak_hour_share: float = 0.80  # around the member's peak hour (else any hour)
    hour_sd: float = 1.0  # hours, rounded: the spread around the peak hour
    hour_deviations: tuple[int, ...] = (-2, -1, 0, 1, 2)  # member's peak hour vs segment's
    hour_deviation_weights: tuple[float, ...] = (0.1, 0.2, 0.4, 0.2, 0.1)

    # browsing
    sessions_per_order: float = 0.5  # browsing sessions per 30 days = this * rate + base
    sessions_base_per_30d: float = 0.4
    extra_views_per_session: float = 1.0  # views per session = 1 + Poisson(this)
    session_login_share: float = 0.6
    view_cart_share: float = 0.15  # a browsing view put in the cart
    order_view_share: float = 0.6  # an ordered line viewed shortly before the order
    order_cart_share: float = 0.5  # an ordered line carted shortly before the order

    # messages
    messages_per_30d: float = 1.5  # newsletters to every signed-up member (churned too)
    channel_send_mix: tuple[float, float, float] = (0.6, 0.15, 0.25)  # email, sms, push
    send_hours_utc: tuple[int, int] = (7, 21)  # the shop sends in [from, to) UTC
    open_preferred: float = 0.45  # chance to open a message on the preferred channel
    open_other: float = 0.06  # on another channel
    click_share: float = 0.25  # of opens

    # coupon campaigns
    coupons: tuple[CouponSpec, ...] = _COUPONS
    campaigns: int = 8
    first_campaign_day: int = 60  # days after start
    last_campaign_days_before_end: int = 45
    campaign_jitter_days: int = 7
    campaign_hour_utc: int = 8
    campaign_window_days: int = 14  # responses count within this window
    eligibility_days: int = 180  # eligible: signed up and ordered within this many days
    offer_share: float = 0.6  # of eligible members: offered the campaign's coupon
    control_share: float = 0.25  # of eligible members: held out as control (the rest: no row)
    response_price_sensitive: tuple[float, float, float, float] = (0.65, 0.05, 0.20, 0.10)
    response_heavy: tuple[float, float, float, float] = (0.10, 0.65, 0.20, 0.05)
    response_other: tuple[float, float, float, float] = (0.20, 0.10, 0.60, 0.10)
    redeem_persuadable: float = 1.0  # chance a treated persuadable redeems on an order
    redeem_sure_thing: float = 0.9
    sleeping_dog_drop: float = 0.6  # chance a treated sleeping dog skips the window's orders

    # scale
    chunk_members: int = 100_000

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        for name in ("segments", "zones"):
            total = sum(s.share for s in getattr(self, name))
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"{name} shares sum to {total}, not 1")
        for c in self.coupons:
            if c.kind not in DISCOUNT_KINDS:
                raise ValueError(f"coupon {c.coupon_id}: unknown kind {c.kind!r}")
        for name in ("response_price_sensitive", "response_heavy", "response_other"):
            if abs(sum(getattr(self, name)) - 1.0) > 1e-6:
                raise ValueError(f"{name} must sum to 1 ({', '.join(RESPONSES)})")
        if self.offer_share + self.control_share > 1.0:
            raise ValueError("offer_share + control_share must not exceed 1")
        if len(self.hour_deviations) != len(self.hour_deviation_weights):
            raise ValueError("hour_deviations and hour_deviation_weights differ in length")

    def n_products(self, members: int) -> int:
        """Catalogue size for ``members`` members (mildly growing with them)."""
        scaled = self.products * (max(members, 1) / 2000) ** self.products_scale_exponent
        return max(int(round(scaled)), self.min_products_per_category * len(self.categories))


# ---------------------------------------------------------------- worlds: named knobs over the config
_ALL_PERSUADABLE = (1.0, 0.0, 0.0, 0.0)
# heterogeneity 2: price-sensitive members persuadable, heavy buyers sure things, the others
# lost causes or sleeping dogs (so a coupon for everyone loses money and targeting pays)
_POLAR_MIXES = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.4, 0.6))


def _blend(a: tuple[float, ...], b: tuple[float, ...], w: float) -> tuple[float, ...]:
    """``(1 - w) * a + w * b`` element-wise."""
    return tuple((1.0 - w) * x + w * y for x, y in zip(a, b, strict=True))


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


@dataclass(frozen=True)
class World:
    """A synthetic world: a few knobs over :class:`SyntheticConfig`, each with a neutral value
    that leaves the base config untouched (``World()`` is the default shop, byte for byte).

    - ``members``: the shop's size when the caller does not choose one (None: 2,000);
      ``products``: catalogue size at 2,000 members (None: the base's 300; it grows with
      members ** ``products_scale_exponent``).
    - ``repeat_rate``: share of a member's order lines that are their own staples, the
      consumables they re-buy again and again (None: the base's 0.25); ``staples_per_member``
      (None: 2); ``consumable_scale`` multiplies every category's share of consumable
      products (capped at 1): below 1 fewer products can be re-bought at all.
    - ``coupon_effect``: multiplies every coupon's lift (chance a treated persuadable places
      an extra order) and the sleeping dogs' drop. 0 = coupons change no one's purchases
      (members who buy anyway still redeem them, so every offer only costs).
    - ``coupon_heterogeneity``: 0 = all alike (every member persuadable, one lift per coupon
      whatever the member's price sensitivity); 1 = the base mix of response types per group
      (price-sensitive / heavy / other) and lifts by price sensitivity; 2 = polarised
      (price-sensitive members persuadable, heavy buyers sure things, the others lost causes
      or sleeping dogs, lifts twice as far apart). Values in between blend.
    - ``noise``: 0 = the base; 1 = members' planted habits carry no signal (activity at any
      weekday and hour, no preferred categories beyond popularity, every channel opened
      alike); in between blends.
    - ``channel_mix``: (email, sms, push) shares of the messages the shop sends;
      ``preferred_channel_mix``: the chance each channel is a member's preferred one, the
      same for every segment (None: the base's per-segment weights).
    - ``coupons``: the coupon catalogue (None: the base's PCT10, PCT20, AMT5, FREESHIP).
    """

    name: str = "default"
    description: str = "the base shop (SyntheticConfig as it is)"
    members: int | None = None
    products: int | None = None
    repeat_rate: float | None = None
    staples_per_member: int | None = None
    consumable_scale: float = 1.0
    coupon_effect: float = 1.0
    coupon_heterogeneity: float = 1.0
    noise: float = 0.0
    channel_mix: tuple[float, float, float] | None = None
    preferred_channel_mix: tuple[float, float, float] | None = None
    coupons: tuple[CouponSpec, ...] | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.members is None or self.members >= 1, "members must be at least 1"),
            (self.products is None or self.products >= 1, "products must be at least 1"),
            (self.repeat_rate is None or 0.0 <= self.repeat_rate <= 1.0,
             "repeat_rate must be in 0..1"),
            (self.staples_per_member is None or self.staples_per_member >= 0,
             "staples_per_member must be >= 0"),
            (self.consumable_scale >= 0.0, "consumable_scale must be >= 0"),
            (self.coupon_effect >= 0.0, "coupon_effect must be >= 0"),
            (0.0 <= self.coupon_heterogeneity <= 2.0, "coupon_heterogeneity must be in 0..2"),
            (0.0 <= self.noise <= 1.0, "noise must be in 0..1"),
        ]  # fmt: skip
        for name in ("channel_mix", "preferred_channel_mix"):
            mix = getattr(self, name)
            checks.append((mix is None or (len(mix) == len(CHANNELS) and min(mix) >= 0
                                           and sum(mix) > 0),
                           f"{name} needs {len(CHANNELS)} non-negative shares "
                           f"({', '.join(CHANNELS)})"))  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"world {self.name!r}: {msg}")

    def size(self, members: int | None = None) -> int:
        """Members to generate: ``members`` when given, else the world's own, else 2,000."""
        return members or self.members or 2000

    def config(self, base: SyntheticConfig | None = None) -> SyntheticConfig:
        """The :class:`SyntheticConfig` of this world (``base`` with the knobs applied)."""
        cfg = base or SyntheticConfig()
        up: dict[str, Any] = {}
        if self.products is not None:
            per_cat = max(2, min(cfg.min_products_per_category,
                                 self.products // len(cfg.categories)))  # fmt: skip
            up |= {"products": self.products, "min_products_per_category": per_cat}
        if self.repeat_rate is not None:
            up["staple_line_share"] = self.repeat_rate
        if self.staples_per_member is not None:
            up["staples_per_member"] = self.staples_per_member
        if self.consumable_scale != 1.0:
            up["categories"] = tuple(
                replace(c, consumable_share=_clip01(c.consumable_share * self.consumable_scale))
                for c in cfg.categories
            )
        coupons = self.coupons if self.coupons is not None else cfg.coupons
        h, s = self.coupon_heterogeneity, self.coupon_effect
        if h != 1.0 or s != 1.0:
            coupons = tuple(_coupon_lifts(c, h, s) for c in coupons)
            up["sleeping_dog_drop"] = _clip01(cfg.sleeping_dog_drop * s)
        if self.coupons is not None or h != 1.0 or s != 1.0:
            up["coupons"] = coupons
        if h != 1.0:
            names = ("response_price_sensitive", "response_heavy", "response_other")
            for name, polar in zip(names, _POLAR_MIXES, strict=True):
                mix = getattr(cfg, name)
                up[name] = _blend(_ALL_PERSUADABLE, mix, h) if h < 1 else _blend(mix, polar, h - 1)
        if self.noise > 0:
            n, keep = self.noise, 1.0 - self.noise
            flat = 1.0 / len(cfg.categories)
            lo, hi = cfg.preferred_share_range
            up |= {
                "peak_day_share": cfg.peak_day_share * keep,
                "active_day_share": cfg.active_day_share * keep,
                "peak_hour_share": cfg.peak_hour_share * keep,
                "hour_sd": cfg.hour_sd * (1.0 + 2.0 * n),
                "preferred_share_range": (lo + (flat - lo) * n, hi + (flat - hi) * n),
                "open_preferred": cfg.open_other + (cfg.open_preferred - cfg.open_other) * keep,
            }  # fmt: skip
        if self.channel_mix is not None:
            up["channel_send_mix"] = tuple(float(x) for x in self.channel_mix)
        if self.preferred_channel_mix is not None:
            w = tuple(float(x) for x in self.preferred_channel_mix)
            up["segments"] = tuple(replace(sg, channel_weights=w) for sg in cfg.segments)
        return replace(cfg, **up) if up else cfg

    def knobs(self) -> dict[str, Any]:
        """The world as plain JSON-able values (for manifests and reports)."""
        return json.loads(json.dumps(asdict(self), default=str))


def _coupon_lifts(spec: CouponSpec, heterogeneity: float, effect: float) -> CouponSpec:
    """``spec`` with its lifts spread by ``heterogeneity`` around their mean (0 = equal,
    1 = as they are, 2 = twice as far apart) and scaled by ``effect``, within 0..1."""
    ps, other = spec.lift_price_sensitive, spec.lift_other
    if heterogeneity != 1.0:
        mid = (ps + other) / 2.0
        ps, other = mid + heterogeneity * (ps - mid), mid + heterogeneity * (other - mid)
    return replace(spec, lift_price_sensitive=_clip01(ps * effect),
                   lift_other=_clip01(other * effect))  # fmt: skip


# a catalogue where one mild coupon pays for every member and beats the others
_UNIFORM_COUPONS = (
    CouponSpec("PCT5", "percent_off", 5.0, 0.35, 0.35),
    CouponSpec("PCT10", "percent_off", 10.0, 0.38, 0.38),
    CouponSpec("AMT3", "amount_off", 3.0, 0.20, 0.20),
    CouponSpec("FREESHIP", "free_shipping", 2.95, 0.15, 0.15),
)

WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World(),
        World(
            "no_coupon_effect",
            "coupons change no one's purchases; every offer only costs "
            "(the right policy is no coupon)",
            coupon_effect=0.0,
        ),
        World(
            "uniform_coupon_effect",
            "every member responds alike (all persuadable, one lift "
            "per coupon); one mild coupon for everyone is the right policy",
            coupon_heterogeneity=0.0,
            coupons=_UNIFORM_COUPONS,
        ),
        World(
            "strong_heterogeneity",
            "price-sensitive members persuadable, heavy buyers sure "
            "things, the rest lost causes or sleeping dogs: personalisation pays",
            coupon_heterogeneity=2.0,
        ),
        World(
            "low_repeat",
            "buy-again is weak: few consumables, almost no staples; discovery matters",
            repeat_rate=0.02,
            consumable_scale=0.25,
        ),
        World(
            "high_repeat",
            "members' own staples dominate their baskets",
            repeat_rate=0.6,
            staples_per_member=4,
        ),
        World("tiny_catalogue", "about 40 products for the whole shop", products=30),
        World(
            "noisy", "habits (hours, weekdays, categories, channels) carry little signal", noise=0.6
        ),
        World(
            "sms_heavy",
            "most messages go by SMS and most members prefer it",
            channel_mix=(0.15, 0.7, 0.15),
            preferred_channel_mix=(0.2, 0.6, 0.2),
        ),
        World("small_shop", "600 members: thin data for every model", members=600),
    )
}


def get_world(name: str) -> World:
    """The named preset; a ValueError lists the names when there is none by that name."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; the presets are: " + ", ".join(WORLDS))
    return WORLDS[name]


# ---------------------------------------------------------------- the world shared by all members
@dataclass
class _World:
    """Catalogue, campaigns, segments and timezones as arrays. Times are int64 seconds
    since 1970 (UTC unless named local)."""

    cfg: SyntheticConfig
    start: int
    end: int  # exclusive
    monday0: int  # local Monday 00:00 on or before start, minus a week
    # catalogue (P products, sorted by category then popularity rank)
    product_ids: np.ndarray  # (P,) str
    prod_cat: np.ndarray  # (P,) int
    prod_rank: np.ndarray  # (P,) int, 0 = most popular of its category
    prod_weight: np.ndarray  # (P,) float, within-category choice probability
    prod_price: np.ndarray  # (P,) float, currency
    prod_margin: np.ndarray  # (P,) float, 0..1
    prod_consumable: np.ndarray  # (P,) bool
    prod_in_stock: np.ndarray  # (P,) bool
    prod_keys: np.ndarray  # (P,) float: category + within-category cdf, for sampling
    cons_index: np.ndarray  # (Q,) product index of consumables
    cons_keys: np.ndarray  # (Q,) float: category + cdf among the category's consumables
    cat_has_consumables: np.ndarray  # (C,) bool
    cat_pop: np.ndarray  # (C,) float, sums to 1
    cat_line_gross: np.ndarray  # (C,) expected gross of one line (currency)
    cat_line_margin: np.ndarray  # (C,) expected margin of one line (currency)
    # timezones: utc = local - offset[zone, (local - grid0) // 3600]
    tz_grid0: int
    tz_offset: np.ndarray  # (Z, H) int64 seconds
    # segments
    seg_share: np.ndarray  # (S,)
    seg_hour: np.ndarray  # (S,) int
    seg_days: np.ndarray  # (S, 7) int, active weekdays padded
    seg_ndays: np.ndarray  # (S,) int
    seg_rate: np.ndarray  # (S,) orders per 30 days
    seg_ps: np.ndarray  # (S,) price-sensitive share
    seg_channel_cdf: np.ndarray  # (S, 3)
    # campaigns (K)
    campaign_ids: list[str]
    campaign_ts: np.ndarray  # (K,) int seconds
    campaign_coupon: np.ndarray  # (K,) int index into cfg.coupons


def _epoch(d: date) -> int:
    return int((datetime(d.year, d.month, d.day) - datetime(1970, 1, 1)).total_seconds())


def _build_world(rng: np.random.Generator, members: int, cfg: SyntheticConfig) -> _World:
    import pandas as pd

    start, end = _epoch(cfg.start), _epoch(cfg.end + timedelta(days=1))
    monday = cfg.start - timedelta(days=cfg.start.weekday() + 7)
    n_cat = len(cfg.categories)
    cat_pop = np.array([c.popularity for c in cfg.categories], dtype=float)
    cat_pop /= cat_pop.sum()

    # catalogue: category sizes ~ sqrt(popularity), each at least the minimum
    n_prod = cfg.n_products(members)
    raw = np.sqrt(cat_pop) / np.sqrt(cat_pop).sum() * n_prod
    sizes = np.maximum(np.floor(raw).astype(int), cfg.min_products_per_category)
    for i in np.argsort(-(raw - np.floor(raw)))[: max(n_prod - sizes.sum(), 0)]:
        sizes[i] += 1
    prod_cat = np.repeat(np.arange(n_cat), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    prod_rank = np.arange(len(prod_cat)) - starts[prod_cat]
    w = (prod_rank + 1.0) ** -cfg.zipf_exponent
    w /= np.bincount(prod_cat, weights=w)[prod_cat]
    keys = _category_keys(prod_cat, w)
    median = np.array([c.median_price for c in cfg.categories])[prod_cat]
    price = np.round(median * np.exp(cfg.price_sigma * rng.standard_normal(len(prod_cat))), 0)
    price = np.maximum(price, 1.0) - 0.01
    margin = np.array([c.margin_rate for c in cfg.categories])[prod_cat]
    margin = np.round(
        np.clip(margin + cfg.margin_sd * rng.standard_normal(len(margin)), 0.05, 0.7), 3
    )
    cons_share = np.array([c.consumable_share for c in cfg.categories])[prod_cat]
    consumable = rng.random(len(prod_cat)) < cons_share
    in_stock = rng.random(len(prod_cat)) < cfg.in_stock_share
    width = max(4, len(str(len(prod_cat))))
    ids = np.array([f"P{i:0{width}d}" for i in range(1, len(prod_cat) + 1)], dtype=object)
    product_ids = ids[rng.permutation(len(prod_cat))]  # ids say nothing about popularity

    cons_index = np.flatnonzero(consumable)
    cw = w[cons_index] / np.bincount(prod_cat[cons_index], weights=w[cons_index],
                                     minlength=n_cat)[prod_cat[cons_index]]  # fmt: skip
    cons_keys = _category_keys(prod_cat[cons_index], cw)
    qty = np.where(consumable, 1.0 + cfg.extra_quantity_consumable, 1.0)
    cat_gross = np.bincount(prod_cat, weights=w * price * qty, minlength=n_cat)
    cat_margin = np.bincount(prod_cat, weights=w * price * qty * margin, minlength=n_cat)

    # local wall clock -> UTC offsets on an hourly grid (DST gaps shifted forward)
    grid0 = start - 60 * _DAY
    grid = np.arange(grid0, end + 60 * _DAY, _HOUR, dtype=np.int64)
    local = pd.DatetimeIndex(grid.astype("datetime64[s]"))
    offsets = []
    for z in cfg.zones:
        utc = local.tz_localize(z.timezone, ambiguous=np.ones(len(grid), dtype=bool),
                                nonexistent="shift_forward")  # fmt: skip
        utc_s = utc.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[s]")
        offsets.append(grid - utc_s.astype(np.int64))
    tz_offset = np.stack(offsets)

    segs = cfg.segments
    seg_days = np.array([[s.days[i % len(s.days)] for i in range(7)] for s in segs], dtype=int)
    chan = np.array([s.channel_weights for s in segs], dtype=float)
    chan_cdf = np.cumsum(chan / chan.sum(axis=1, keepdims=True), axis=1)

    # campaigns: evenly spread, jittered, each offering one coupon (every coupon used in turn)
    k = cfg.campaigns
    first = start + cfg.first_campaign_day * _DAY
    last = end - cfg.last_campaign_days_before_end * _DAY
    days = np.linspace(first, last, k) // _DAY if k > 1 else np.full(k, first // _DAY)
    days = days + rng.integers(-cfg.campaign_jitter_days, cfg.campaign_jitter_days + 1, k)
    campaign_ts = (days * _DAY + cfg.campaign_hour_utc * _HOUR).astype(np.int64)
    n_cp = len(cfg.coupons)
    order = np.concatenate([rng.permutation(n_cp) for _ in range(-(-k // n_cp))])[:k]

    return _World(
        cfg=cfg, start=start, end=end, monday0=_epoch(monday),
        product_ids=product_ids, prod_cat=prod_cat, prod_rank=prod_rank, prod_weight=w,
        prod_price=price, prod_margin=margin, prod_consumable=consumable,
        prod_in_stock=in_stock, prod_keys=keys, cons_index=cons_index, cons_keys=cons_keys,
        cat_has_consumables=np.bincount(prod_cat[cons_index], minlength=n_cat) > 0,
        cat_pop=cat_pop, cat_line_gross=cat_gross, cat_line_margin=cat_margin,
        tz_grid0=grid0, tz_offset=tz_offset,
        seg_share=np.array([s.share for s in segs]), seg_hour=np.array([s.peak_hour for s in segs]),
        seg_days=seg_days, seg_ndays=np.array([len(s.days) for s in segs]),
        seg_rate=np.array([s.orders_per_30d for s in segs]),
        seg_ps=np.array([s.price_sensitive_share for s in segs]), seg_channel_cdf=chan_cdf,
        campaign_ids=[f"CMP{i + 1:02d}" for i in range(k)], campaign_ts=campaign_ts,
        campaign_coupon=order,
    )  # fmt: skip


def _category_keys(cat: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sampling keys for items sorted by category: category + cumulative weight inside it.

    ``cat``: (n,) int sorted; ``weight``: (n,) float summing to 1 within each category.
    An item of category c is drawn with ``searchsorted(keys, c + u, side="right")``.
    """
    if len(cat) == 0:
        return np.zeros(0)
    cum = np.cumsum(weight)
    first = np.r_[True, cat[1:] != cat[:-1]]
    base = np.maximum.accumulate(np.where(first, np.r_[0.0, cum[:-1]], 0.0))
    keys = cat + (cum - base)
    last = np.r_[cat[1:] != cat[:-1], True]
    keys[last] = cat[last] + 1.0
    return keys


def _run_starts(x: np.ndarray) -> np.ndarray:
    """(n,) bool: True where a run of equal values of ``x`` starts (``x`` grouped)."""
    return np.r_[True, x[1:] != x[:-1]] if len(x) else np.zeros(0, dtype=bool)


def _sample_from_cdf(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One index per row of ``cdf`` (n, k), cumulative probabilities ending at 1."""
    u = rng.random(len(cdf))
    return np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)


# ---------------------------------------------------------------- members
@dataclass
class _Members:
    """One chunk of members as arrays of length n (times: int64 seconds, UTC)."""

    seg: np.ndarray
    zone: np.ndarray
    signup: np.ndarray
    active_start: np.ndarray
    active_end: np.ndarray  # churn_ts or the end of history
    churned: np.ndarray
    rate: np.ndarray  # orders per 30 days
    price_sensitive: np.ndarray
    heavy: np.ndarray
    response: np.ndarray  # index into RESPONSES
    pref1: np.ndarray
    pref2: np.ndarray  # -1 = none
    pref_share: np.ndarray
    cat_cdf: np.ndarray  # (n, C) float32: category of a non-staple line
    staples: np.ndarray  # (n, k) product index, -1 = none
    peak_day: np.ndarray  # 0..6
    peak_hour: np.ndarray  # local hour, unwrapped (may be < 0 or > 23)
    channel: np.ndarray  # preferred channel index into CHANNELS


def _make_members(rng: np.random.Generator, n: int, world: _World) -> _Members:
    """Draw ``n`` members: segment, zone, signup, rate, coupon response, preferences,
    staples, churn and active hours (see :class:`_Members`)."""
    cfg = world.cfg
    n_cat = len(world.cat_pop)
    seg = _sample_from_cdf(rng, np.tile(np.cumsum(world.seg_share), (n, 1)))
    zone_p = np.array([z.share for z in cfg.zones])
    zone = _sample_from_cdf(rng, np.tile(np.cumsum(zone_p), (n, 1)))

    late = rng.random(n) < cfg.late_signup_share
    late_ts = world.start + rng.random(n) * (world.end - 14 * _DAY - world.start)
    early_ts = world.start - rng.random(n) * cfg.signup_history_days * _DAY
    signup = np.where(late, late_ts, early_ts).astype(np.int64)
    active_start = np.maximum(signup, world.start)

    rate = world.seg_rate[seg] * np.exp(cfg.rate_sigma * rng.standard_normal(n))
    price_sensitive = rng.random(n) < world.seg_ps[seg]
    heavy = rate >= cfg.heavy_rate
    mixes = np.cumsum(
        np.array([cfg.response_price_sensitive, cfg.response_heavy, cfg.response_other]), axis=1
    )
    group = np.where(price_sensitive, 0, np.where(heavy, 1, 2))
    response = _sample_from_cdf(rng, mixes[group])

    pref1 = _sample_from_cdf(rng, np.tile(np.cumsum(world.cat_pop), (n, 1)))
    has2 = rng.random(n) < cfg.two_categories_share
    pref2 = np.where(has2, (pref1 + 1 + rng.integers(0, n_cat - 1, n)) % n_cat, -1)
    lo, hi = cfg.preferred_share_range
    pref_share = lo + (hi - lo) * rng.random(n)
    rows = np.arange(n)
    probs = np.tile(world.cat_pop, (n, 1))
    probs[rows, pref1] = 0.0
    probs[has2, pref2[has2]] = 0.0
    probs *= ((1.0 - pref_share) / np.maximum(probs.sum(axis=1), 1e-12))[:, None]
    main = np.where(has2, cfg.main_category_weight, 1.0)
    probs[rows, pref1] = pref_share * main
    probs[has2, pref2[has2]] = pref_share[has2] * (1.0 - main[has2])
    cat_cdf = np.cumsum(probs, axis=1).astype(np.float32)
    cat_cdf[:, -1] = 1.0

    # staples: consumables of the main preferred category (else the second), by popularity
    k = cfg.staples_per_member
    src = np.where(world.cat_has_consumables[pref1], pref1, pref2)
    ok = (src >= 0) & world.cat_has_consumables[np.maximum(src, 0)]
    staples = np.full((n, k), -1, dtype=np.int64)
    if k and ok.any() and len(world.cons_index):
        u = src[ok, None] + rng.random((int(ok.sum()), k))
        pick = np.searchsorted(world.cons_keys, u, side="right")
        staples[ok] = world.cons_index[np.minimum(pick, len(world.cons_index) - 1)]

    churned = rng.random(n) < cfg.churn_share
    lo_churn = active_start + cfg.min_days_before_churn * _DAY
    churned &= lo_churn < world.end - _DAY
    churn_ts = (lo_churn + rng.random(n) * (world.end - lo_churn)).astype(np.int64)
    active_end = np.where(churned, churn_ts, world.end)

    j = (rng.random(n) * world.seg_ndays[seg]).astype(int)
    peak_day = world.seg_days[seg, j]
    hw = np.asarray(cfg.hour_deviation_weights, dtype=float)
    dev = np.array(cfg.hour_deviations)[
        _sample_from_cdf(rng, np.tile(np.cumsum(hw) / np.sum(hw), (n, 1)))
    ]
    peak_hour = world.seg_hour[seg] + dev
    channel = _sample_from_cdf(rng, world.seg_channel_cdf[seg])
    return _Members(
        seg=seg, zone=zone, signup=signup,
        active_start=active_start, active_end=active_end, churned=churned, rate=rate,
        price_sensitive=price_sensitive, heavy=heavy, response=response, pref1=pref1,
        pref2=pref2, pref_share=pref_share, cat_cdf=cat_cdf, staples=staples,
        peak_day=peak_day, peak_hour=peak_hour, channel=channel,
    )  # fmt: skip


# ---------------------------------------------------------------- behaviour
def _to_utc(world: _World, local: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """Local wall-clock seconds in each row's zone -> UTC seconds."""
    return local - world.tz_offset[zone, _grid_hour(world, local)]


def _grid_hour(world: _World, t: np.ndarray) -> np.ndarray:
    """Row of the hourly offset grid for seconds ``t`` (clipped to the grid)."""
    return np.clip((t - world.tz_grid0) // _HOUR, 0, world.tz_offset.shape[1] - 1)


def _moments(
    rng: np.random.Generator, t: np.ndarray, member: np.ndarray, m: _Members, world: _World
) -> np.ndarray:
    """An activity moment of each ``member`` in the local week around UTC ``t``.

    The weekday is the member's peak day, one of the segment's days or any day; the hour is
    the member's peak hour give or take ``hour_sd`` or, now and then, any hour. Returns
    (n,) int64 UTC seconds; may fall up to a week before or after ``t``.
    """
    cfg = world.cfg
    n = len(t)
    zone = m.zone[member]
    approx_local = t + world.tz_offset[zone, _grid_hour(world, t)]
    week = (approx_local - world.monday0) // _WEEK
    seg = m.seg[member]
    u = rng.random(n)
    seg_day = world.seg_days[seg, (rng.random(n) * world.seg_ndays[seg]).astype(int)]
    any_day = rng.integers(0, 7, n)
    day = np.where(
        u < cfg.peak_day_share,
        m.peak_day[member],
        np.where(u < cfg.peak_day_share + cfg.active_day_share, seg_day, any_day),
    )
    near = m.peak_hour[member] + np.rint(cfg.hour_sd * rng.standard_normal(n)).astype(np.int64)
    hour = np.where(rng.random(n) < cfg.peak_hour_share, near, rng.integers(0, 24, n))
    local = world.monday0 + week * _WEEK + day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, n)
    return _to_utc(world, local, zone)


def _vitality(t: np.ndarray, member: np.ndarray, m: _Members, world: _World) -> np.ndarray:
    """Share of the usual activity left at ``t``: 1, fading to ``decline_floor`` over the
    ``decline_days`` before a churner's churn_ts. (n,) float."""
    cfg = world.cfg
    d = cfg.decline_days * _DAY
    into = np.clip((t - (m.active_end[member] - d)) / d, 0.0, 1.0)
    return np.where(m.churned[member], 1.0 - (1.0 - cfg.decline_floor) * into, 1.0)


def _poisson_times(
    rng: np.random.Generator, m: _Members, world: _World, per_30d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Activity moments at ``per_30d`` (n,) per member over each member's active span,
    thinned before churn. Returns (member, ts) sorted by member, then time."""
    span = (m.active_end - m.active_start).astype(float)
    counts = rng.poisson(per_30d * span / _MONTH)
    member = np.repeat(np.arange(len(span)), counts)
    t = (m.active_start[member] + rng.random(len(member)) * span[member]).astype(np.int64)
    t = _moments(rng, t, member, m, world)
    keep = (t >= m.active_start[member]) & (t < m.active_end[member])
    keep &= rng.random(len(t)) < _vitality(t, member, m, world)
    member, t = member[keep], t[keep]
    o = np.lexsort((t, member))
    return member[o], t[o]


def _sample_products(
    rng: np.random.Generator, member: np.ndarray, m: _Members, world: _World
) -> np.ndarray:
    """A product for each line (or view) of ``member``: a staple now and then, otherwise a
    category from the member's preferences and a product by popularity inside it."""
    cfg = world.cfg
    n = len(member)
    out = np.empty(n, dtype=np.int64)
    block = 1_000_000
    for s in range(0, n, block):
        mb = member[s : s + block]
        u = rng.random(len(mb))
        cat = (m.cat_cdf[mb] < u[:, None].astype(np.float32)).sum(axis=1)
        cat = np.minimum(cat, m.cat_cdf.shape[1] - 1)
        pick = np.searchsorted(world.prod_keys, cat + rng.random(len(mb)), side="right")
        out[s : s + block] = np.minimum(pick, len(world.prod_keys) - 1)
    k = m.staples.shape[1]
    if k:
        st = m.staples[member, rng.integers(0, k, n)]
        use = (st >= 0) & (rng.random(n) < cfg.staple_line_share)
        out[use] = st[use]
    return out


# ---------------------------------------------------------------- one chunk of members
@dataclass
class _Orders:
    member: np.ndarray
    ts: np.ndarray
    coupon: np.ndarray  # index into cfg.coupons, -1 = none
    removed: np.ndarray  # bool: taken back by a sleeping dog's reaction

    def append(self, member: np.ndarray, ts: np.ndarray) -> None:
        self.member = np.concatenate([self.member, member])
        self.ts = np.concatenate([self.ts, ts])
        self.coupon = np.concatenate([self.coupon, np.full(len(ts), -1)])
        self.removed = np.concatenate([self.removed, np.zeros(len(ts), dtype=bool)])


def _campaigns(
    rng: np.random.Generator, m: _Members, world: _World, orders: _Orders
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Run every campaign over this chunk: offers, responses, redemptions.

    Returns the offer rows (member, campaign, coupon or -1, redeemed_ts or -1), the campaign
    message sends (member, campaign, sent_ts) and (K, 4) int group sizes per campaign, in
    the order of ``CAMPAIGN_GROUPS``."""
    cfg = world.cfg
    n = len(m.rate)
    window = cfg.campaign_window_days * _DAY
    offers: dict[str, list[np.ndarray]] = {"member": [], "campaign": [], "coupon": [],
                                           "redeemed": []}  # fmt: skip
    sends: dict[str, list[np.ndarray]] = {"member": [], "campaign": [], "sent": []}
    sizes = np.zeros((len(world.campaign_ts), len(CAMPAIGN_GROUPS)), dtype=np.int64)
    for k, c in enumerate(world.campaign_ts):
        j = int(world.campaign_coupon[k])
        spec = cfg.coupons[j]
        live = ~orders.removed
        recent = live & (orders.ts >= c - cfg.eligibility_days * _DAY) & (orders.ts < c)
        eligible = (np.bincount(orders.member[recent], minlength=n) > 0) & (m.signup < c)
        u = rng.random(n)
        treated = eligible & (u < cfg.offer_share)
        control = eligible & (u >= cfg.offer_share) & (u < cfg.offer_share + cfg.control_share)
        active = m.active_end > c
        end = c + window

        # sleeping dogs skip the window's orders
        skip = treated & active & (m.response == _SLEEPING_DOG)
        skip &= rng.random(n) < cfg.sleeping_dog_drop
        in_window = (orders.ts >= c) & (orders.ts < end)
        orders.removed |= in_window & skip[orders.member]

        # persuadables place an extra order
        lift = np.where(m.price_sensitive, spec.lift_price_sensitive, spec.lift_other)
        extra = treated & active & (m.response == _PERSUADABLE) & (rng.random(n) < lift)
        who = np.flatnonzero(extra)
        t = _moments(rng, c + (rng.random(len(who)) * _WEEK).astype(np.int64), who, m, world)
        t = np.where(t < c, t + _WEEK, t)
        ok = (t >= c) & (t < np.minimum(end, m.active_end[who]))
        orders.append(who[ok], t[ok])

        # the first order in the window redeems the coupon
        p_redeem = np.select(
            [m.response == _PERSUADABLE, m.response == _SURE_THING],
            [cfg.redeem_persuadable, cfg.redeem_sure_thing],
            0.0,
        )
        redeemer = treated & active & (rng.random(n) < p_redeem)
        cand = np.flatnonzero(
            (orders.ts >= c) & (orders.ts < end) & ~orders.removed & redeemer[orders.member]
        )
        cand = cand[np.lexsort((orders.ts[cand], orders.member[cand]))]
        first = cand[_run_starts(orders.member[cand])]
        orders.coupon[first] = j
        redeemed = np.full(n, -1, dtype=np.int64)
        redeemed[orders.member[first]] = orders.ts[first]

        who_t, who_c = np.flatnonzero(treated), np.flatnonzero(control)
        both = np.concatenate([who_t, who_c])
        offers["member"].append(both)
        offers["campaign"].append(np.full(len(both), k))
        offers["coupon"].append(np.r_[np.full(len(who_t), j), np.full(len(who_c), -1)])
        offers["redeemed"].append(redeemed[both])
        sends["member"].append(who_t)
        sends["campaign"].append(np.full(len(who_t), k))
        sends["sent"].append(np.full(len(who_t), c, dtype=np.int64))
        sizes[k] = (eligible.sum(), len(who_t), len(who_c), len(first))
    cat = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in offers.items()}
    snd = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in sends.items()}
    return cat, snd, sizes


def _repeats(
    order: np.ndarray, member: np.ndarray, ts: np.ndarray, product: np.ndarray, world: _World
) -> np.ndarray:
    """(n,) bool: lines repeating an earlier purchase of the same durable by the member, or
    the same product earlier in the same order. Lines are grouped by order (in line order)."""
    n_prod = len(world.prod_cat)
    durable = ~world.prod_consumable[product]
    owner = np.where(durable, member, member.max(initial=0) + 1 + order).astype(np.int64)
    key = owner * n_prod + product
    srt = np.lexsort((ts, key))  # stable: ties keep line order
    dup = np.zeros(len(key), dtype=bool)
    dup[srt[1:]] = key[srt[1:]] == key[srt[:-1]]
    return dup


def _lines(
    rng: np.random.Generator, orders: _Orders, m: _Members, world: _World
) -> dict[str, np.ndarray]:
    """Order lines of the kept orders: products (durables once per member, no product twice
    in an order), quantities, prices and coupon discounts."""
    cfg = world.cfg
    n_orders = len(orders.ts)
    n_lines = 1 + rng.poisson(cfg.extra_lines_per_order, n_orders)
    order = np.repeat(np.arange(n_orders), n_lines)
    member = orders.member[order]
    ts = orders.ts[order]
    product = _sample_products(rng, member, m, world)
    for _ in range(cfg.dedup_rounds):
        dup = _repeats(order, member, ts, product, world)
        if not dup.any():
            break
        product[dup] = _sample_products(rng, member[dup], m, world)
    # durables still bought twice become consumables (staples first), which may be
    # re-bought; what is left (a product twice in one order) is dropped, but never an
    # order's first line, so every order keeps a line
    dup = _repeats(order, member, ts, product, world)
    if dup.any() and len(world.cons_index):
        st = m.staples[member[dup], 0]
        any_cons = world.cons_index[rng.integers(0, len(world.cons_index), int(dup.sum()))]
        product[dup] = np.where(st >= 0, st, any_cons)
        dup = _repeats(order, member, ts, product, world)
    dup &= ~_run_starts(order)
    keep = ~dup
    order, member, ts, product = order[keep], member[keep], ts[keep], product[keep]

    qty = np.where(
        world.prod_consumable[product],
        1.0 + rng.poisson(cfg.extra_quantity_consumable, len(product)),
        1.0,
    )
    price = world.prod_price[product]
    gross = qty * price
    discount = np.zeros(len(product))
    coupon = orders.coupon[order]
    order_gross = np.bincount(order, weights=gross, minlength=n_orders)
    first_line = _run_starts(order)
    for j, spec in enumerate(cfg.coupons):
        on = coupon == j
        if not on.any():
            continue
        if spec.kind == "percent_off":
            discount[on] = gross[on] * spec.value / 100.0
        elif spec.kind == "amount_off":
            og = order_gross[order[on]]
            discount[on] = np.minimum(spec.value, og) * gross[on] / og
        else:  # free_shipping: the waived fee, booked on the order's first line
            discount[on & first_line] = spec.value
    return {"order": order, "member": member, "ts": ts, "product": product, "quantity": qty,
            "unit_price": price, "discount": np.round(discount, 2), "coupon": coupon}  # fmt: skip


def _events(
    rng: np.random.Generator, lines: dict[str, np.ndarray], m: _Members, world: _World
) -> dict[str, np.ndarray]:
    """Views and carts just before ordered lines, and browsing sessions (login, views,
    some carts) at the member's active moments. Sorted by member, then time."""
    cfg = world.cfg
    parts_m, parts_t, parts_e, parts_p = [], [], [], []
    n = len(lines["ts"])
    v = rng.random(n) < cfg.order_view_share
    parts_m.append(lines["member"][v])
    parts_t.append(lines["ts"][v] - rng.integers(120, 1800, int(v.sum())))
    parts_e.append(np.full(int(v.sum()), _VIEW))
    parts_p.append(lines["product"][v])
    c = rng.random(n) < cfg.order_cart_share
    parts_m.append(lines["member"][c])
    parts_t.append(lines["ts"][c] - rng.integers(10, 120, int(c.sum())))
    parts_e.append(np.full(int(c.sum()), _CART))
    parts_p.append(lines["product"][c])

    rate = cfg.sessions_per_order * m.rate + cfg.sessions_base_per_30d
    s_member, s_ts = _poisson_times(rng, m, world, rate)
    login = rng.random(len(s_ts)) < cfg.session_login_share
    parts_m.append(s_member[login])
    parts_t.append(s_ts[login])
    parts_e.append(np.full(int(login.sum()), _LOGIN))
    parts_p.append(np.full(int(login.sum()), -1))
    n_views = 1 + rng.poisson(cfg.extra_views_per_session, len(s_ts))
    sess = np.repeat(np.arange(len(s_ts)), n_views)
    gap = rng.integers(20, 180, len(sess))
    cum = np.cumsum(gap)
    first = np.r_[0, np.cumsum(n_views)[:-1]]
    offset = cum - (cum[first] - gap[first])[sess]
    vm, vt = s_member[sess], s_ts[sess] + offset
    vp = _sample_products(rng, vm, m, world)
    parts_m.append(vm)
    parts_t.append(vt)
    parts_e.append(np.full(len(vm), _VIEW))
    parts_p.append(vp)
    cart = rng.random(len(vm)) < cfg.view_cart_share
    parts_m.append(vm[cart])
    parts_t.append(vt[cart] + rng.integers(5, 60, int(cart.sum())))
    parts_e.append(np.full(int(cart.sum()), _CART))
    parts_p.append(vp[cart])

    mem, ts = np.concatenate(parts_m), np.concatenate(parts_t)
    etype, prod = np.concatenate(parts_e), np.concatenate(parts_p)
    keep = (ts >= m.active_start[mem]) & (ts < m.active_end[mem])
    mem, ts, etype, prod = mem[keep], ts[keep], etype[keep], prod[keep]
    o = np.lexsort((etype, ts, mem))
    return {"member": mem[o], "ts": ts[o], "event": etype[o], "product": prod[o]}


def _messages(
    rng: np.random.Generator, sends: dict[str, np.ndarray], m: _Members, world: _World
) -> dict[str, np.ndarray]:
    """Newsletters to every signed-up member plus the campaign messages, with opens (mostly
    on the preferred channel, at the member's next active moment) and clicks."""
    cfg = world.cfg
    n = len(m.rate)
    span = (world.end - m.active_start).astype(float)
    counts = rng.poisson(cfg.messages_per_30d * span / _MONTH)
    member = np.repeat(np.arange(n), counts)
    t = m.active_start[member] + rng.random(len(member)) * span[member]
    lo, hi = cfg.send_hours_utc
    sent = (t // _DAY).astype(np.int64) * _DAY + rng.integers(lo, hi, len(t)) * _HOUR
    ok = (sent >= m.active_start[member]) & (sent < world.end)
    member, sent = member[ok], sent[ok]
    campaign = np.full(len(member), -1)
    member = np.concatenate([member, sends["member"]])
    sent = np.concatenate([sent, sends["sent"]])
    campaign = np.concatenate([campaign, sends["campaign"]])
    mix = np.tile(np.cumsum(cfg.channel_send_mix) / sum(cfg.channel_send_mix), (len(sent), 1))
    channel = _sample_from_cdf(rng, mix)

    opened = _moments(rng, sent, member, m, world)
    opened = np.where(opened < sent, opened + _WEEK, opened)
    opened = np.where(opened < sent, sent + rng.integers(60, _HOUR, len(sent)), opened)
    p_open = np.where(channel == m.channel[member], cfg.open_preferred, cfg.open_other)
    p_open = p_open * _vitality(opened, member, m, world)
    is_open = (rng.random(len(sent)) < p_open) & (opened < m.active_end[member])
    is_open &= opened < world.end
    clicked = opened + rng.integers(10, 600, len(sent))
    is_click = is_open & (rng.random(len(sent)) < cfg.click_share) & (clicked < world.end)
    o = np.lexsort((campaign, channel, sent, member))
    return {"member": member[o], "channel": channel[o], "sent": sent[o],
            "opened": np.where(is_open, opened, -1)[o],
            "clicked": np.where(is_click, clicked, -1)[o], "campaign": campaign[o]}  # fmt: skip


def _coupon_effects(m: _Members, world: _World) -> dict[str, np.ndarray]:
    """Expected effect of offering each coupon instead of nothing, per member, over the
    campaign window while active. (n * n_coupons,) arrays, member-major.

    From the generating model: P(any order in the window) = 1 - exp(-rate * window / 30);
    an order has 1 + extra_lines lines of the member's expected line value; durables'
    once-only rule and rounding are ignored, so the money columns are close, not exact.
    """
    cfg = world.cfg
    n, n_cp = len(m.rate), len(cfg.coupons)
    w = cfg.campaign_window_days / 30.0
    base_orders = m.rate * w
    p_base = 1.0 - np.exp(-base_orders)
    probs = np.diff(np.c_[np.zeros(n), m.cat_cdf.astype(float)], axis=1)
    line_gross = probs @ world.cat_line_gross
    line_margin = probs @ world.cat_line_margin
    has_st = m.staples >= 0
    if has_st.any():
        qty = 1.0 + cfg.extra_quantity_consumable
        st = np.maximum(m.staples, 0)
        sg = np.where(has_st, world.prod_price[st] * qty, 0.0).sum(1) / np.maximum(has_st.sum(1), 1)
        sm = np.where(has_st, world.prod_price[st] * qty * world.prod_margin[st], 0.0).sum(1)
        sm = sm / np.maximum(has_st.sum(1), 1)
        s = np.where(has_st.any(1), cfg.staple_line_share, 0.0)
        line_gross = s * sg + (1 - s) * line_gross
        line_margin = s * sm + (1 - s) * line_margin
    lines = 1.0 + cfg.extra_lines_per_order
    gross, margin = lines * line_gross, lines * line_margin

    uplift = np.zeros((n, n_cp))
    cost = np.zeros((n, n_cp))
    gain = np.zeros((n, n_cp))
    extra = np.zeros((n, n_cp))
    for j, spec in enumerate(cfg.coupons):
        if spec.kind == "percent_off":
            disc = gross * spec.value / 100.0
        elif spec.kind == "amount_off":
            disc = np.minimum(spec.value, gross)
        else:
            disc = np.full(n, spec.value)
        lift = np.where(m.price_sensitive, spec.lift_price_sensitive, spec.lift_other)
        pers = m.response == _PERSUADABLE
        extra[:, j] = np.where(pers, lift, 0.0)
        p_any = 1.0 - (1.0 - p_base) * (1.0 - lift)
        uplift[:, j] = np.select(
            [pers, m.response == _SLEEPING_DOG],
            [lift * (1.0 - p_base), -cfg.sleeping_dog_drop * p_base],
            0.0,
        )
        cost[:, j] = np.select(
            [pers, m.response == _SURE_THING],
            [p_any * cfg.redeem_persuadable * disc, p_base * cfg.redeem_sure_thing * disc],
            0.0,
        )
        gain[:, j] = np.select(
            [pers, m.response == _SLEEPING_DOG],
            [lift * margin, -cfg.sleeping_dog_drop * base_orders * margin],
            0.0,
        )
    return {
        "member": np.repeat(np.arange(n), n_cp),
        "coupon": np.tile(np.arange(n_cp), n),
        "uplift": uplift.ravel(),
        "extra": extra.ravel(),
        "skip": np.repeat(np.where(m.response == _SLEEPING_DOG, cfg.sleeping_dog_drop, 0.0), n_cp),
        "cost": cost.ravel(),
        "margin": (gain - cost).ravel(),
    }


# ---------------------------------------------------------------- writing
def _ts_array(seconds: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    import pyarrow as pa

    us = seconds.astype(np.int64) * 1_000_000
    return pa.array(us, type=pa.timestamp("us"), mask=null)


def _str_take(values: np.ndarray, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Strings ``values[idx]`` as an Arrow string array, null where ``null``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dictionary = pa.array(values, type=pa.string())
    taken = pc.take(dictionary, pa.array(np.maximum(idx, 0).astype(np.int64)))
    if null is not None and null.any():
        taken = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), taken)
    return taken


_SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "order_lines": [("order_id", "str"), ("member_id", "str"), ("ts", "ts"),
                    ("product_id", "str"), ("quantity", "f8"), ("unit_price", "f8"),
                    ("discount", "f8"), ("coupon_id", "str")],
    "members": [("member_id", "str"), ("signup_ts", "ts"), ("timezone", "str"),
                ("country", "str"), ("tier", "str")],
    "products": [("product_id", "str"), ("category", "str"), ("price", "f8"),
                 ("margin_rate", "f8"), ("in_stock", "bool")],
    "events": [("member_id", "str"), ("ts", "ts"), ("event_type", "str"), ("product_id", "str")],
    "messages": [("member_id", "str"), ("channel", "str"), ("sent_ts", "ts"),
                 ("opened_ts", "ts"), ("clicked_ts", "ts"), ("campaign_id", "str")],
    "coupons": [("coupon_id", "str"), ("kind", "str"), ("value", "f8"), ("min_spend", "f8"),
                ("category", "str"), ("cost", "f8")],
    "coupon_offers": [("member_id", "str"), ("campaign_id", "str"), ("offered_ts", "ts"),
                      ("coupon_id", "str"), ("redeemed_ts", "ts")],
}  # fmt: skip


def _schema(name: str) -> pa.Schema:
    import pyarrow as pa

    types = {"str": pa.string(), "ts": pa.timestamp("us"), "f8": pa.float64(),
             "bool": pa.bool_()}  # fmt: skip
    return pa.schema([(c, types[t]) for c, t in _SCHEMAS[name]])


class _Writers:
    """One Parquet writer per file, appended chunk by chunk."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._open: dict[str, Any] = {}
        self.rows: dict[str, int] = {}

    def write(self, name: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        if name not in self._open:
            path = self.out / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open[name] = pq.ParquetWriter(path, table.schema)
        self._open[name].write_table(table)
        self.rows[name] = self.rows.get(name, 0) + table.num_rows

    def close(self) -> None:
        for w in self._open.values():
            w.close()
        self._open.clear()


def _chunk_tables(
    rng: np.random.Generator, m: _Members, world: _World, member_ids: np.ndarray, order_base: int
) -> tuple[dict[str, pa.Table], np.ndarray, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    cfg = world.cfg
    n = len(m.rate)
    member, ts = _poisson_times(rng, m, world, m.rate)
    orders = _Orders(member, ts, np.full(len(ts), -1), np.zeros(len(ts), dtype=bool))
    offers, sends, sizes = _campaigns(rng, m, world, orders)
    keep = ~orders.removed
    o = np.lexsort((orders.ts[keep], orders.member[keep]))
    kept = _Orders(orders.member[keep][o], orders.ts[keep][o], orders.coupon[keep][o],
                   np.zeros(int(keep.sum()), dtype=bool))  # fmt: skip
    lines = _lines(rng, kept, m, world)
    events = _events(rng, lines, m, world)
    msgs = _messages(rng, sends, m, world)

    coupon_ids = np.array([c.coupon_id for c in cfg.coupons], dtype=object)
    order_ids = pc.binary_join_element_wise(
        "O", pa.array(order_base + 1 + lines["order"]).cast(pa.string()), ""
    )
    tables: dict[str, pa.Table] = {}
    tables["order_lines"] = pa.table(
        [order_ids, _str_take(member_ids, lines["member"]), _ts_array(lines["ts"]),
         _str_take(world.product_ids, lines["product"]), pa.array(lines["quantity"]),
         pa.array(lines["unit_price"]), pa.array(lines["discount"]),
         _str_take(coupon_ids, lines["coupon"], lines["coupon"] < 0)],
        schema=_schema("order_lines"),
    )  # fmt: skip
    zones = np.array([z.timezone for z in cfg.zones], dtype=object)
    countries = np.array([z.country for z in cfg.zones], dtype=object)
    tier_names = np.array([t for t, _ in cfg.tiers], dtype=object)
    tier_min = np.array([x for _, x in cfg.tiers])
    tier = np.argmax(m.rate[:, None] >= tier_min[None, :], axis=1)
    idx = np.arange(n)
    tables["members"] = pa.table(
        [_str_take(member_ids, idx), _ts_array(m.signup), _str_take(zones, m.zone),
         _str_take(countries, m.zone), _str_take(tier_names, tier)],
        schema=_schema("members"),
    )  # fmt: skip
    tables["events"] = pa.table(
        [_str_take(member_ids, events["member"]), _ts_array(events["ts"]),
         _str_take(np.array(EVENT_TYPES, dtype=object), events["event"]),
         _str_take(world.product_ids, events["product"], events["product"] < 0)],
        schema=_schema("events"),
    )  # fmt: skip
    camp_ids = np.array(world.campaign_ids + [""], dtype=object)
    tables["messages"] = pa.table(
        [_str_take(member_ids, msgs["member"]),
         _str_take(np.array(CHANNELS, dtype=object), msgs["channel"]),
         _ts_array(msgs["sent"]), _ts_array(msgs["opened"], msgs["opened"] < 0),
         _ts_array(msgs["clicked"], msgs["clicked"] < 0),
         _str_take(camp_ids, msgs["campaign"], msgs["campaign"] < 0)],
        schema=_schema("messages"),
    )  # fmt: skip
    o = np.lexsort((offers["member"], offers["campaign"]))
    offers = {k: v[o] for k, v in offers.items()}
    tables["coupon_offers"] = pa.table(
        [_str_take(member_ids, offers["member"]), _str_take(camp_ids, offers["campaign"]),
         _ts_array(world.campaign_ts[offers["campaign"]]),
         _str_take(coupon_ids, offers["coupon"], offers["coupon"] < 0),
         _ts_array(offers["redeemed"], offers["redeemed"] < 0)],
        schema=_schema("coupon_offers"),
    )  # fmt: skip
    fx = _coupon_effects(m, world)
    tables["truth/members"] = _truth_members(m, world, member_ids, fx["margin"])
    tables["truth/coupon_effects"] = pa.table({
        "member_id": _str_take(member_ids, fx["member"]),
        "coupon_id": _str_take(coupon_ids, fx["coupon"]),
        "coupon_response": _str_take(np.array(RESPONSES, dtype=object), m.response[fx["member"]]),
        "extra_order_prob": pa.array(fx["extra"]),
        "skip_prob": pa.array(fx["skip"]),
        "uplift_purchase_prob": pa.array(fx["uplift"]),
        "expected_cost": pa.array(fx["cost"]),
        "expected_incremental_margin": pa.array(fx["margin"]),
    })  # fmt: skip
    n_orders = int(lines["order"].max()) + 1 if len(lines["order"]) else 0
    return tables, sizes, n_orders


def _truth_members(
    m: _Members, world: _World, member_ids: np.ndarray, margin: np.ndarray
) -> pa.Table:
    """``margin``: (n * n_coupons,) planted expected incremental margin, member-major."""
    import pyarrow as pa

    cfg = world.cfg
    n = len(m.rate)
    by_coupon = margin.reshape(n, len(cfg.coupons))
    best = np.argmax(by_coupon, axis=1) if len(cfg.coupons) else np.full(n, -1)
    best_margin = by_coupon.max(axis=1, initial=0.0)
    coupon_ids = np.array([c.coupon_id for c in cfg.coupons] or [""], dtype=object)
    cats = np.array([c.name for c in cfg.categories], dtype=object)
    has2 = m.pref2 >= 0
    pref_lists = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(1 + has2)].astype(np.int32)),
        _str_take(cats, np.stack([m.pref1, m.pref2], axis=1).ravel()[
            np.stack([np.ones(n, bool), has2], axis=1).ravel()]),
    )  # fmt: skip
    st_ok = m.staples >= 0
    staple_lists = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(st_ok.sum(1))].astype(np.int32)),
        _str_take(world.product_ids, m.staples[st_ok]),
    )
    s = np.where(st_ok.any(1), cfg.staple_line_share, 0.0)
    how = (m.peak_day * 24 + m.peak_hour) % 168
    return pa.table({
        "member_id": _str_take(member_ids, np.arange(n)),
        "timezone": _str_take(np.array([z.timezone for z in cfg.zones], dtype=object), m.zone),
        "country": _str_take(np.array([z.country for z in cfg.zones], dtype=object), m.zone),
        "segment": _str_take(np.array([x.name for x in cfg.segments], dtype=object), m.seg),
        "signup_ts": _ts_array(m.signup),
        "churn_ts": _ts_array(m.active_end, ~m.churned),
        "purchase_rate": pa.array(m.rate),
        "heavy_buyer": pa.array(m.heavy),
        "price_sensitive": pa.array(m.price_sensitive),
        "coupon_response": _str_take(np.array(RESPONSES, dtype=object), m.response),
        "preferred_categories": pref_lists,
        "preferred_share": pa.array(s + (1 - s) * m.pref_share),
        "staples": staple_lists,
        "peak_how_local": pa.array(how.astype(np.int64)),
        "peak_day_local": pa.array((how // 24).astype(np.int64)),
        "peak_hour_local": pa.array((how % 24).astype(np.int64)),
        "preferred_channel": _str_take(np.array(CHANNELS, dtype=object), m.channel),
        "best_coupon": _str_take(coupon_ids, best, best_margin <= 0),
        "best_expected_incremental_margin": pa.array(best_margin),
    })  # fmt: skip


def _world_tables(world: _World) -> dict[str, pa.Table]:
    import pyarrow as pa

    cfg = world.cfg
    cats = np.array([c.name for c in cfg.categories], dtype=object)
    o = np.argsort(world.product_ids, kind="stable")
    products = pa.table(
        [pa.array(world.product_ids[o], pa.string()), _str_take(cats, world.prod_cat[o]),
         pa.array(world.prod_price[o]), pa.array(world.prod_margin[o]),
         pa.array(world.prod_in_stock[o])],
        schema=_schema("products"),
    )  # fmt: skip
    coupons = pa.table(
        [pa.array([c.coupon_id for c in cfg.coupons], pa.string()),
         pa.array([c.kind for c in cfg.coupons], pa.string()),
         pa.array([float(c.value) for c in cfg.coupons]),
         pa.array([None] * len(cfg.coupons), pa.float64()),
         pa.array([None] * len(cfg.coupons), pa.string()),
         pa.array([0.0] * len(cfg.coupons))],  # offering costs nothing beyond the discount
        schema=_schema("coupons"),
    )  # fmt: skip
    truth_products = pa.table({
        "product_id": pa.array(world.product_ids[o], pa.string()),
        "category": _str_take(cats, world.prod_cat[o]),
        "popularity_rank": pa.array(world.prod_rank[o]),
        "popularity": pa.array(world.prod_weight[o]),
        "consumable": pa.array(world.prod_consumable[o]),
    })  # fmt: skip
    return {"products": products, "coupons": coupons, "truth/products": truth_products}


def _truth_campaigns(world: _World, sizes: np.ndarray) -> pa.Table:
    """One row per campaign: its coupon, offer instant, window end and (K, 4) group sizes."""
    import pyarrow as pa

    cfg = world.cfg
    window = cfg.campaign_window_days * _DAY
    return pa.table({
        "campaign_id": pa.array(world.campaign_ids, pa.string()),
        "coupon_id": pa.array([cfg.coupons[j].coupon_id for j in world.campaign_coupon],
                              pa.string()),
        "offered_ts": _ts_array(world.campaign_ts),
        "window_end_ts": _ts_array(world.campaign_ts + window),
        **{g: pa.array(sizes[:, i]) for i, g in enumerate(CAMPAIGN_GROUPS)},
    })  # fmt: skip


def generate(
    out: Path,
    members: int = 2000,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    world: World | None = None,
    progress: Reporter = silent,
) -> dict[str, int]:
    """Write a synthetic shop for ``members`` members into ``out`` (Parquet, the contract's
    tables) and what was planted into ``out/truth``. Returns rows written per table
    (``progress`` shows a bar over the chunks of members; pipelines.progress).

    ``world`` applies its knobs over ``config`` (default: the base config); the manifest
    records both. Deterministic: the same ``members``, ``seed``, config and world give
    identical files.
    """

    if members < 1:
        raise ValueError("members must be at least 1")
    world = world or World()
    cfg = world.config(config)
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    n_chunks = -(-members // cfg.chunk_members)
    world_seq, *chunk_seqs = np.random.SeedSequence(seed).spawn(1 + n_chunks)
    built = _build_world(np.random.default_rng(world_seq), members, cfg)
    width = max(5, len(str(members)))
    writers = _Writers(out)
    sizes = np.zeros((len(built.campaign_ids), len(CAMPAIGN_GROUPS)), dtype=np.int64)
    try:
        for name, table in _world_tables(built).items():
            writers.write(name, table)
        order_base = 0
        for i, seq in track(progress, list(enumerate(chunk_seqs)), "member chunks written"):
            rng = np.random.default_rng(seq)
            first = i * cfg.chunk_members
            n = min(cfg.chunk_members, members - first)
            member_ids = np.array([f"M{j:0{width}d}" for j in range(first + 1, first + n + 1)],
                                  dtype=object)  # fmt: skip
            m = _make_members(rng, n, built)
            tables, chunk_sizes, n_orders = _chunk_tables(rng, m, built, member_ids, order_base)
            order_base += n_orders
            sizes += chunk_sizes
            for name, table in tables.items():
                writers.write(name, table)
        writers.write("truth/campaigns", _truth_campaigns(built, sizes))
    finally:
        writers.close()
    counts = {k: v for k, v in writers.rows.items() if not k.startswith("truth/")}
    manifest = {
        "generator": "pipelines.synthetic",
        "seed": seed,
        "members": members,
        "products": len(built.product_ids),
        "world": world.knobs(),
        "config": asdict(cfg),
        "counts": counts,
        "truth_counts": {k: v for k, v in writers.rows.items() if k.startswith("truth/")},
    }
    (out / "truth" / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return {k: counts.get(k, 0) for k in _SCHEMAS}
