"""The decision for a member, composed in one place: products, coupon (or none), send time,
churn risk, rule tags, lifecycle stage, value tier and RFM segment, each part with its
reason, its role (``model`` or ``baseline`` for registered models, ``rules`` for the tags
of the snapshot), its version (the registered model version, or the tag snapshot's
as-of date), the policy serving it and the promotion gate's reason for that policy
(``Champions.policies`` / ``Champions.reasons``). Also the products to show with a product
(``similar_products``: bought together and similar), with the same provenance.

:class:`Decider` holds the loaded champions (``models.registry.Champions``) and turns a
member's features into a :class:`MemberDecision`:

- ``decide(member_id, features, now)``: one member, ``features`` a mapping of feature name
  to value as read from the online store (None or NaN = unknown), or None for a member the
  store does not have (a cold-start answer: popular products, no coupon, a segment or
  global send time, no churn risk or tags);
- ``decide(..., category=, exclude=)``: the products of one category only, or never the
  products listed (e.g. the basket's);
- ``decide_many(frame, now)``: every row of a features frame at once (churn and coupon
  vectorised, products through ``recommend_many``), giving the same decisions ``decide``
  gives member by member.

The API, ``memberwise score`` and anything else that decides for members go through it, so
they can never disagree. Pure logic: no feature store, registry or web framework here.

Feature columns read by name (the names of ``features.tags``; the lists of model inputs are
given to the Decider by the caller, from the feature services):

- churn and coupon inputs: ``churn_features`` / ``coupon_features`` (float, NaN allowed);
- send time: ``timezone`` and ``rfm_segment`` (str);
- products: ``country`` (str), the segment a member without purchases is recommended from
  (what members of the same country buy most, reason "popular_in_segment");
- tags and segments: ``tags`` (comma-separated rule tags), ``lifecycle_stage``,
  ``value_tier``, ``rfm_segment``, ``r_score``, ``f_score``, ``m_score``;
- the evidence quoted in reasons: see :data:`EVIDENCE_COLUMNS`;
- coupon-abuse risk: ``abuse_risk`` (0..1, ``models.abuse``), optional: a member at or
  above the Decider's ``abuse_threshold`` is kept out of coupon offers, and the coupon
  reason says so with both numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from models.abuse import AbuseConfig
from models.registry import Champions

MODEL, BASELINE, RULES = "model", "baseline", "rules"
PARTS: tuple[str, ...] = (
    "products", "coupon", "send_time", "churn", "tags", "lifecycle_stage", "value_tier",
    "rfm_segment",
)  # fmt: skip

# what each rule tag's reason quotes, a template over feature columns
TAG_EVIDENCE: dict[str, str] = {
    "high_order_value": "typical order {median_order_value:.2f}, {order_value_ratio:.1f}x the shop's",
    "dormant": "last purchase {recency_days:.0f} days ago",
    "high_frequency": "orders in the high-frequency window: {orders_30d:.0f}",
    "price_sensitive": (
        "{discount_order_share:.0%} of orders discounted, {discount_order_lift:.1f}x the shop's"
    ),
    "warn_activity_down": (
        "orders in the recent window: {orders_recent:.0f}, in the one before: {orders_previous:.0f}"
    ),
    "warn_gap_exceeded": "{gap_ratio:.1f}x the usual purchase cycle since the last order",
}
_QUOTED = {
    t: [f for _, f, _, _ in string.Formatter().parse(s) if f] for t, s in TAG_EVIDENCE.items()
}
PROFILE_COLUMNS: tuple[str, ...] = (
    "timezone", "rfm_segment", "lifecycle_stage", "value_tier", "tags", "r_score", "f_score",
    "m_score", "country",
)  # fmt: skip
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "recency_days", "frequency", "monetary", "orders_recent", "orders_previous", "tenure_days",
    *dict.fromkeys(c for cols in _QUOTED.values() for c in cols),
)  # fmt: skip

ABUSE_COLUMN = "abuse_risk"  # optional: members at or above the threshold get no coupon
_UNKNOWN = "unknown member: no features in the store"
_COUPON_BASELINE = (
    "no coupon: the coupon model has not been promoted (it did not beat giving no coupon "
    "on held-out randomized offers, or there is no such history)"
)
_CHURN_WHAT = {MODEL: "calibrated gradient boosting on the tags and BG/NBD"}
TAG_RULES = "tag_rules"  # the policy of the parts the snapshot's tag rules decide
_RULES_GATE: dict[str, Any] = {"policy": TAG_RULES, "gate_reason": None}


# ---------------------------------------------------------------------------- the parts
@dataclass(frozen=True, slots=True)
class Part:
    """What every part of a decision carries: ``role`` ("model", "baseline" or "rules"),
    ``version`` (registered model version, or the tag snapshot's as-of date; None when
    unknown), a sentence saying why this answer, ``policy`` (the policy serving the part:
    the registered champion's, e.g. "hybrid_tuned(item_weight=1.5)" or "recency_rule", or
    "tag_rules") and ``gate_reason`` (the promotion gate's verdict that made it the
    champion; None for the tag rules, which are not gated, or when the registry has none)."""

    role: str
    version: str | None
    reason: str
    policy: str = field(kw_only=True)
    gate_reason: str | None = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    score: float
    reason: str  # "buy_again", "similar_members" or "popular"


@dataclass(frozen=True, slots=True)
class ProductsPart(Part):
    items: tuple[Product, ...]  # best first


@dataclass(frozen=True, slots=True)
class CouponPart(Part):
    coupon_id: str | None  # None: no coupon
    expected_incremental_margin: float  # the best coupon's, also when none is given


@dataclass(frozen=True, slots=True)
class SendTimePart(Part):
    channel: str
    hour_of_week: int  # 0..167 local, Monday 00:00 = 0
    confidence: float  # 0..1
    timezone: str  # IANA name
    source: str  # "member", "segment" or "global"
    at_utc: datetime
    at_local: datetime


@dataclass(frozen=True, slots=True)
class ChurnPart(Part):
    risk: float | None  # P(no purchase within the horizon); None for an unknown member


@dataclass(frozen=True, slots=True)
class TagsPart(Part):
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LabelPart(Part):
    value: str | None  # a lifecycle stage or a value tier


@dataclass(frozen=True, slots=True)
class RfmPart(Part):
    segment: str | None
    r_score: float | None  # 1..5, None without a purchase
    f_score: float | None
    m_score: float | None


@dataclass(frozen=True, slots=True)
class MemberDecision:
    member_id: str
    known_member: bool  # in the feature store or in the products model's history
    products: ProductsPart
    coupon: CouponPart
    send_time: SendTimePart
    churn: ChurnPart
    tags: TagsPart
    lifecycle_stage: LabelPart
    value_tier: LabelPart
    rfm_segment: RfmPart

    def parts(self) -> dict[str, Part]:
        """Every part by name, in :data:`PARTS` order."""
        return {name: getattr(self, name) for name in PARTS}


@dataclass(frozen=True, slots=True)
class Neighbour:
    product_id: str
    score: float  # the ranking score, comparable within one list
    together: int  # orders (bought together) or members (similar) holding both products
    reason: str


@dataclass(frozen=True, slots=True)
class SimilarProducts(Part):
    """Products to show with a product: ``bought_together`` (in the same orders) and
    ``similar`` (bought by the same members), best first; both empty for a product no
    order holds (``known_product`` False)."""

    product_id: str
    known_product: bool
    bought_together: tuple[Neighbour, ...]
    similar: tuple[Neighbour, ...]


# ---------------------------------------------------------------------------- values
def _num(v: Any) -> float:
    """A float, NaN for None / NA / anything missing."""
    if v is None or v is pd.NA:
        return math.nan
    return float(v)


def _score(v: Any) -> float | None:
    x = _num(v)
    return None if math.isnan(x) else x


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _tags(v: Any) -> tuple[str, ...]:
    return tuple(t for t in v.split(",") if t) if isinstance(v, str) else ()


def _horizon_days(churn: Any) -> int | None:
    """The churn horizon a fitted estimator was built with (BG/NBD alone, or the
    calibrated model's BG/NBD step); None when it cannot be read."""
    h = getattr(churn, "horizon_days", None)
    if h is None:
        steps = getattr(getattr(churn, "estimator", None), "named_steps", None) or {}
        h = getattr(steps.get("bg_nbd"), "horizon_days", None)
    return int(h) if h is not None else None


# ---------------------------------------------------------------------------- the decider
class Decider:
    """Decisions for members from their features and the loaded champions.

    ``churn_features`` / ``coupon_features``: the churn and coupon models' input columns in
    the order they were trained on (the feature services' lists); ``as_of``: the date of
    the tag snapshot the features come from (the tags' version). ``churn_cache_size``:
    per-member churn answers memoised on the feature values (a calibrated ensemble costs
    milliseconds per single row; a member's features change only when the store is
    materialized). ``abuse_threshold``: a member whose ``abuse_risk`` feature is at or
    above it gets no coupon (settings ``insight.abuse_threshold``; None: nobody is kept out).
    """

    def __init__(
        self,
        champions: Champions,
        churn_features: Sequence[str],
        coupon_features: Sequence[str],
        as_of: str | None = None,
        churn_cache_size: int = 100_000,
        abuse_threshold: float | None = AbuseConfig.threshold,
    ) -> None:
        self.champions = champions
        self.abuse_threshold = abuse_threshold
        self.churn_features = list(churn_features)
        self.coupon_features = list(coupon_features)
        self.as_of = as_of
        trained = list(getattr(champions.coupon, "feature_names", None) or [])
        if trained and trained != self.coupon_features:
            raise ValueError(
                f"the coupon model was trained on {trained}, not on {self.coupon_features}: "
                "retrain it (`memberwise run`) or serve the feature service it was trained on"
            )
        n_churn = getattr(champions.churn, "n_features_in_", None)
        if n_churn is not None and n_churn != len(self.churn_features):
            raise ValueError(
                f"the churn model was trained on {n_churn} features, given "
                f"{len(self.churn_features)}: retrain it (`memberwise run`)"
            )
        self._roles = dict(champions.roles)
        self._horizon = _horizon_days(champions.churn)
        self._churn_precomputed: dict[bytes, float] = {}
        self._churn_memo = functools.lru_cache(maxsize=churn_cache_size)(self._churn_bytes)

    # ------------------------------------------------------------------ public
    def decide(
        self,
        member_id: str,
        features: Mapping[str, Any] | None,
        now: datetime,
        n_products: int = 10,
        channel: str | None = None,
        category: str | None = None,
        exclude: Sequence[str] = (),
    ) -> MemberDecision:
        """The decision for one member. ``features``: name -> value (None / NaN = unknown),
        None for a member the store lacks; ``now``: aware UTC instant the send time is
        after; ``channel``: force a message channel; ``category``: only products of this
        category; ``exclude``: product ids never to recommend (e.g. the basket's)."""
        f = features
        churn = coupon = None
        if f is not None:
            xc = np.array([_num(f.get(c)) for c in self.churn_features], dtype=np.float64)
            churn = self._churn_one(xc)
            xk = np.array([_num(f.get(c)) for c in self.coupon_features], dtype=np.float64)
            coupon = self.champions.coupon.decide(xk)
        recs = self.champions.products.recommend(
            member_id,
            n=n_products,
            segment=_text((f or {}).get("country")),
            category=category,
            exclude=exclude,
        )
        filters = (f"; category {category!r}" if category else "") + (
            f"; {len(set(exclude))} product ids excluded" if exclude else ""
        )
        abuse = _score((f or {}).get(ABUSE_COLUMN))
        return self._compose(member_id, f, recs, churn, coupon, now, channel, filters, abuse)

    def decide_many(
        self, frame: pd.DataFrame, now: datetime, n_products: int = 10
    ) -> list[MemberDecision]:
        """``decide`` for every row of ``frame`` (one row per member: ``member_id`` and the
        feature columns), churn and coupon in one vectorised pass each. Every row is a
        member the store has; the answers are those of ``decide`` row by row."""
        need = ["member_id", *self.churn_features, *self.coupon_features, *PROFILE_COLUMNS]
        missing = [c for c in dict.fromkeys(need) if c not in frame.columns]
        if missing:
            raise ValueError(f"the features frame lacks the columns {missing}")
        members = frame["member_id"].astype(str).tolist()
        churn = self._churn_many(frame[self.churn_features])
        coupons = self.champions.coupon.decide_many(frame[self.coupon_features].to_numpy(float))
        segments = [_text(c) for c in frame["country"].tolist()]
        recs = self.champions.products.recommend_many(members, n=n_products, segments=segments)
        cols = [c for c in dict.fromkeys((*PROFILE_COLUMNS, *EVIDENCE_COLUMNS)) if c in frame]
        values = frame[cols].astype(object).where(frame[cols].notna(), None)
        rows = values.to_dict("records")
        abuse = [_score(v) for v in frame[ABUSE_COLUMN]] if ABUSE_COLUMN in frame else None
        return [
            self._compose(m, row, r, float(p), c, now, None, "", abuse[i] if abuse else None)
            for i, (m, row, r, p, c) in enumerate(
                zip(members, rows, recs, churn, coupons, strict=True)
            )
        ]

    def decide_fallback(
        self,
        member_id: str,
        profile: Mapping[str, Any] | None,
        now: datetime,
        n_products: int = 10,
        channel: str | None = None,
        category: str | None = None,
        exclude: Sequence[str] = (),
        why: str = "the member's features could not be read",
    ) -> MemberDecision:
        """The decision when the member's features cannot be read (``why`` says so in every
        part's reason): the products model's answer (the member's own history when it has
        it, else what members of the profile's ``country`` buy most), no coupon, the send
        hour of the member's own engagement or the profile's ``rfm_segment``, in the
        profile's ``timezone``; the profile's RFM segment; no churn risk, tags or labels.
        ``profile``: those three columns as of the tag snapshot (None: nothing known)."""
        g: dict[str, Any] = dict(profile or {})
        recs = self.champions.products.recommend(
            member_id, n=n_products, segment=_text(g.get("country")), category=category,
            exclude=exclude,
        )  # fmt: skip
        filters = (f"; category {category!r}" if category else "") + (
            f"; {len(set(exclude))} product ids excluded" if exclude else ""
        )
        d = self._compose(member_id, g or None, recs, None, None, now, channel, filters)
        note = f"degraded ({why})"
        role, version, gate = self._model_part("coupon")
        churn_role, churn_version, churn_gate = self._model_part("churn")
        unknown_label = LabelPart(RULES, None, f"{note}: unknown", None, **_RULES_GATE)
        seg = _text(g.get("rfm_segment"))
        return dataclasses.replace(
            d,
            products=dataclasses.replace(d.products, reason=f"{note}: {d.products.reason}"),
            coupon=CouponPart(role, version, f"{note}: no coupon", None, 0.0, **gate),
            send_time=dataclasses.replace(d.send_time, reason=f"{note}: {d.send_time.reason}"),
            churn=ChurnPart(churn_role, churn_version, f"{note}: not scored", None, **churn_gate),
            tags=TagsPart(RULES, None, f"{note}: unknown", (), **_RULES_GATE),
            lifecycle_stage=unknown_label,
            value_tier=unknown_label,
            rfm_segment=RfmPart(
                RULES,
                self.as_of if seg else None,
                f"{note}: {seg or 'unknown'} as of the tag snapshot",
                seg,
                None,
                None,
                None,
                **_RULES_GATE,
            ),  # fmt: skip
        )

    def similar_products(self, product_id: str, n: int = 10) -> SimilarProducts:
        """Up to ``n`` products bought together with ``product_id`` and up to ``n`` similar
        ones, from the ``similar`` champion; a ValueError when the champions have none."""
        model = self.champions.similar
        if model is None:
            raise ValueError("no similar-products model among the champions: run `memberwise run`")
        role, version, gate = self._model_part("similar")
        known = bool(model.known(product_id))

        def listed(part: Any, why: str) -> tuple[Neighbour, ...]:
            return tuple(
                Neighbour(x.product_id, float(x.score), int(x.together), why.format(t=x.together))
                for x in part.neighbours(product_id, n)
            )

        together = listed(model.bought_together, "in {t} orders with it")
        similar = listed(model.similar, "bought by {t} of its buyers")
        if not known:
            since = f" up to {self.as_of}" if self.as_of else ""
            reason = f"no order{since} holds {product_id}: no neighbours yet"
        else:
            counts = "in the same orders (bought together) and members' histories (similar)"
            if role == BASELINE:
                reason = f"most often {counts}, raw counts"
            else:
                reason = (
                    f"most often {counts}, discounting products bought with everything "
                    f"({gate['policy']})"
                )
        return SimilarProducts(
            role, version, reason, product_id, known, together, similar, **gate
        )  # fmt: skip

    def precompute(self, frame: pd.DataFrame) -> int:
        """Decide churn and coupon for every row of ``frame`` (a snapshot's features) in one
        vectorised pass each and keep the answers, keyed by the feature values, for
        ``decide``: a request whose features match does no model evaluation. Returns the
        number of rows."""
        X = np.ascontiguousarray(frame[self.churn_features].to_numpy(np.float64))
        risk = self._churn_many(frame[self.churn_features])
        self._churn_precomputed = {
            row.tobytes(): float(p) for row, p in zip(X, risk.tolist(), strict=True)
        }
        self.champions.coupon.precompute(frame[self.coupon_features].to_numpy(np.float64))
        return len(frame)

    # ------------------------------------------------------------------ churn
    def _churn_many(self, X: pd.DataFrame) -> np.ndarray:
        X = X.astype(np.float64)
        X.columns = self.churn_features
        return self.champions.churn.predict_proba(X)[:, 1].astype(np.float64)

    def _churn_one(self, x: np.ndarray) -> float:
        key = x.tobytes()
        hit = self._churn_precomputed.get(key)
        return hit if hit is not None else self._churn_memo(key)

    def _churn_bytes(self, key: bytes) -> float:
        from threadpoolctl import threadpool_limits

        x = np.frombuffer(key, dtype=np.float64)[None, :]
        # one row: OpenMP threads only add synchronisation, and on a busy machine their
        # spin-waits cost hundreds of milliseconds per call
        with threadpool_limits(limits=1, user_api="openmp"):
            return float(self._churn_many(pd.DataFrame(x, columns=self.churn_features))[0])

    # ------------------------------------------------------------------ composition
    def _model_part(self, name: str) -> tuple[str, str | None, dict[str, Any]]:
        """Role, version and the ``policy`` / ``gate_reason`` keywords of a model's part."""
        role = self._roles.get(name, MODEL)
        gate = {
            "policy": self.champions.policies.get(name) or role,
            "gate_reason": self.champions.reasons.get(name) or None,
        }
        return role, self.champions.versions.get(name), gate

    def _compose(
        self,
        member_id: str,
        f: Mapping[str, Any] | None,
        recs: Sequence[tuple[str, float, str]],
        churn: float | None,
        coupon: tuple[str | None, float, str] | None,
        now: datetime,
        channel: str | None,
        filters: str = "",
        abuse: float | None = None,
    ) -> MemberDecision:
        bought = self.champions.products.known_member(member_id)
        known = f is not None or bought
        g: Mapping[str, Any] = f or {}
        segment = _text(g.get("rfm_segment"))
        st = self.champions.send_time.next_send(
            member_id, now, channel=channel, segment=segment, timezone=_text(g.get("timezone"))
        )
        return MemberDecision(
            member_id=member_id,
            known_member=known,
            products=self._products(recs, known, bought, _text(g.get("country")), filters),
            coupon=self._coupon(coupon, abuse),
            send_time=self._send_time(st, channel),
            churn=self._churn(churn),
            tags=self._tag_part(f),
            lifecycle_stage=self._lifecycle(f),
            value_tier=self._value_tier(f),
            rfm_segment=self._rfm(f),
        )

    def _products(
        self,
        recs: Sequence[tuple[str, float, str]],
        known: bool,
        bought: bool,
        country: str | None,
        filters: str,
    ) -> ProductsPart:
        role, version, gate = self._model_part("products")
        items = tuple(Product(p, float(s), r) for p, s, r in recs)
        counts = Counter(p.reason for p in items)
        mix = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) or "none"
        mix += filters
        if not known:
            reason = f"unknown member: the most popular products ({mix})"
        elif not bought:
            where = f"members in {country}" if country else "all members (no country known)"
            reason = f"no purchase yet: what {where} buy most ({mix})"
        elif role == BASELINE:
            reason = (
                f"the simple policy {gate['policy']}: the blended model has not been "
                f"promoted ({mix})"
            )
        else:
            reason = f"ALS, item-item similarity and buy-again blend ({mix})"
        return ProductsPart(role, version, reason, items, **gate)

    def _coupon(
        self, decided: tuple[str | None, float, str] | None, abuse: float | None = None
    ) -> CouponPart:
        role, version, gate = self._model_part("coupon")
        if decided is None:
            return CouponPart(
                role, version, "unknown member: no coupon until the member has history", None, 0.0,
                **gate,
            )  # fmt: skip
        coupon_id, margin, reason = decided
        limit = self.abuse_threshold
        if abuse is not None and limit is not None and abuse >= limit:
            why = (
                f"kept out of coupon offers: coupon-abuse risk {abuse:.2f} at or above {limit:.2f}"
            )
            return CouponPart(role, version, why, None, float(margin), **gate)
        if coupon_id is None and role == BASELINE:
            reason = _COUPON_BASELINE
        return CouponPart(role, version, reason, coupon_id, float(margin), **gate)

    def _send_time(self, st: Any, channel: str | None) -> SendTimePart:
        role, version, gate = self._model_part("send_time")
        if st.source == "member":
            reason = "the member's own engagement hours"
        elif st.source == "segment":
            reason = "no engagement history: the best hour of the member's RFM segment"
        elif role == BASELINE:
            reason = "the best hour of everyone on this channel (the baseline)"
        else:
            reason = "no engagement history or segment: the best hour of everyone"
        reason += f", outside quiet hours, in {st.timezone}"
        if channel is not None:
            reason += "; channel set by the request"
        return SendTimePart(
            role, version, reason, st.channel, int(st.hour_of_week), float(st.confidence),
            st.timezone, st.source, st.at_utc, st.at_local, **gate,
        )  # fmt: skip

    def _churn(self, risk: float | None) -> ChurnPart:
        role, version, gate = self._model_part("churn")
        if risk is None:
            return ChurnPart(role, version, "unknown member: no history to score", None, **gate)
        within = f"within {self._horizon} days" if self._horizon else "within the horizon"
        what = _CHURN_WHAT[MODEL] if role == MODEL else f"the {gate['policy']} baseline"
        reason = f"{risk:.0%} chance of no purchase {within} ({what})"
        return ChurnPart(role, version, reason, risk, **gate)

    def _tag_part(self, f: Mapping[str, Any] | None) -> TagsPart:
        if f is None:
            return TagsPart(RULES, None, _UNKNOWN, (), **_RULES_GATE)
        tags = _tags(f.get("tags"))
        if not tags:
            return TagsPart(RULES, self.as_of, "no rule tag holds", (), **_RULES_GATE)
        said = []
        for t in tags:
            values = {c: _num(f.get(c)) for c in _QUOTED.get(t, ())}
            quote = values and not any(math.isnan(v) for v in values.values())
            said.append(f"{t}: {TAG_EVIDENCE[t].format(**values)}" if quote else t)
        return TagsPart(RULES, self.as_of, "; ".join(said), tags, **_RULES_GATE)

    def _lifecycle(self, f: Mapping[str, Any] | None) -> LabelPart:
        if f is None:
            return LabelPart(RULES, None, _UNKNOWN, None, **_RULES_GATE)
        stage = _text(f.get("lifecycle_stage"))
        tenure = _num(f.get("tenure_days"))
        member_for = f"member for {tenure:.0f} days" if not math.isnan(tenure) else "no tenure"
        if not _num(f.get("frequency")) > 0:
            why = f"no purchase yet, {member_for}"
        else:
            rec, now_, before = (
                _num(f.get(c)) for c in ("recency_days", "orders_recent", "orders_previous")
            )
            why = (
                f"last purchase {rec:.0f} days ago, orders in the recent window: {now_:.0f}, "
                f"in the one before: {before:.0f}, {member_for}"
            )
        return LabelPart(RULES, self.as_of, f"{stage or 'no stage'}: {why}", stage, **_RULES_GATE)

    def _value_tier(self, f: Mapping[str, Any] | None) -> LabelPart:
        if f is None:
            return LabelPart(RULES, None, _UNKNOWN, None, **_RULES_GATE)
        tier = _text(f.get("value_tier"))
        spent = _num(f.get("monetary"))
        spend = f"{spent:.2f} spent in total" if not math.isnan(spent) else "spend unknown"
        why = f"{tier or 'no tier'}: {spend}; tiers split members by total spend, top tier first"
        return LabelPart(RULES, self.as_of, why, tier, **_RULES_GATE)

    def _rfm(self, f: Mapping[str, Any] | None) -> RfmPart:
        if f is None:
            return RfmPart(RULES, None, _UNKNOWN, None, None, None, None, **_RULES_GATE)
        seg = _text(f.get("rfm_segment"))
        r, fr, m = (_score(f.get(c)) for c in ("r_score", "f_score", "m_score"))
        if r is None or fr is None:
            why = f"{seg or 'no segment'}: no purchase, so no RFM scores"
        else:
            mm = f", monetary {m:.0f}" if m is not None else ""
            why = (
                f"{seg or 'no segment'}: recency score {r:.0f}, frequency {fr:.0f}{mm} "
                "(quintiles among buyers, 5 = best)"
            )
        return RfmPart(RULES, self.as_of, why, seg, r, fr, m, **_RULES_GATE)


# ---------------------------------------------------------------------------- tables
def decisions_frame(decisions: Sequence[MemberDecision]) -> pd.DataFrame:
    """One row per decision, for batch outputs: member_id, known_member, churn_risk,
    coupon_id (None for no coupon), expected_incremental_margin, coupon_reason,
    send_channel, send_at (UTC), send_at_local (ISO text), send_hour_of_week,
    send_timezone, send_confidence, send_source, products (ids, best first),
    product_scores, product_reasons, tags, lifecycle_stage, value_tier, rfm_segment,
    r/f/m_score, then ``<part>_role``, ``<part>_version``, ``<part>_reason``,
    ``<part>_policy`` and ``<part>_gate_reason`` of every part."""
    d = decisions
    out = pd.DataFrame({
        "member_id": [x.member_id for x in d],
        "known_member": [x.known_member for x in d],
        "churn_risk": np.array([_num(x.churn.risk) for x in d], dtype=np.float64),
        "coupon_id": [x.coupon.coupon_id for x in d],
        "expected_incremental_margin": np.array(
            [x.coupon.expected_incremental_margin for x in d], dtype=np.float64
        ),
        "coupon_reason": [x.coupon.reason for x in d],
        "send_channel": [x.send_time.channel for x in d],
        "send_at": pd.to_datetime([x.send_time.at_utc for x in d], utc=True),
        "send_at_local": [x.send_time.at_local.isoformat() for x in d],
        "send_hour_of_week": np.array([x.send_time.hour_of_week for x in d], dtype=np.int64),
        "send_timezone": [x.send_time.timezone for x in d],
        "send_confidence": np.array([x.send_time.confidence for x in d], dtype=np.float64),
        "send_source": [x.send_time.source for x in d],
        "products": [[p.product_id for p in x.products.items] for x in d],
        "product_scores": [[p.score for p in x.products.items] for x in d],
        "product_reasons": [[p.reason for p in x.products.items] for x in d],
        "tags": [list(x.tags.tags) for x in d],
        "lifecycle_stage": [x.lifecycle_stage.value for x in d],
        "value_tier": [x.value_tier.value for x in d],
        "rfm_segment": [x.rfm_segment.segment for x in d],
        **{s: np.array([_num(getattr(x.rfm_segment, s)) for x in d], dtype=np.float64)
           for s in ("r_score", "f_score", "m_score")},
    })  # fmt: skip
    for name in PARTS:
        for attr in (f.name for f in fields(Part)):
            out[f"{name}_{attr}"] = [getattr(getattr(x, name), attr) for x in d]
    return out
