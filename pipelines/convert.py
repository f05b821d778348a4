"""Adapters from two public retail datasets to the canonical format (docs/data-format.md).

Each adapter reads the dataset's folder as published (never changing it), writes Parquet
tables into ``out_dir`` and returns counts: rows written per table, and source rows dropped
per reason (``dropped_*``: a row is counted under the first reason it meets, in the order
the adapter's docstring lists them).

UCI Online Retail (``convert_online_retail``): order_lines, members, products.
The Complete Journey (``convert_complete_journey``): order_lines, members, products,
coupons, coupon_offers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Country names as the Online Retail source spells them -> IANA timezone (the capital's).
_RETAIL_COUNTRY_TIMEZONES: tuple[tuple[str, str], ...] = (
    ("United Kingdom", "Europe/London"),
    ("EIRE", "Europe/Dublin"),
    ("Channel Islands", "Europe/Jersey"),
    ("Germany", "Europe/Berlin"),
    ("France", "Europe/Paris"),
    ("Spain", "Europe/Madrid"),
    ("Portugal", "Europe/Lisbon"),
    ("Netherlands", "Europe/Amsterdam"),
    ("Belgium", "Europe/Brussels"),
    ("Switzerland", "Europe/Zurich"),
    ("Austria", "Europe/Vienna"),
    ("Italy", "Europe/Rome"),
    ("Malta", "Europe/Malta"),
    ("Greece", "Europe/Athens"),
    ("Cyprus", "Asia/Nicosia"),
    ("Norway", "Europe/Oslo"),
    ("Sweden", "Europe/Stockholm"),
    ("Denmark", "Europe/Copenhagen"),
    ("Finland", "Europe/Helsinki"),
    ("Iceland", "Atlantic/Reykjavik"),
    ("Poland", "Europe/Warsaw"),
    ("Czech Republic", "Europe/Prague"),
    ("Lithuania", "Europe/Vilnius"),
    ("Israel", "Asia/Jerusalem"),
    ("Lebanon", "Asia/Beirut"),
    ("Bahrain", "Asia/Bahrain"),
    ("Saudi Arabia", "Asia/Riyadh"),
    ("United Arab Emirates", "Asia/Dubai"),
    ("RSA", "Africa/Johannesburg"),
    ("Japan", "Asia/Tokyo"),
    ("Hong Kong", "Asia/Hong_Kong"),
    ("Singapore", "Asia/Singapore"),
    ("Australia", "Australia/Sydney"),
    ("USA", "America/New_York"),
    ("Canada", "America/Toronto"),
    ("Brazil", "America/Sao_Paulo"),
)


@dataclass(frozen=True)
class OnlineRetailConfig:
    """How the Online Retail source is read.

    ``non_product_codes`` (compared case-insensitively) and ``non_product_prefixes`` are
    stock codes that are not goods: postage (POST, DOT, C2 "carriage"), fees (AMAZONFEE,
    BANK CHARGES, CRUK commission), manual and discount adjustments (M, D, B "adjust bad
    debt"), samples (S), a 0.001 placeholder (PADS) and gift vouchers. Codes of the
    "DCGS..." family are real goods sold through another channel and are kept.
    """

    file: str = "online_retail.parquet"
    source_timezone: str = "Europe/London"  # InvoiceDate is UK wall-clock time
    non_product_codes: tuple[str, ...] = (
        "POST", "DOT", "C2", "M", "D", "S", "B", "AMAZONFEE", "BANK CHARGES", "CRUK", "PADS",
    )  # fmt: skip
    non_product_prefixes: tuple[str, ...] = ("GIFT_",)
    uppercase_stock_codes: bool = True  # "15056bl" and "15056BL" are the same product
    country_timezones: tuple[tuple[str, str], ...] = _RETAIL_COUNTRY_TIMEZONES
    default_timezone: str = "Europe/London"  # "Unspecified", "European Community", unknown


@dataclass(frozen=True)
class CompleteJourneyConfig:
    """How The Complete Journey is read.

    Coupons: the source lists coupon UPCs per campaign but not their face value, and does
    not tie redemptions to transaction lines (the line sample holds none of them). Each
    campaign's booklet becomes one coupon ``{booklet_prefix}{campaign_id}`` of kind
    ``amount_off`` with ``value`` 0.0, meaning "amount unknown in this source"; its
    category is the department of its eligible products when they share one.
    """

    timezone: str = "America/New_York"  # the stores' zone; dates are local days
    country: str = "US"
    category_column: str = "department"  # 32 departments (product_category has ~300)
    booklet_prefix: str = "booklet-"
    booklet_kind: str = "amount_off"
    booklet_value: float = 0.0  # unknown in this source
    demographic_columns: tuple[str, ...] = (
        "age", "income", "home_ownership", "marital_status", "household_size",
        "household_comp", "kids_count",
    )  # fmt: skip


# ---------------------------------------------------------------- shared helpers
def localize_to_utc(
    wall: pd.Series, timezone: str, sequence: pd.Series | None = None
) -> tuple[pd.Series, dict[str, int]]:
    """Naive local wall-clock times in ``timezone`` -> naive UTC ``datetime64[us]``.

    Times skipped by a spring-forward change are moved forward by the gap (a 01:30 that
    never happened is read as 02:30 summer time). Times that happen twice in an autumn
    change are read as the first (summer time) occurrence, unless ``sequence`` (a number
    that grows with time, such as an invoice number) shows the clock went back: within the
    repeated hour of a day, a row whose wall time is earlier than that of a row with a lower
    sequence number, and every later row, is the second (standard time) occurrence.
    Returns the UTC times and the counts of ambiguous and nonexistent rows.
    """
    import pandas as pd

    idx = pd.DatetimeIndex(pd.to_datetime(wall)).as_unit("us")
    n = len(idx)
    kw = {"nonexistent": "shift_forward"}
    first = idx.tz_localize(timezone, ambiguous=np.ones(n, dtype=bool), **kw)
    second = idx.tz_localize(timezone, ambiguous=np.zeros(n, dtype=bool), **kw)
    first_utc = first.tz_convert("UTC").tz_localize(None).to_numpy()
    second_utc = second.tz_convert("UTC").tz_localize(None).to_numpy()
    ambiguous = first_utc != second_utc
    shifted = first.tz_localize(None).to_numpy() != idx.to_numpy()
    summer = np.ones(n, dtype=bool)
    if sequence is not None and ambiguous.any():
        pos = np.flatnonzero(ambiguous)
        amb = pd.DataFrame({
            "day": idx[pos].normalize(),
            "seq": np.asarray(sequence)[pos],
            "wall": idx[pos],
            "pos": pos,
        }).sort_values(["day", "seq"], kind="stable")  # fmt: skip
        prev_max = amb.groupby("day")["wall"].cummax().groupby(amb["day"]).shift(1)
        went_back = (amb["wall"] < prev_max).fillna(False).astype(bool)
        standard = went_back.groupby(amb["day"]).cummax()
        summer[amb.loc[standard, "pos"].to_numpy()] = False
    utc = np.where(summer, first_utc, second_utc).astype("datetime64[us]")
    counts = {"ambiguous": int(ambiguous.sum()), "nonexistent": int(shifted.sum())}
    return pd.Series(utc, index=wall.index, name=wall.name), counts


def _per_value(
    s: pd.Series, fn: Callable[[pd.Series], pd.Series], dtype: str = "string"
) -> pd.Series:
    """``fn`` applied once per distinct value of ``s`` (string work on a few thousand
    distinct ids instead of every row), as ``dtype``; nulls stay null."""
    import pandas as pd

    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    mapped = fn(pd.Series(uniques)).to_numpy(dtype=object)
    values = np.full(len(codes), None, dtype=object)
    ok = codes >= 0
    values[ok] = mapped[codes[ok]]
    return pd.Series(values, index=s.index, dtype=dtype)


def _id(s: pd.Series) -> pd.Series:
    """Ids as strings ("17850", not "17850.0"); nulls stay null.

    Whole numbers that an earlier export wrote in scientific notation ("9e+05",
    "4.0128e+10") are written out in full ("900000", "40128000000").
    """
    import pandas as pd

    if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
        s = s.astype("Int64")
    return _per_value(s, _id_text)


def _id_text(u: pd.Series) -> pd.Series:
    out = u.astype("string").str.strip()
    sci = out.str.fullmatch(r"\d+(\.\d+)?[eE]\+\d+").fillna(False).astype(bool)
    if sci.any():
        whole = [str(int(Decimal(v))) if Decimal(v) == int(Decimal(v)) else v for v in out[sci]]
        out[sci] = whole
    return out


def _write(df: pd.DataFrame, out_dir: Path, name: str) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out_dir / f"{name}.parquet", index=False)
    return len(df)


def _first_reason(masks: list[tuple[str, pd.Series]], index: pd.Index) -> pd.Series:
    """For each row the name of the first mask that holds ('' = keep)."""
    import pandas as pd

    reason = pd.Series("", index=index, dtype="object")
    for name, mask in masks:
        reason[mask.fillna(False).astype(bool) & (reason == "")] = name
    return reason


def _mode(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Most frequent value per key (ties: the alphabetically first), indexed by key."""
    import pandas as pd

    df = pd.DataFrame({"k": keys.to_numpy(), "v": values.to_numpy()}).dropna()
    n = df.groupby(["k", "v"]).size().rename("n").reset_index()
    n = n.sort_values(["k", "n", "v"], ascending=[True, False, True], kind="stable")
    return n.drop_duplicates("k").set_index("k")["v"]


# ---------------------------------------------------------------- UCI Online Retail
def convert_online_retail(
    source_dir: Path, out_dir: Path, config: OnlineRetailConfig | None = None
) -> dict[str, int]:
    """Convert UCI Online Retail into order_lines, members and products.

    - order_lines: order_id = InvoiceNo (a cancellation keeps its "C" number and its
      negative quantity), member_id = CustomerID, product_id = StockCode (upper-cased),
      quantity, unit_price = UnitPrice (GBP), ts = InvoiceDate read as Europe/London wall
      time, in UTC (see :func:`localize_to_utc`; the invoice number orders repeated hours).
      Dropped, in this order: rows without a customer (``dropped_no_customer``), non-goods
      stock codes (``dropped_non_product``), negative prices (``dropped_negative_price``),
      zero quantities (``dropped_zero_quantity``).
    - members: every customer of the source; country = their most frequent Country,
      timezone from it (default Europe/London).
    - products: every kept stock code; category null (the source has none); price = median
      unit price of its purchase lines; description = its most frequent Description.
    """
    import pandas as pd

    cfg = config or OnlineRetailConfig()
    src = pd.read_parquet(Path(source_dir) / cfg.file)

    def normalise(u: pd.Series) -> pd.Series:
        u = u.astype("string").str.strip()
        return u.str.upper() if cfg.uppercase_stock_codes else u

    def is_non_product(u: pd.Series) -> pd.Series:
        upper = u.astype("string").str.strip().str.upper()
        out = upper.isin([c.upper() for c in cfg.non_product_codes])
        for prefix in cfg.non_product_prefixes:
            out |= upper.str.startswith(prefix.upper())
        return out.astype(bool)

    code = _per_value(src["StockCode"], normalise)
    non_product = _per_value(src["StockCode"], is_non_product, "boolean").fillna(False)
    customer = _id(src["CustomerID"])
    reason = _first_reason(
        [
            ("dropped_no_customer", customer.isna()),
            ("dropped_non_product", non_product),
            ("dropped_negative_price", src["UnitPrice"] < 0),
            ("dropped_zero_quantity", src["Quantity"] == 0),
        ],
        src.index,
    )
    keep = reason == ""
    invoice = _id(src["InvoiceNo"])
    sequence = pd.to_numeric(
        _per_value(src["InvoiceNo"], lambda u: u.astype("string").str.extract(r"(\d+)")[0]),
        errors="coerce",
    )
    ts, dst = localize_to_utc(src.loc[keep, "InvoiceDate"], cfg.source_timezone,
                              sequence[keep])  # fmt: skip
    lines = pd.DataFrame({
        "order_id": invoice[keep],
        "member_id": customer[keep],
        "ts": ts,
        "product_id": code[keep],
        "quantity": src.loc[keep, "Quantity"].astype("float64"),
        "unit_price": src.loc[keep, "UnitPrice"].astype("float64"),
    }).reset_index(drop=True)  # fmt: skip

    has_customer = customer.notna()
    country = _mode(customer[has_customer], src.loc[has_customer, "Country"])
    zones = dict(cfg.country_timezones)
    members = pd.DataFrame({"member_id": country.index.astype(str),
                            "country": country.to_numpy()})  # fmt: skip
    members["timezone"] = members["country"].map(zones).fillna(cfg.default_timezone)
    members = members.astype({"member_id": "string", "country": "string", "timezone": "string"})

    buys = lines[lines["quantity"] > 0]
    price = buys.groupby("product_id")["unit_price"].median()
    price = price.reindex(lines["product_id"].unique()).fillna(
        lines.groupby("product_id")["unit_price"].median()
    )
    desc = _mode(code[keep], src.loc[keep, "Description"])
    products = pd.DataFrame({
        "product_id": pd.Series(price.index, dtype="string"),
        "category": pd.Series(pd.NA, index=range(len(price)), dtype="string"),
        "price": price.to_numpy(dtype="float64"),
    })  # fmt: skip
    products["description"] = products["product_id"].map(desc).astype("string")
    products = products.sort_values("product_id", kind="stable").reset_index(drop=True)

    out_dir = Path(out_dir)
    counts = {
        "source_rows": len(src),
        "order_lines": _write(lines, out_dir, "order_lines"),
        "cancellation_lines": int(lines["order_id"].str.startswith("C").sum()),
        "members": _write(members, out_dir, "members"),
        "products": _write(products, out_dir, "products"),
    }
    for name in ("dropped_no_customer", "dropped_non_product", "dropped_negative_price",
                 "dropped_zero_quantity"):  # fmt: skip
        counts[name] = int((reason == name).sum())
    counts["ts_ambiguous_dst"] = dst["ambiguous"]
    counts["ts_nonexistent_dst"] = dst["nonexistent"]
    return counts


# ---------------------------------------------------------------- The Complete Journey
def convert_complete_journey(
    source_dir: Path, out_dir: Path, config: CompleteJourneyConfig | None = None
) -> dict[str, int]:
    """Convert The Complete Journey into order_lines, members, products, coupons and
    coupon_offers.

    - order_lines (from transactions_sample): order_id = basket_id, member_id =
      household_id, product_id, quantity, ts = transaction_timestamp_utc, unit_price =
      shelf price before discounts = (sales_value + retail_disc + coupon_disc +
      coupon_match_disc) / quantity, discount = retail_disc + coupon_disc +
      coupon_match_disc, coupon_id null (the sample does not tie redemptions to lines).
      Dropped, in this order: zero quantity (``dropped_zero_quantity``), a negative price
      or discount (``dropped_negative_price``).
    - products: the product catalogue plus any product sold but not listed; category =
      department; price = median shelf price in the sample (null when not sold in it).
    - members: every household seen anywhere (transactions, campaigns, redemptions,
      demographics); timezone America/New_York, country US; demographics as extra columns.
    - coupons: one booklet per campaign (see :class:`CompleteJourneyConfig`), with extra
      columns campaign_type and upc_count.
    - coupon_offers: one row per (household, campaign) of ``campaigns``; offered_ts =
      the campaign's start_date, coupon_id = its booklet, redeemed_ts = the household's
      first redemption_date in that campaign (dates: local midnight, in UTC). The
      campaigns were targeted, not randomized: there are no control rows.
    """
    import pandas as pd

    cfg = config or CompleteJourneyConfig()
    src = Path(source_dir)
    tx = pd.read_parquet(src / "transactions_sample.parquet")
    catalogue = pd.read_parquet(src / "products.parquet")
    campaigns = pd.read_parquet(src / "campaigns.parquet")
    descriptions = pd.read_parquet(src / "campaign_descriptions.parquet")
    upcs = pd.read_parquet(src / "coupons.parquet")
    redemptions = pd.read_parquet(src / "coupon_redemptions.parquet")
    demographics = pd.read_parquet(src / "demographics.parquet")

    disc_cols = ["retail_disc", "coupon_disc", "coupon_match_disc"]
    discount = tx[disc_cols].fillna(0.0).sum(axis=1).astype("float64")
    quantity = tx["quantity"].astype("float64")
    gross = tx["sales_value"].astype("float64") + discount
    unit_price = gross / quantity.where(quantity != 0)
    reason = _first_reason(
        [
            ("dropped_zero_quantity", quantity == 0),
            ("dropped_negative_price", (unit_price < 0) | (tx[disc_cols] < 0).any(axis=1)),
        ],
        tx.index,
    )
    keep = reason == ""
    lines = pd.DataFrame({
        "order_id": _id(tx.loc[keep, "basket_id"]),
        "member_id": _id(tx.loc[keep, "household_id"]),
        "ts": pd.to_datetime(tx.loc[keep, "transaction_timestamp_utc"]).astype("datetime64[us]"),
        "product_id": _id(tx.loc[keep, "product_id"]),
        "quantity": quantity[keep],
        "unit_price": unit_price[keep],
        "discount": discount[keep],
        "coupon_id": pd.Series(pd.NA, index=tx.index[keep], dtype="string"),
    }).reset_index(drop=True)  # fmt: skip

    cat = catalogue[["product_id", cfg.category_column]].rename(
        columns={cfg.category_column: "category"}
    )
    cat = cat.assign(product_id=_id(cat["product_id"]), category=cat["category"].astype("string"))
    unlisted = sorted(set(lines["product_id"].dropna()) - set(cat["product_id"]))
    cat = pd.concat(
        [cat, pd.DataFrame({"product_id": pd.Series(unlisted, dtype="string"),
                            "category": pd.Series(pd.NA, index=range(len(unlisted)),
                                                  dtype="string")})],
        ignore_index=True,
    )  # fmt: skip
    price = lines.groupby("product_id")["unit_price"].median()
    products = cat.assign(price=cat["product_id"].map(price).astype("float64"))
    products = products.drop_duplicates("product_id").sort_values("product_id", kind="stable")

    ids = pd.concat([_id(x) for x in (tx["household_id"], campaigns["household_id"],
                                      redemptions["household_id"],
                                      demographics["household_id"])])  # fmt: skip
    members = pd.DataFrame({"member_id": pd.Series(sorted(ids.dropna().unique()),
                                                   dtype="string")})  # fmt: skip
    members["timezone"] = pd.Series(cfg.timezone, index=members.index, dtype="string")
    members["country"] = pd.Series(cfg.country, index=members.index, dtype="string")
    demo = demographics.assign(member_id=_id(demographics["household_id"]))
    demo = demo[["member_id", *[c for c in cfg.demographic_columns if c in demo]]]
    demo = demo.drop_duplicates("member_id").astype("string")
    members = members.merge(demo, on="member_id", how="left")

    camp = descriptions.assign(campaign_id=_id(descriptions["campaign_id"]))
    start, _ = localize_to_utc(pd.to_datetime(camp["start_date"]), cfg.timezone)
    camp = camp.assign(offered_ts=start.to_numpy())
    upcs = upcs.assign(campaign_id=_id(upcs["campaign_id"]), product_id=_id(upcs["product_id"]))
    upcs = upcs.merge(cat, on="product_id", how="left")
    per_campaign = upcs.groupby("campaign_id").agg(
        upc_count=("coupon_upc", "nunique"), departments=("category", "nunique"),
        department=("category", "first"),
    )  # fmt: skip
    camp = camp.merge(per_campaign, left_on="campaign_id", right_index=True, how="left")
    single = camp["departments"].eq(1)
    coupons = pd.DataFrame({
        "coupon_id": (cfg.booklet_prefix + camp["campaign_id"]).astype("string"),
        "kind": pd.Series(cfg.booklet_kind, index=camp.index, dtype="string"),
        "value": np.full(len(camp), cfg.booklet_value, dtype="float64"),
        "min_spend": np.full(len(camp), np.nan, dtype="float64"),
        "category": camp["department"].where(single).astype("string"),
        "campaign_type": camp["campaign_type"].astype("string"),
        "upc_count": camp["upc_count"].fillna(0).astype("int64"),
    }).sort_values("coupon_id", kind="stable")  # fmt: skip

    offers = campaigns.assign(member_id=_id(campaigns["household_id"]),
                              campaign_id=_id(campaigns["campaign_id"]))  # fmt: skip
    offers = offers[["member_id", "campaign_id"]].drop_duplicates()
    offers = offers.merge(camp[["campaign_id", "offered_ts"]], on="campaign_id", how="left")
    red = redemptions.assign(member_id=_id(redemptions["household_id"]),
                             campaign_id=_id(redemptions["campaign_id"]))  # fmt: skip
    red_ts, _ = localize_to_utc(pd.to_datetime(red["redemption_date"]), cfg.timezone)
    red = red.assign(redeemed_ts=red_ts.to_numpy())
    first_red = red.groupby(["member_id", "campaign_id"], as_index=False)["redeemed_ts"].min()
    offers = offers.merge(first_red, on=["member_id", "campaign_id"], how="left")
    offers["coupon_id"] = (cfg.booklet_prefix + offers["campaign_id"]).astype("string")
    offers = offers[["member_id", "campaign_id", "offered_ts", "coupon_id", "redeemed_ts"]]
    offers = offers.astype({"offered_ts": "datetime64[us]", "redeemed_ts": "datetime64[us]"})
    offers = offers.sort_values(["campaign_id", "member_id"], kind="stable")
    unmatched = red.merge(offers[["member_id", "campaign_id"]], how="left", indicator=True)

    out_dir = Path(out_dir)
    counts = {
        "source_rows": len(tx),
        "order_lines": _write(lines, out_dir, "order_lines"),
        "dropped_zero_quantity": int((reason == "dropped_zero_quantity").sum()),
        "dropped_negative_price": int((reason == "dropped_negative_price").sum()),
        "lines_with_unlisted_product": int(lines["product_id"].isin(unlisted).sum()),
        "members": _write(members, out_dir, "members"),
        "members_with_demographics": int(members["age"].notna().sum()) if "age" in members else 0,
        "products": _write(products.reset_index(drop=True), out_dir, "products"),
        "coupons": _write(coupons.reset_index(drop=True), out_dir, "coupons"),
        "coupon_offers": _write(offers.reset_index(drop=True), out_dir, "coupon_offers"),
        "offers_redeemed": int(offers["redeemed_ts"].notna().sum()),
        "redemptions_without_offer": int((unmatched["_merge"] == "left_only").sum()),
    }
    return counts
