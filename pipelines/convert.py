"""Adapters from three public retail datasets to the canonical format (docs/data-format.md).

Each adapter reads the dataset's folder as published (never changing it), writes Parquet
tables into ``out_dir`` and returns counts: rows written per table, and source rows dropped
per reason (``dropped_*``: a row is counted under the first reason it meets, in the order
the adapter's docstring lists them).

UCI Online Retail (``convert_online_retail``): order_lines, members, products.
The Complete Journey (``convert_complete_journey``): order_lines, members, products,
coupons, coupon_offers.
Hillstrom's e-mail experiment (``convert_hillstrom``): members, products, order_lines,
events, coupons (kind ``message``, with a cost per send), coupon_offers with its control.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
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


# ---------------------------------------------------------------- Hillstrom e-mail experiment
_HILLSTROM_ARMS = {"Mens E-Mail": "mens", "Womens E-Mail": "womens", "No E-Mail": None}


@dataclass(frozen=True)
class HillstromConfig:
    """How the MineThatData e-mail experiment (Hillstrom, 2008) is read.

    The source has no dates, costs or margins; these are the assumptions, all settings:

    - ``campaign_date``: the day the e-mails went out (at ``send_hour_utc``). History is
      dated back from it and the outcome forward, so a backtest as of the day before
      (:func:`hillstrom_as_of`) sees the history and scores the campaign.
    - ``cost_per_send`` (currency per e-mail, default 0.10): the ``cost`` of each message
      coupon. About half the women's e-mail's mean incremental margin at the default margin
      rate (0.43 x 0.30 = 0.13 per customer), so whom to send to is a real choice.
    - ``margin_rate`` (0..1, default 0.30): the margin rate of every product, the outcome's
      included.
    - ``outcome_days``: the tracked response window (two weeks in the source).
    - ``seed``: draws the moments of visits and purchases inside that window.
    """

    file: str = "hillstrom.parquet"  # or hillstrom.csv, the original export
    campaign_date: date = date(2008, 3, 3)
    send_hour_utc: int = 0  # the response window then ends with the 14th day after the as-of
    campaign_id: str = "hillstrom-2008"
    coupon_prefix: str = "email-"  # email-mens, email-womens
    cost_per_send: float = 0.10
    margin_rate: float = 0.30
    outcome_days: int = 14
    days_per_month: float = 30.4375  # recency is in months
    unspecified_product: str = "unspecified"  # what the outcome's purchases are booked on
    timezone: str = "America/New_York"  # US customers; the source gives no zone
    country: str = "US"
    seed: int = 0


def hillstrom_as_of(config: HillstromConfig | None = None) -> date:
    """The as-of date of a backtest of the campaign: the day before the e-mails went out."""
    return (config or HillstromConfig()).campaign_date - timedelta(days=1)


def _read_hillstrom(source: Path, cfg: HillstromConfig) -> pd.DataFrame:
    import pandas as pd

    path = Path(source)
    if path.is_dir():
        candidates = [path / cfg.file, path / "hillstrom.parquet", path / "hillstrom.csv"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"no {cfg.file}, hillstrom.parquet or hillstrom.csv in {path}")
        path = found
    df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    need = ["recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie",
            "channel", "segment", "visit", "conversion", "spend"]  # fmt: skip
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not the Hillstrom data: missing column(s) {missing}")
    return df.reset_index(drop=True)


def convert_hillstrom(
    source: Path, out_dir: Path, config: HillstromConfig | None = None
) -> dict[str, int]:
    """Convert the Hillstrom e-mail experiment into members, products, order_lines, events,
    coupons and coupon_offers. ``source``: the folder (or the file itself).

    Each customer (source row r, 1-based) is member ``H{r:05d}``. What is synthesized:

    - history: one order per member, ``{member}-past``, dated ``recency`` months
      (x ``days_per_month``) before the send at the same clock time, holding the past
      year's spend ``history`` on one line per merchandise line bought (products ``mens``
      and ``womens``, the spend split equally). The source has only these aggregates, so
      frequency is 1 for everyone and the order stands for the whole year.
    - members: signup_ts = that order's time for a newbie (a customer new in the past
      twelve months), else one year before the send (both the latest dates the source
      allows); timezone and country from the settings; the source's zip_code (as ``area``,
      "Surburban" spelled Suburban), channel (as ``purchase_channel``), newbie and
      history_segment carried as extra columns.
    - coupons: one ``message`` coupon per e-mail (``email-mens``, ``email-womens``), value 0,
      ``cost`` = cost_per_send, ``featured`` = the merchandise it showed.
    - coupon_offers: one row per customer in campaign ``campaign_id`` at the send; the
      no-e-mail group is the control (null coupon_id). redeemed_ts stays null: an e-mail is
      not redeemed.
    - outcome: a visit is an event (``visit``) at a random moment of the ``outcome_days``
      after the send; a conversion is an order ``{member}-resp`` a few minutes after that
      visit, with the two-week ``spend`` on one line of product ``unspecified`` (the source
      does not say what was bought; every product has margin rate ``margin_rate``).

    Rows whose ``segment`` is none of the three arms are dropped (``dropped_unknown_segment``).
    """
    import pandas as pd

    cfg = config or HillstromConfig()
    src = _read_hillstrom(Path(source), cfg)
    segment = src["segment"].astype("string").str.strip()
    keep = segment.isin(list(_HILLSTROM_ARMS)).fillna(False).to_numpy(bool)
    df = src[keep].reset_index()
    arm = segment[keep].map(_HILLSTROM_ARMS).reset_index(drop=True)
    n = len(df)
    width = max(5, len(str(len(src))))
    member = pd.Series([f"H{i + 1:0{width}d}" for i in df["index"]], dtype="string")
    send = pd.Timestamp(cfg.campaign_date) + pd.Timedelta(hours=cfg.send_hour_utc)
    flag = {k: df[k].astype("int64").to_numpy() == 1 for k in ("mens", "womens", "newbie")}

    # history: one order dated from recency, one line per merchandise line bought
    past_ts = send - pd.to_timedelta(
        np.round(df["recency"].astype("float64").to_numpy() * cfg.days_per_month), unit="D"
    )
    n_lines = flag["mens"].astype(int) + flag["womens"].astype(int)
    parts = []
    for name in ("mens", "womens"):
        on = flag[name]
        parts.append(pd.DataFrame({
            "order_id": member[on] + "-past", "member_id": member[on], "ts": past_ts[on],
            "product_id": name, "quantity": 1.0,
            "unit_price": df.loc[on, "history"].astype("float64") / n_lines[on],
        }))  # fmt: skip
    none = n_lines == 0
    parts.append(pd.DataFrame({
        "order_id": member[none] + "-past", "member_id": member[none], "ts": past_ts[none],
        "product_id": pd.NA, "quantity": 1.0,
        "unit_price": df.loc[none, "history"].astype("float64"),
    }))  # fmt: skip

    # outcome: visits (events) and conversions (orders) inside the response window
    rng = np.random.default_rng(cfg.seed)
    window_s = cfg.outcome_days * 86400
    visit_s = rng.integers(0, window_s - 3600, n)
    visited = (df["visit"].astype("int64") == 1).to_numpy() | (df["spend"] > 0).to_numpy()
    visit_ts = send + pd.to_timedelta(visit_s, unit="s")
    bought = (df["spend"].astype("float64") > 0).to_numpy()
    buy_ts = visit_ts + pd.to_timedelta(rng.integers(120, 3600, n), unit="s")
    parts.append(pd.DataFrame({
        "order_id": member[bought] + "-resp", "member_id": member[bought],
        "ts": buy_ts[bought], "product_id": cfg.unspecified_product, "quantity": 1.0,
        "unit_price": df.loc[bought, "spend"].astype("float64"),
    }))  # fmt: skip
    lines = pd.concat(parts, ignore_index=True)
    lines = lines.assign(
        ts=pd.to_datetime(lines["ts"]).astype("datetime64[us]"),
        product_id=lines["product_id"].astype("string"),
        discount=0.0,
        coupon_id=pd.Series(pd.NA, index=lines.index, dtype="string"),
    ).sort_values(["member_id", "ts"], kind="stable")
    events = pd.DataFrame({
        "member_id": member[visited], "ts": visit_ts[visited].astype("datetime64[us]"),
        "event_type": pd.Series("visit", index=member[visited].index, dtype="string"),
        "product_id": pd.Series(pd.NA, index=member[visited].index, dtype="string"),
    }).sort_values(["member_id", "ts"], kind="stable")  # fmt: skip

    since = np.where(flag["newbie"], past_ts, send - pd.DateOffset(years=1))
    members = pd.DataFrame({
        "member_id": member,
        "signup_ts": pd.to_datetime(since).astype("datetime64[us]"),
        "timezone": pd.Series(cfg.timezone, index=member.index, dtype="string"),
        "country": pd.Series(cfg.country, index=member.index, dtype="string"),
        "area": df["zip_code"].astype("string").str.replace("Surburban", "Suburban"),
        "purchase_channel": df["channel"].astype("string"),
        "newbie": flag["newbie"],
        "history_segment": df["history_segment"].astype("string"),
    })  # fmt: skip
    product_ids = ["mens", "womens", cfg.unspecified_product]
    products = pd.DataFrame({
        "product_id": pd.Series(product_ids, dtype="string"),
        "category": pd.Series(["mens", "womens", pd.NA], dtype="string"),
        "price": np.full(3, np.nan),
        "margin_rate": np.full(3, cfg.margin_rate),
        "in_stock": np.ones(3, dtype=bool),
    })  # fmt: skip
    arms = ["mens", "womens"]
    coupons = pd.DataFrame({
        "coupon_id": pd.Series([cfg.coupon_prefix + a for a in arms], dtype="string"),
        "kind": pd.Series(["message"] * 2, dtype="string"),
        "value": np.zeros(2),
        "min_spend": np.full(2, np.nan),
        "category": pd.Series([pd.NA] * 2, dtype="string"),
        "cost": np.full(2, cfg.cost_per_send),
        "featured": pd.Series(arms, dtype="string"),
    })  # fmt: skip
    offers = pd.DataFrame({
        "member_id": member,
        "campaign_id": pd.Series(cfg.campaign_id, index=member.index, dtype="string"),
        "offered_ts": pd.Series(send, index=member.index).astype("datetime64[us]"),
        "coupon_id": (cfg.coupon_prefix + arm).astype("string"),
        "redeemed_ts": pd.Series(pd.NaT, index=member.index, dtype="datetime64[us]"),
    })  # fmt: skip

    out_dir = Path(out_dir)
    return {
        "source_rows": len(src),
        "dropped_unknown_segment": int((~keep).sum()),
        "members": _write(members, out_dir, "members"),
        "products": _write(products, out_dir, "products"),
        "order_lines": _write(lines.reset_index(drop=True), out_dir, "order_lines"),
        "history_orders": int(n),
        "outcome_orders": int(bought.sum()),
        "events": _write(events.reset_index(drop=True), out_dir, "events"),
        "coupons": _write(coupons, out_dir, "coupons"),
        "coupon_offers": _write(offers, out_dir, "coupon_offers"),
        "offers_treated": int(arm.notna().sum()),
        "offers_control": int(arm.isna().sum()),
    }
