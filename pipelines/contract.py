"""The canonical input format (docs/data-format.md) as data: tables, columns, types.

Everything that reads or writes a shop directory goes through these specs, so the
generator, the adapters and the validator can never disagree about a column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["str", "timestamp", "float", "bool"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = True  # must be present as a column
    nullable: bool = False  # may hold nulls


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    required: bool = False
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type_: ColumnType, required: bool = True, nullable: bool = False) -> Column:
    return Column(name, type_, required, nullable)


ORDER_LINES = Table(
    "order_lines",
    (
        _c("order_id", "str"),
        _c("member_id", "str"),
        _c("ts", "timestamp"),
        _c("product_id", "str", nullable=True),
        _c("quantity", "float"),
        _c("unit_price", "float"),
        _c("discount", "float", required=False),
        _c("coupon_id", "str", required=False, nullable=True),
    ),
    required=True,
)
MEMBERS = Table(
    "members",
    (
        _c("member_id", "str"),
        _c("signup_ts", "timestamp", required=False, nullable=True),
        _c("timezone", "str", required=False, nullable=True),
        _c("country", "str", required=False, nullable=True),
        _c("tier", "str", required=False, nullable=True),
    ),
    key=("member_id",),
)
PRODUCTS = Table(
    "products",
    (
        _c("product_id", "str"),
        _c("category", "str", required=False, nullable=True),
        _c("price", "float", required=False, nullable=True),
        _c("margin_rate", "float", required=False, nullable=True),
        _c("in_stock", "bool", required=False, nullable=True),
    ),
    key=("product_id",),
)
EVENTS = Table(
    "events",
    (
        _c("member_id", "str"),
        _c("ts", "timestamp"),
        _c("event_type", "str"),
        _c("product_id", "str", required=False, nullable=True),
    ),
)
MESSAGES = Table(
    "messages",
    (
        _c("member_id", "str"),
        _c("channel", "str"),
        _c("sent_ts", "timestamp"),
        _c("opened_ts", "timestamp", required=False, nullable=True),
        _c("clicked_ts", "timestamp", required=False, nullable=True),
        _c("campaign_id", "str", required=False, nullable=True),
    ),
)
COUPONS = Table(
    "coupons",
    (
        _c("coupon_id", "str"),
        _c("kind", "str"),
        _c("value", "float"),
        _c("min_spend", "float", required=False, nullable=True),
        _c("category", "str", required=False, nullable=True),
        _c("cost", "float", required=False, nullable=True),
    ),
    key=("coupon_id",),
)
COUPON_OFFERS = Table(
    "coupon_offers",
    (
        _c("member_id", "str"),
        _c("campaign_id", "str"),
        _c("offered_ts", "timestamp"),
        _c("coupon_id", "str", nullable=True),
        _c("redeemed_ts", "timestamp", required=False, nullable=True),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (ORDER_LINES, MEMBERS, PRODUCTS, EVENTS, MESSAGES, COUPONS, COUPON_OFFERS)
}
CHANNELS = ("email", "sms", "push")
COUPON_KINDS = ("percent_off", "amount_off", "free_shipping", "message")
