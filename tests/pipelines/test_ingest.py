from datetime import date

import pandas as pd
import pytest

from pipelines.ingest import ContractError, check_contract, load_shop, write_quarantine


def _lines(**over):
    df = pd.DataFrame({
        "order_id": ["o1", "o1", "o2", "o3", "o4", "o5", "o6", "o7"],
        "member_id": ["m1", "m1", "m2", None, "m1", "m2", "m1", "m2"],
        "ts": ["2024-01-01T10:00:00", "2024-01-01T10:00:00", "2024-01-05T12:00:00Z",
               "2024-01-06T00:00:00", "not a date", "2024-01-07T09:00:00",
               "2024-02-10T09:00:00", "2024-01-08T09:00:00"],
        "product_id": ["p1", "p2", "p1", "p1", "p3", "p2", "p1", "p9"],
        "quantity": [1, 2, 1, 1, 1, -1, 1, -1],
        "unit_price": [10.0, 5.0, -1.0, 3.0, 3.0, 5.0, 10.0, 4.0],
    })  # fmt: skip
    return df.assign(**over)


def test_missing_required_table_names_it(tmp_path):
    with pytest.raises(ContractError, match="order_lines"):
        check_contract(tmp_path)


def test_missing_required_column_names_it(tmp_path):
    _lines().drop(columns=["unit_price"]).to_csv(tmp_path / "order_lines.csv", index=False)
    with pytest.raises(ContractError, match="unit_price"):
        load_shop(tmp_path, date(2024, 1, 31))


def test_bad_rows_are_quarantined_with_reasons_and_future_rows_counted(tmp_path):
    _lines().to_csv(tmp_path / "order_lines.csv", index=False)
    shop = load_shop(tmp_path, date(2024, 1, 31))
    rep = shop.report["order_lines"]
    assert rep.read == 8
    assert rep.reasons == {
        "negative unit_price": 1,
        "missing member_id": 1,
        "unparseable ts (timestamp)": 1,
        "return of a product the member had not bought before": 2,  # o5 (p2), o7 (p9)
    }
    assert rep.after_as_of == 1  # o6 on 2024-02-10
    assert rep.kept == 2  # the two lines of o1
    assert rep.kept + rep.quarantined + rep.after_as_of == rep.read
    kept = shop.tables["order_lines"]
    assert kept["ts"].dtype == "datetime64[us]"
    assert kept["discount"].eq(0).all()  # absent optional column -> 0
    out = write_quarantine(shop, tmp_path / "q", tmp_path / "r")
    q = pd.read_parquet(tmp_path / "q" / "2024-01-31" / "order_lines.parquet")
    assert set(q["reason"]) == set(rep.reasons)
    assert "not a date" in set(q["ts"])  # the original value is kept
    assert out.exists()


def test_return_of_an_earlier_purchase_is_kept(tmp_path):
    df = _lines().iloc[[0, 1]]
    ret = df.iloc[[0]].assign(order_id="c1", quantity=-1, ts="2024-01-03T10:00:00")
    pd.concat([df, ret]).to_parquet(tmp_path / "order_lines.parquet")
    shop = load_shop(tmp_path, date(2024, 1, 31))
    assert shop.report["order_lines"].quarantined == 0
    assert (shop.tables["order_lines"]["quantity"] < 0).sum() == 1


def test_optional_tables_are_checked_and_future_reactions_hidden(tmp_path):
    _lines().iloc[[0]].to_parquet(tmp_path / "order_lines.parquet")
    pd.DataFrame({
        "member_id": ["m1", "m1", "m2"],
        "channel": ["email", "push", "sms"],
        "sent_ts": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-03-01"]),
        "opened_ts": pd.to_datetime(["2024-02-05", "2024-01-02", None]),
    }).to_parquet(tmp_path / "messages.parquet")  # fmt: skip
    pd.DataFrame({"coupon_id": ["c1", "c2"], "kind": ["percent_off", "bogus"],
                  "value": [10.0, 5.0]}).to_parquet(tmp_path / "coupons.parquet")  # fmt: skip
    shop = load_shop(tmp_path, date(2024, 1, 31))
    msg = shop.report["messages"]
    assert msg.reasons == {"opened_ts before sent_ts": 1}
    assert msg.after_as_of == 1
    assert shop.tables["messages"]["opened_ts"].isna().all()  # opened after the as-of day
    assert shop.report["coupons"].reasons == {"unknown coupon kind": 1}
