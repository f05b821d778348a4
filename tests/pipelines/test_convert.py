"""Adapters for the public datasets: tiny hand-made sources with known conversions, plus one
run per adapter on the real data when the shared data folder is present."""

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contract import TABLES
from pipelines.convert import (
    HillstromConfig,
    convert_complete_journey,
    convert_hillstrom,
    convert_online_retail,
    hillstrom_as_of,
    localize_to_utc,
)
from pipelines.ingest import load_shop

T = pd.Timestamp


def _shared_data() -> Path:
    env = os.environ.get("MEMBERWISE_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip("shared data folder ../shared/data not found")
    return path


def _assert_contract(out: Path) -> None:
    """Every written table has the contract's required columns with the right kinds."""
    arrow = {"str": pa.types.is_string, "timestamp": pa.types.is_timestamp,
             "float": pa.types.is_float64, "bool": pa.types.is_boolean}  # fmt: skip
    for path in out.glob("*.parquet"):
        table = TABLES[path.stem]
        schema = pq.read_schema(path)
        for col in table.columns:
            if col.name in schema.names:
                assert arrow[col.type](schema.field(col.name).type), (path.stem, col.name)
        assert set(table.required_columns) <= set(schema.names), path.stem


# ---------------------------------------------------------------- localisation
def test_localize_handles_dst_gaps_and_repeated_hours():
    wall = pd.Series([
        T("2011-06-01 10:00"),  # summer: UTC+1
        T("2011-12-01 10:00"),  # winter: UTC
        T("2011-03-27 01:30"),  # never happened: shifted to 02:00 summer time
        T("2011-10-30 01:50"),  # happened twice; invoice 100 is the first pass
        T("2011-10-30 01:10"),  # invoice 101, earlier wall time: the clock went back
        T("2011-10-30 01:40"),  # invoice 102: still the second pass
    ])  # fmt: skip
    seq = pd.Series([1, 2, 3, 100, 101, 102])
    utc, counts = localize_to_utc(wall, "Europe/London", seq)
    assert utc.tolist() == [
        T("2011-06-01 09:00"), T("2011-12-01 10:00"), T("2011-03-27 01:00"),
        T("2011-10-30 00:50"), T("2011-10-30 01:10"), T("2011-10-30 01:40"),
    ]  # fmt: skip
    assert counts == {"ambiguous": 3, "nonexistent": 1}
    assert utc.dtype == "datetime64[us]"
    # without a sequence a repeated hour is read as its first (summer time) occurrence
    alone, _ = localize_to_utc(wall.iloc[[4]], "Europe/London")
    assert alone.tolist() == [T("2011-10-30 00:10")]


# ---------------------------------------------------------------- Online Retail
def _retail_source(folder: Path) -> None:
    rows = [  # InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, Customer, Country
        ("536365", "85123A", "WHITE HANGING HEART", 6, "2011-06-01 10:00", 2.55, 17850, "United Kingdom"),
        ("536365", "POST", "POSTAGE", 1, "2011-06-01 10:00", 18.0, 17850, "United Kingdom"),
        ("536366", "22633", "HAND WARMER", 6, "2011-06-01 11:00", 1.85, None, "United Kingdom"),
        ("C536379", "85123A", "WHITE HANGING HEART", -2, "2011-06-02 12:00", 2.55, 17850, "United Kingdom"),
        ("A563185", "B", "Adjust bad debt", 1, "2011-08-12 14:50", -11062.06, None, "United Kingdom"),
        ("536400", "22633", "HAND WARMER", 2, "2011-07-01 09:00", -1.0, 12347, "Germany"),
        ("536401", "15056bl", "EDWARDIAN PARASOL BLACK", 1, "2011-03-27 01:30", 5.95, 12347, "Germany"),
        ("536402", "15056BL", "EDWARDIAN PARASOL BLACK", 3, "2011-12-01 09:00", 4.95, 12347, "Germany"),
        ("570001", "gift_0001_20", "Gift Voucher", 1, "2011-10-30 01:50", 16.67, 12347, "Germany"),
        ("570001", "m", "Manual", 1, "2011-10-30 01:50", 2.55, 12347, "Germany"),
        ("570001", "22633", "HAND WARMER", 1, "2011-10-30 01:50", 2.10, 12348, "Unspecified"),
        ("570002", "22633", "HAND WARMER", 1, "2011-10-30 01:10", 2.10, 12348, "Unspecified"),
        ("570003", "DCGS0070", "CAMOUFLAGE DOG COLLAR", 1, "2011-11-01 10:00", 6.36, 12348, "Unspecified"),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["InvoiceNo", "StockCode", "Description", "Quantity",
                                     "InvoiceDate", "UnitPrice", "CustomerID", "Country"])  # fmt: skip
    df["Quantity"] = df["Quantity"].astype("float64")
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"]).astype("datetime64[us]")
    df["CustomerID"] = df["CustomerID"].astype("Int64")
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / "online_retail.parquet", index=False)


def test_online_retail_conversion_is_exact(tmp_path):
    _retail_source(tmp_path / "src")
    out = tmp_path / "out"
    counts = convert_online_retail(tmp_path / "src", out)
    assert counts == {
        "source_rows": 13, "order_lines": 7, "cancellation_lines": 1, "members": 3,
        "products": 4, "dropped_no_customer": 2, "dropped_non_product": 3,
        "dropped_negative_price": 1, "dropped_zero_quantity": 0,
        "ts_ambiguous_dst": 2, "ts_nonexistent_dst": 1,
    }  # fmt: skip
    lines = pd.read_parquet(out / "order_lines.parquet")
    assert lines.to_dict("list") == {
        "order_id": ["536365", "C536379", "536401", "536402", "570001", "570002", "570003"],
        "member_id": ["17850", "17850", "12347", "12347", "12348", "12348", "12348"],
        "ts": [T("2011-06-01 09:00"), T("2011-06-02 11:00"), T("2011-03-27 01:00"),
               T("2011-12-01 09:00"), T("2011-10-30 00:50"), T("2011-10-30 01:10"),
               T("2011-11-01 10:00")],
        "product_id": ["85123A", "85123A", "15056BL", "15056BL", "22633", "22633", "DCGS0070"],
        "quantity": [6.0, -2.0, 1.0, 3.0, 1.0, 1.0, 1.0],
        "unit_price": [2.55, 2.55, 5.95, 4.95, 2.10, 2.10, 6.36],
    }  # fmt: skip
    members = pd.read_parquet(out / "members.parquet").set_index("member_id")
    assert members.loc["17850"].tolist() == ["United Kingdom", "Europe/London"]
    assert members.loc["12347"].tolist() == ["Germany", "Europe/Berlin"]
    assert members.loc["12348"].tolist() == ["Unspecified", "Europe/London"]  # the default
    products = pd.read_parquet(out / "products.parquet").set_index("product_id")
    assert products["price"].to_dict() == {"15056BL": 5.45, "22633": 2.10, "85123A": 2.55,
                                           "DCGS0070": 6.36}  # fmt: skip
    assert products["category"].isna().all()
    assert products.loc["15056BL", "description"] == "EDWARDIAN PARASOL BLACK"
    _assert_contract(out)
    shop = load_shop(out, date(2011, 12, 31))
    assert shop.report["order_lines"].kept == 7  # the cancellation follows its purchase


# ---------------------------------------------------------------- The Complete Journey
def _journey_source(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tx = pd.DataFrame({
        "household_id": ["1", "1", "2", "2"],
        "store_id": ["300"] * 4,
        "basket_id": ["b1", "b1", "4.0128e+10", "b3"],
        "product_id": ["10", "9e+05", "10", "99"],
        "quantity": [2.0, 1.0, 0.0, 1.0],
        "sales_value": [3.86, 1.00, 0.0, 5.0],
        "retail_disc": [0.43, 0.0, 0.0, 0.0],
        "coupon_disc": [0.50, 0.0, 0.0, 0.0],
        "coupon_match_disc": [0.10, 0.0, 0.0, 0.0],
        "week": [1, 1, 2, 30],
        "transaction_timestamp": pd.to_datetime(["2017-01-02 10:00", "2017-01-02 10:00",
                                                 "2017-01-09 11:00", "2017-07-01 12:00"]),
        "transaction_timestamp_utc": pd.to_datetime(["2017-01-02 15:00", "2017-01-02 15:00",
                                                     "2017-01-09 16:00", "2017-07-01 16:00"]),
    })  # fmt: skip
    tx.to_parquet(folder / "transactions_sample.parquet", index=False)
    pd.DataFrame({
        "product_id": ["10", "9e+05", "11"],
        "manufacturer_id": ["1", "2", "3"],
        "department": ["GROCERY", "COSMETICS", "GROCERY"],
        "brand": ["National"] * 3,
        "product_category": ["SOUP", "FRAGRANCE", "SOUP"],
        "product_type": [None] * 3,
        "package_size": [None] * 3,
    }).to_parquet(folder / "products.parquet", index=False)  # fmt: skip
    pd.DataFrame({"campaign_id": ["1", "1", "2"], "household_id": ["1", "2", "1"]}).to_parquet(
        folder / "campaigns.parquet", index=False
    )
    pd.DataFrame({
        "campaign_id": ["1", "2"], "campaign_type": ["Type A", "Type B"],
        "start_date": ["2017-01-01", "2017-07-01"], "end_date": ["2017-02-01", "2017-08-01"],
    }).to_parquet(folder / "campaign_descriptions.parquet", index=False)  # fmt: skip
    pd.DataFrame({
        "coupon_upc": ["u1", "u1", "u2", "u3"],
        "product_id": ["10", "11", "9e+05", "10"],
        "campaign_id": ["1", "1", "1", "2"],
    }).to_parquet(folder / "coupons.parquet", index=False)  # fmt: skip
    pd.DataFrame({
        "household_id": ["1", "1", "1"], "coupon_upc": ["u1", "u2", "u3"],
        "campaign_id": ["1", "1", "2"],
        "redemption_date": ["2017-01-20", "2017-01-05", "2017-07-03"],
    }).to_parquet(folder / "coupon_redemptions.parquet", index=False)  # fmt: skip
    pd.DataFrame({
        "household_id": ["1", "7"], "age": ["65+", "25-34"], "income": ["35-49K", None],
        "home_ownership": [None, None], "marital_status": [None, None],
        "household_size": ["2", "1"], "household_comp": [None, None], "kids_count": ["0", "0"],
    }).to_parquet(folder / "demographics.parquet", index=False)  # fmt: skip


def test_complete_journey_conversion_is_exact(tmp_path):
    _journey_source(tmp_path / "src")
    out = tmp_path / "out"
    counts = convert_complete_journey(tmp_path / "src", out)
    assert counts == {
        "source_rows": 4, "order_lines": 3, "dropped_zero_quantity": 1,
        "dropped_negative_price": 0, "lines_with_unlisted_product": 1, "members": 3,
        "members_with_demographics": 2, "products": 4, "coupons": 2, "coupon_offers": 3,
        "offers_redeemed": 2, "redemptions_without_offer": 0,
    }  # fmt: skip
    lines = pd.read_parquet(out / "order_lines.parquet")
    assert lines["order_id"].tolist() == ["b1", "b1", "b3"]
    assert lines["product_id"].tolist() == ["10", "900000", "99"]
    assert lines["unit_price"].round(6).tolist() == [2.445, 1.0, 5.0]  # (3.86+1.03)/2
    assert lines["discount"].round(6).tolist() == [1.03, 0.0, 0.0]
    assert lines["ts"].tolist() == [T("2017-01-02 15:00"), T("2017-01-02 15:00"),
                                    T("2017-07-01 16:00")]  # fmt: skip
    assert lines["coupon_id"].isna().all()

    products = pd.read_parquet(out / "products.parquet").set_index("product_id")
    assert products["category"].to_dict() == {"10": "GROCERY", "11": "GROCERY",
                                              "900000": "COSMETICS", "99": None}  # fmt: skip
    assert products.loc["10", "price"] == pytest.approx(2.445)
    assert pd.isna(products.loc["11", "price"])

    members = pd.read_parquet(out / "members.parquet").set_index("member_id")
    assert sorted(members.index) == ["1", "2", "7"]  # "7" only in demographics
    assert (members["timezone"] == "America/New_York").all()
    assert members.loc["1", "age"] == "65+" and pd.isna(members.loc["2", "age"])

    coupons = pd.read_parquet(out / "coupons.parquet").set_index("coupon_id")
    assert coupons["value"].tolist() == [0.0, 0.0] and set(coupons["kind"]) == {"amount_off"}
    assert coupons["category"].to_dict() == {"booklet-1": None, "booklet-2": "GROCERY"}
    assert coupons["upc_count"].to_dict() == {"booklet-1": 2, "booklet-2": 1}

    offers = pd.read_parquet(out / "coupon_offers.parquet")
    assert offers.to_dict("list") == {
        "member_id": ["1", "2", "1"],
        "campaign_id": ["1", "1", "2"],
        "offered_ts": [T("2017-01-01 05:00"), T("2017-01-01 05:00"), T("2017-07-01 04:00")],
        "coupon_id": ["booklet-1", "booklet-1", "booklet-2"],
        "redeemed_ts": [T("2017-01-05 05:00"), pd.NaT, T("2017-07-03 04:00")],
    }  # fmt: skip
    assert offers["coupon_id"].notna().all()  # targeted campaigns: no control rows
    _assert_contract(out)
    shop = load_shop(out, date(2017, 12, 31))
    assert all(rep.quarantined == 0 for rep in shop.report.values())


# ---------------------------------------------------------------- Hillstrom
_HILLSTROM_CSV = """recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,visit,conversion,spend
10,"2) $100 - $200",142.44,1,0,Surburban,0,Phone,Womens E-Mail,0,0,0
6,"3) $200 - $350",329.08,1,1,Rural,1,Web,No E-Mail,1,0,0
2,"1) $0 - $100",45.34,0,1,Urban,0,Multichannel,Mens E-Mail,1,1,89.5
12,"2) $100 - $200",180.65,0,1,Urban,1,Web,Mens E-Mail,0,0,0
1,"1) $0 - $100",29.99,1,0,Urban,0,Web,Some Other Mail,1,0,0
"""


def test_hillstrom_conversion_is_exact(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hillstrom.csv").write_text(_HILLSTROM_CSV)
    out = tmp_path / "out"
    cfg = HillstromConfig(cost_per_send=0.25, margin_rate=0.4)
    counts = convert_hillstrom(src, out, cfg)
    assert counts == {
        "source_rows": 5, "dropped_unknown_segment": 1, "members": 4, "products": 3,
        "order_lines": 6, "history_orders": 4, "outcome_orders": 1, "events": 2, "coupons": 2,
        "coupon_offers": 4, "offers_treated": 3, "offers_control": 1,
    }  # fmt: skip
    send = T("2008-03-03 00:00")
    members = pd.read_parquet(out / "members.parquet").set_index("member_id")
    assert members.index.tolist() == ["H00001", "H00002", "H00003", "H00004"]
    assert members.loc["H00001", "area"] == "Suburban"  # the source's "Surburban"
    assert members.loc["H00003", "purchase_channel"] == "Multichannel"
    # a newbie signed up at their one known order; the others at least a year before the send
    assert members.loc["H00002", "signup_ts"] == send - pd.Timedelta(days=183)  # 6 months
    assert members.loc["H00001", "signup_ts"] == T("2007-03-03 00:00")

    lines = pd.read_parquet(out / "order_lines.parquet")
    past = lines[lines["order_id"].str.endswith("-past")]
    assert past.groupby("member_id")["unit_price"].sum().round(2).to_dict() == {
        "H00001": 142.44, "H00002": 329.08, "H00003": 45.34, "H00004": 180.65}  # fmt: skip
    both = past[past["member_id"] == "H00002"].sort_values("product_id")
    assert both["product_id"].tolist() == ["mens", "womens"]
    assert both["unit_price"].tolist() == [164.54, 164.54]
    assert past.set_index("member_id").loc["H00001", "ts"] == send - pd.Timedelta(days=304)
    resp = lines[lines["order_id"].str.endswith("-resp")]
    assert resp[["member_id", "product_id", "unit_price"]].values.tolist() == [
        ["H00003", "unspecified", 89.5]]  # fmt: skip
    t = resp["ts"].iloc[0]
    assert send < t < send + pd.Timedelta(days=14)
    assert (lines["discount"] == 0).all() and lines["coupon_id"].isna().all()

    events = pd.read_parquet(out / "events.parquet")
    assert events["member_id"].tolist() == ["H00002", "H00003"]
    assert (events["event_type"] == "visit").all()
    visit = events.set_index("member_id").loc["H00003", "ts"]
    assert visit < t < visit + pd.Timedelta(hours=1)  # the purchase follows the visit

    products = pd.read_parquet(out / "products.parquet")
    assert (products["margin_rate"] == 0.4).all()
    coupons = pd.read_parquet(out / "coupons.parquet")
    assert coupons[["coupon_id", "kind", "value", "cost", "featured"]].values.tolist() == [
        ["email-mens", "message", 0.0, 0.25, "mens"],
        ["email-womens", "message", 0.0, 0.25, "womens"],
    ]
    offers = pd.read_parquet(out / "coupon_offers.parquet").set_index("member_id")
    assert offers["coupon_id"].to_dict() == {
        "H00001": "email-womens", "H00002": None, "H00003": "email-mens",
        "H00004": "email-mens"}  # fmt: skip
    assert (offers["offered_ts"] == send).all() and offers["redeemed_ts"].isna().all()
    assert (offers["campaign_id"] == "hillstrom-2008").all()

    _assert_contract(out)
    as_of = hillstrom_as_of(cfg)
    assert as_of == date(2008, 3, 2)
    before = load_shop(out, as_of)  # the backtest's view: history only
    assert all(rep.quarantined == 0 for rep in before.report.values())
    assert before.report["coupon_offers"].after_as_of == 4
    assert before.report["order_lines"].kept == 5 and before.report["events"].kept == 0
    after = load_shop(out, date(2008, 3, 31))
    assert after.report["coupon_offers"].kept == 4 and after.report["order_lines"].kept == 6


def test_hillstrom_refuses_another_file(tmp_path):
    (tmp_path / "hillstrom.csv").write_text("recency,history\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        convert_hillstrom(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="hillstrom"):
        convert_hillstrom(tmp_path / "out", tmp_path / "out2")


# ---------------------------------------------------------------- the real datasets
@pytest.mark.realdata
def test_real_hillstrom_slice(tmp_path):
    src = pd.read_parquet(_shared_data() / "hillstrom" / "hillstrom.parquet")
    part = src.iloc[:3000]
    part.to_parquet(tmp_path / "hillstrom.parquet", index=False)
    counts = convert_hillstrom(tmp_path, tmp_path / "out")
    out = tmp_path / "out"
    assert counts["members"] == counts["coupon_offers"] == 3000
    assert counts["dropped_unknown_segment"] == 0
    assert counts["outcome_orders"] == int(part["conversion"].sum())
    assert counts["events"] == int(part["visit"].sum())
    assert counts["offers_control"] == int((part["segment"] == "No E-Mail").sum())
    _assert_contract(out)
    lines = pd.read_parquet(out / "order_lines.parquet")
    past = lines[lines["order_id"].str.endswith("-past")]
    assert past["unit_price"].sum() == pytest.approx(part["history"].sum())
    resp = lines[lines["order_id"].str.endswith("-resp")]
    assert resp["unit_price"].sum() == pytest.approx(part["spend"].sum())
    shop = load_shop(out, date(2008, 3, 31))
    assert all(rep.quarantined == 0 for rep in shop.report.values())


@pytest.mark.realdata
def test_real_online_retail(tmp_path):
    src = _shared_data() / "online_retail"
    counts = convert_online_retail(src, tmp_path)
    assert counts["source_rows"] == 541_909
    assert counts["dropped_no_customer"] == 135_080
    assert counts["order_lines"] + sum(v for k, v in counts.items()
                                       if k.startswith("dropped_")) == 541_909  # fmt: skip
    assert counts["members"] == 4_372 and counts["cancellation_lines"] > 0
    _assert_contract(tmp_path)
    lines = pd.read_parquet(tmp_path / "order_lines.parquet")
    assert not lines["product_id"].str.upper().isin(["POST", "M", "D", "DOT"]).any()
    assert lines["ts"].notna().all() and (lines["unit_price"] >= 0).all()
    shop = load_shop(tmp_path, date(2011, 12, 31))
    rep = shop.report["order_lines"]
    # only cancellations of purchases made before the data begins, and the source's exact
    # duplicate lines (the same invoice line twice), are quarantined
    assert set(rep.reasons) <= {
        "return of a product the member had not bought before",
        "exact duplicate of an earlier order line",
    }
    assert rep.duplicates == rep.reasons.get("exact duplicate of an earlier order line", 0)


@pytest.mark.realdata
def test_real_complete_journey(tmp_path):
    src = _shared_data() / "completejourney"
    counts = convert_complete_journey(src, tmp_path)
    assert counts["source_rows"] == 75_000
    assert (
        counts["order_lines"] + counts["dropped_zero_quantity"] + counts["dropped_negative_price"]
        == 75_000
    )
    assert counts["coupon_offers"] == 6_589 and counts["coupons"] == 27
    assert counts["redemptions_without_offer"] == 0
    _assert_contract(tmp_path)
    products = pd.read_parquet(tmp_path / "products.parquet")
    assert 10 <= products["category"].nunique() <= 40
    assert not products["product_id"].str.contains("e+", regex=False).any()
    shop = load_shop(tmp_path, date(2018, 1, 31))
    assert all(rep.quarantined == 0 for rep in shop.report.values())
