import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.settings import IngestConfig, MemberwiseSettings
from pipelines.cli import app
from pipelines.ingest import (
    DUPLICATE_LINE,
    ContractError,
    check_contract,
    check_utf8,
    load_shop,
    write_quarantine,
)


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


def _clean_lines(n: int = 4) -> pd.DataFrame:
    """``n`` valid purchase lines of one member, a day apart."""
    return pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)],
        "member_id": "m1",
        "ts": [f"2024-01-{i + 1:02d}T10:00:00" for i in range(n)],
        "product_id": "p1",
        "quantity": 1.0,
        "unit_price": 10.0,
    })  # fmt: skip


def test_non_finite_numbers_are_quarantined_from_parquet(tmp_path):
    df = _clean_lines(5)
    df.loc[1, "unit_price"] = np.inf
    df.loc[2, "quantity"] = -np.inf
    df.loc[3, "unit_price"] = np.nan  # not nullable
    df.assign(discount=0.0).to_parquet(tmp_path / "order_lines.parquet")
    shop = load_shop(tmp_path, date(2024, 1, 31))
    assert shop.report["order_lines"].reasons == {
        "non-finite unit_price": 1,
        "non-finite quantity": 1,
        "missing or NaN unit_price": 1,
    }
    kept = shop.tables["order_lines"]
    assert list(kept["order_id"]) == ["o0", "o4"]
    assert np.isfinite(kept[["quantity", "unit_price", "discount"]].to_numpy()).all()


def test_non_finite_numbers_are_quarantined_from_csv(tmp_path):
    df = _clean_lines(4).astype({"unit_price": str, "quantity": str})
    df.loc[1, "unit_price"] = "inf"
    df.loc[2, "unit_price"] = "-Infinity"
    df.loc[3, "quantity"] = "NaN"
    df.to_csv(tmp_path / "order_lines.csv", index=False)
    pd.DataFrame({"product_id": ["p1"], "margin_rate": ["inf"]}).to_csv(
        tmp_path / "products.csv", index=False
    )
    shop = load_shop(tmp_path, date(2024, 1, 31))
    assert shop.report["order_lines"].reasons == {
        "non-finite unit_price": 2,
        "non-finite quantity": 1,
    }
    assert shop.report["products"].reasons == {"non-finite margin_rate": 1}
    q = shop.quarantine["order_lines"]
    assert set(q["unit_price"]) >= {"inf", "-Infinity"}  # the original text is kept


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_exact_duplicate_lines_are_counted_and_handled_by_the_setting(tmp_path, policy):
    df = _clean_lines(3)
    dup = pd.concat([df, df.iloc[[0, 0, 2]]], ignore_index=True)  # o0 three times, o2 twice
    # the same order, product and price but another quantity is a different line
    other = df.iloc[[1]].assign(quantity=2.0)
    pd.concat([dup, other], ignore_index=True).to_parquet(tmp_path / "order_lines.parquet")
    shop = load_shop(tmp_path, date(2024, 1, 31), IngestConfig(duplicate_lines=policy))
    rep = shop.report["order_lines"]
    assert rep.duplicates == 3
    kept = shop.tables["order_lines"]
    if policy == "drop":
        assert rep.reasons == {DUPLICATE_LINE: 3} and rep.quarantined == 3
        assert len(kept) == 4 and kept["quantity"].sum() == 5.0
    else:
        assert rep.reasons == {} and len(kept) == 7
    out = write_quarantine(shop, tmp_path / "q", tmp_path / "r")
    assert json.loads(out.read_text())["order_lines"]["duplicates"] == 3


def test_duplicate_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MEMBERWISE_INGEST__DUPLICATE_LINES", "keep")
    assert MemberwiseSettings().ingest.duplicate_lines == "keep"
    assert MemberwiseSettings(home=Path("x")).model_copy().ingest.duplicate_lines == "keep"
    monkeypatch.delenv("MEMBERWISE_INGEST__DUPLICATE_LINES")
    assert MemberwiseSettings().ingest.duplicate_lines == "drop"


def test_csv_that_is_not_utf8_names_the_file_and_byte_offset(tmp_path):
    header = b"order_id,member_id,ts,product_id,quantity,unit_price\n"
    row = "o1,m1,2024-01-01T10:00:00,Caf\u00e9,1,10\n".encode("latin-1")  # 0xe9, not UTF-8
    (tmp_path / "order_lines.csv").write_bytes(header + row)
    offset = len(header) + row.index(b"\xe9")
    with pytest.raises(ContractError, match=rf"order_lines.csv is not UTF-8.*offset {offset}\b"):
        load_shop(tmp_path, date(2024, 1, 31))


def test_utf8_check_finds_the_offset_across_chunks(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("a\u00e9\u00e9".encode() + b"\xff")  # two 2-byte characters, then 0xff
    for chunk in (1, 2, 3, 1 << 20):
        with pytest.raises(ContractError, match=r"byte 0xff at offset 5\b"):
            check_utf8(path, chunk_bytes=chunk)
    path.write_bytes("a\u00e9\u00e9".encode())
    check_utf8(path, chunk_bytes=1)  # valid UTF-8 split inside a character passes


def test_not_utf8_stops_the_cli_with_exit_2(tmp_path):
    (tmp_path / "shop").mkdir()
    text = b"order_id,member_id,ts,product_id,quantity,unit_price\no1,m\xe91,2024-01-01,p1,1,1\n"
    (tmp_path / "shop" / "order_lines.csv").write_bytes(text)
    home = tmp_path / "home"
    args = ["run", "--data", str(tmp_path / "shop"), "--as-of", "2024-01-31", "--home", str(home)]
    result = CliRunner().invoke(app, args)
    said = "".join(result.output.split())  # the console wraps (and folds paths)
    assert result.exit_code == 2, result.output
    offset = text.index(b"\xe9")
    assert "order_lines.csvisnotUTF-8" in said and f"atoffset{offset}cannot" in said
    assert not home.exists()


def test_ambiguous_dates_are_rejected_with_the_reason_not_guessed(tmp_path):
    df = _clean_lines(5)
    df["ts"] = ["2024-01-02T10:00:00", "01/02/2024", "13/01/2024 10:00", "2024-01-05", "5 Jan 2024"]
    df.to_csv(tmp_path / "order_lines.csv", index=False)
    shop = load_shop(tmp_path, date(2024, 1, 31))
    ambiguous = (
        "ts is not ISO-8601: day/month order is not guessed (01/02/2025 could be either), "
        "write YYYY-MM-DD"
    )
    # a day-first date that happens to be unambiguous (13/01) is not guessed either
    assert shop.report["order_lines"].reasons == {ambiguous: 2, "unparseable ts (timestamp)": 1}
    assert list(shop.tables["order_lines"]["ts"].dt.day) == [2, 5]


def test_a_file_of_ambiguous_dates_stops_the_run_with_the_reason(tmp_path):
    df = _clean_lines(3)
    df["ts"] = ["01/02/2024", "02/02/2024", "03/02/2024"]
    df.to_csv(tmp_path / "order_lines.csv", index=False)
    with pytest.raises(
        ContractError, match=r"no order line.*3 quarantined.*day/month order is not guessed"
    ):
        load_shop(tmp_path, date(2024, 3, 31))


def test_empty_order_lines_file_stops_with_a_message(tmp_path):
    _clean_lines(0).to_parquet(tmp_path / "order_lines.parquet")
    with pytest.raises(ContractError, match="order_lines.*has no rows"):
        load_shop(tmp_path, date(2024, 1, 31))
    (tmp_path / "order_lines.parquet").unlink()
    (tmp_path / "order_lines.csv").write_text("")  # not even a header
    with pytest.raises(ContractError, match="order_lines.*empty"):
        load_shop(tmp_path, date(2024, 1, 31))
