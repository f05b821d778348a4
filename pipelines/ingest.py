"""Read a shop directory in the canonical format, check it, quarantine bad rows.

A missing required table or column, a CSV that is not UTF-8 and an order_lines table
with no usable row raise :class:`ContractError` before anything is written. Every other
problem is per row: the row goes to quarantine with its reason (original values kept as
text), and the report counts kept / quarantined / after-as-of rows per table. So no bad
value reaches a model: non-finite numbers (inf, -inf, NaN where a value is required) and
timestamps that are not ISO-8601 (``01/02/2025``: day and month order unknown) are
quarantined, never guessed; exact duplicate order lines are counted and, by default,
quarantined (``IngestConfig.duplicate_lines``).
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import IngestConfig
from pipelines.contract import COUPON_KINDS, TABLES, Table
from pipelines.progress import Reporter, silent, track


class ContractError(Exception):
    """The input directory does not have a required table or column."""


@dataclass
class TableReport:
    read: int = 0
    kept: int = 0
    quarantined: int = 0
    after_as_of: int = 0
    duplicates: int = 0  # exact duplicate rows found (quarantined or kept, per the setting)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class ShopData:
    """The kept rows of every table present, typed, with timestamps as naive UTC."""

    as_of: date
    tables: dict[str, pd.DataFrame]
    report: dict[str, TableReport]
    quarantine: dict[str, pd.DataFrame]

    @property
    def cutoff(self) -> pd.Timestamp:
        """Exclusive upper bound of visible time: the end of the as-of day (UTC)."""
        return as_of_cutoff(self.as_of)

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def report_dict(self) -> dict[str, dict]:
        return {k: vars(v) for k, v in self.report.items()}


def as_of_cutoff(as_of: date) -> pd.Timestamp:
    return pd.Timestamp(datetime.combine(as_of, datetime.min.time())) + timedelta(days=1)


def _find(data_dir: Path, name: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        p = data_dir / f"{name}{suffix}"
        if p.exists():
            return p
    return None


def _read_raw(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        # everything as text first: nothing is lost before the checks run
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return pd.read_parquet(path)


def check_utf8(path: Path, chunk_bytes: int = 1 << 20) -> None:
    """Raise ContractError naming ``path`` and the byte offset of the first byte that is
    not valid UTF-8 (read in chunks, so a large file is never held in memory)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(chunk_bytes)
            held = len(decoder.getstate()[0])  # an unfinished character from the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = offset - held + exc.start  # exc.start counts from the held bytes
                bad = exc.object[exc.start : exc.start + 1].hex()
                raise ContractError(
                    f"{path} is not UTF-8: byte 0x{bad} at offset {at} cannot be decoded; "
                    "save the file as UTF-8 (CSV input must be UTF-8, see docs/data-format.md)"
                ) from exc
            if not chunk:
                return
            offset += len(chunk)


def check_contract(data_dir: Path) -> dict[str, Path]:
    """Locate the tables and check required tables and columns; raise ContractError."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError(f"input directory {data_dir} does not exist")
    found: dict[str, Path] = {}
    for name, table in TABLES.items():
        path = _find(data_dir, name)
        if path is None:
            if table.required:
                raise ContractError(
                    f"required table '{name}' is missing: expected {data_dir}/{name}.parquet "
                    f"or {name}.csv (see docs/data-format.md)"
                )
            continue
        if path.suffix == ".csv":
            check_utf8(path)
            try:
                columns = list(pd.read_csv(path, nrows=0).columns)
            except pd.errors.EmptyDataError as exc:
                raise ContractError(
                    f"table '{name}' ({path}) is empty: not even a header row"
                ) from exc
        else:
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        missing = [c for c in table.required_columns if c not in columns]
        if missing:
            raise ContractError(
                f"table '{name}' ({path.name}) is missing required column(s): " + ", ".join(missing)
            )
        found[name] = path
    return found


def _to_str(s: pd.Series) -> pd.Series:
    out = s.astype("string").str.strip()
    # ids read from floats ("17850.0") are ids, not numbers
    out = out.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)
    return out.mask(out == "")


def _to_ts(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        ts = s
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        return ts.astype("datetime64[us]")
    # ISO-8601 only: a text date in any other form is never guessed (01/02/2025 could be
    # 1 February or 2 January), it stays NaT and its row is quarantined with the reason
    ts = pd.to_datetime(s.astype("string").str.strip(), errors="coerce", utc=True,
                        format="ISO8601")  # fmt: skip
    return ts.dt.tz_localize(None).astype("datetime64[us]")


# day, month and year in some order with / . or - between them: not ISO-8601
_NUMERIC_DATE = re.compile(r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(\D|$)")
_NON_FINITE = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def _timestamp_reason(src: pd.Series, col: str) -> pd.Series:
    """Per row, why a text timestamp that did not parse as ISO-8601 is rejected."""
    text = src.astype("string").str.strip()
    ambiguous = text.str.match(_NUMERIC_DATE).fillna(False).astype(bool)
    return pd.Series(
        np.where(
            ambiguous,
            f"{col} is not ISO-8601: day/month order is not guessed (01/02/2025 could be "
            "either), write YYYY-MM-DD",
            f"unparseable {col} (timestamp)",
        ),
        index=src.index,
    )


def _to_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _to_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean")
    m = s.astype("string").str.strip().str.lower()
    return m.map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False})


_NULL_DTYPE = {
    "str": "string",
    "timestamp": "datetime64[us]",
    "float": "float64",
    "bool": "boolean",
}
_CONVERT = {"str": _to_str, "timestamp": _to_ts, "float": _to_float, "bool": _to_bool}


def _coerce(raw: pd.DataFrame, table: Table) -> tuple[pd.DataFrame, pd.Series]:
    """Typed frame with the contract's columns plus a per-row reason ('' = fine)."""
    reasons = pd.Series("", index=raw.index, dtype="object")
    out = pd.DataFrame(index=raw.index)

    def flag(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool) & (reasons == "")
        reasons[mask] = reason

    for col in table.columns:
        if col.name not in raw.columns:
            out[col.name] = pd.Series(None, index=raw.index, dtype=_NULL_DTYPE[col.type])
            continue
        src = raw[col.name]
        conv = _CONVERT[col.type](src)
        was_null = src.isna() | (src.astype("string").str.strip() == "")
        if col.type == "float":
            # inf / -inf (and NaN written as text) never reach a model; a float NaN is a
            # null, allowed only where the column is nullable
            text = src.astype("string").str.strip().str.lower()
            bad = (text.isin(_NON_FINITE) & ~src.isna()) | np.isinf(conv.fillna(0.0))
            flag(bad, f"non-finite {col.name}")
            if not col.nullable:
                flag(was_null, f"missing or NaN {col.name}")
        elif not col.nullable:
            flag(was_null, f"missing {col.name}")
        unparsed = conv.isna() & ~was_null
        if col.type == "timestamp" and unparsed.any():
            why = _timestamp_reason(src, col.name)
            for reason in why[unparsed].unique():
                flag(unparsed & (why == reason), reason)
        flag(unparsed, f"unparseable {col.name} ({col.type})")
        out[col.name] = conv
    # extra columns a shop may add are carried along untouched
    for extra in raw.columns:
        if extra not in out.columns:
            out[extra] = raw[extra]
    return out, reasons


def _table_rules(name: str, df: pd.DataFrame, reasons: pd.Series) -> None:
    """Row rules beyond types; writes a reason for the first rule a row breaks."""

    def flag(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool) & (reasons == "")
        reasons[mask] = reason

    if name == "order_lines":
        flag(df["unit_price"] < 0, "negative unit_price")
        flag(df["quantity"] == 0, "zero quantity")
        if "discount" in df:
            flag(df["discount"].astype("float64") < 0, "negative discount")
    elif name == "products":
        if "margin_rate" in df:
            mr = df["margin_rate"].astype("float64")
            flag((mr < 0) | (mr > 1), "margin_rate outside 0..1")
        if "price" in df:
            flag(df["price"].astype("float64") < 0, "negative price")
    elif name == "coupons":
        flag(~df["kind"].isin(COUPON_KINDS), "unknown coupon kind")
        flag(df["value"] < 0, "negative coupon value")
    elif name == "coupon_offers":
        if "redeemed_ts" in df:
            red = pd.to_datetime(df["redeemed_ts"])
            flag(red < df["offered_ts"], "redeemed before offered")
    elif name == "messages":
        for col in ("opened_ts", "clicked_ts"):
            if col in df:
                flag(pd.to_datetime(df[col]) < df["sent_ts"], f"{col} before sent_ts")
    elif name == "members" and "timezone" in df:
        from zoneinfo import available_timezones

        zones = available_timezones() | {"UTC"}
        tz = df["timezone"]
        flag(tz.notna() & ~tz.isin(zones), "unknown timezone")
    table = TABLES[name]
    if table.key:
        dup = df.duplicated(list(table.key), keep="first") & (reasons == "")
        flag(dup, "duplicate " + ",".join(table.key))


_TIME_COLUMN = {
    "order_lines": "ts",
    "events": "ts",
    "messages": "sent_ts",
    "coupon_offers": "offered_ts",
    "members": "signup_ts",
}
# reactions recorded after the as-of instant are the future: hidden, not errors
_FUTURE_REACTIONS = {
    "messages": ("opened_ts", "clicked_ts"),
    "coupon_offers": ("redeemed_ts",),
}


DUPLICATE_LINE = "exact duplicate of an earlier order line"


def load_shop(
    data_dir: Path, as_of: date, config: IngestConfig | None = None, progress: Reporter = silent
) -> ShopData:
    """Read, type and check every table; nothing is written here (``progress`` shows a bar
    over the tables; pipelines.progress).

    Raises ContractError for a missing required table or column, a CSV that is not
    UTF-8, and an order_lines table with no row kept on or before ``as_of``.
    """
    config = config or IngestConfig()
    paths = check_contract(data_dir)
    cutoff = as_of_cutoff(as_of)
    tables: dict[str, pd.DataFrame] = {}
    report: dict[str, TableReport] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    for name, path in track(progress, list(paths.items()), "tables read"):
        table = TABLES[name]
        raw = _read_raw(path).reset_index(drop=True)
        if name == "order_lines" and raw.empty:
            raise ContractError(
                f"table 'order_lines' ({path}) has no rows: the run needs at least one order line"
            )
        typed, reasons = _coerce(raw, table)
        _table_rules(name, typed, reasons)
        rep = TableReport(read=len(raw))
        if name == "order_lines":
            # the same line twice inflates spend silently: counted always, dropped by default
            dup = raw.duplicated(keep="first") & (reasons == "")
            rep.duplicates = int(dup.sum())
            if config.duplicate_lines == "drop":
                reasons[dup] = DUPLICATE_LINE
        bad = reasons != ""
        if bad.any():
            q = raw[bad].astype("string").copy()
            q.insert(0, "reason", reasons[bad].values)
            q.insert(0, "source_row", np.flatnonzero(bad.values))
            quarantine[name] = q
            rep.quarantined = int(bad.sum())
            rep.reasons = {str(k): int(v) for k, v in reasons[bad].value_counts().items()}
        kept = typed[~bad]
        tcol = _TIME_COLUMN.get(name)
        if tcol is not None and tcol in kept:
            later = pd.to_datetime(kept[tcol]) >= cutoff
            rep.after_as_of = int(later.sum())
            kept = kept[~later]
        for col in _FUTURE_REACTIONS.get(name, ()):
            if col in kept:
                c = pd.to_datetime(kept[col])
                kept = kept.assign(**{col: c.where(c < cutoff)})
        if "discount" in kept:
            kept = kept.assign(discount=kept["discount"].astype("float64").fillna(0.0))
        rep.kept = len(kept)
        tables[name] = kept.reset_index(drop=True)
        report[name] = rep
    _quarantine_orphan_returns(tables, report, quarantine)
    if tables["order_lines"].empty:
        rep = report["order_lines"]
        why = ", ".join(f"{k}: {v}" for k, v in sorted(rep.reasons.items(), key=lambda kv: -kv[1]))
        raise ContractError(
            f"no order line on or before {as_of} can be used: {rep.read} read, "
            f"{rep.quarantined} quarantined ({why or 'none'}), {rep.after_as_of} after {as_of}"
        )
    return ShopData(as_of=as_of, tables=tables, report=report, quarantine=quarantine)


def _quarantine_orphan_returns(
    tables: dict[str, pd.DataFrame],
    report: dict[str, TableReport],
    quarantine: dict[str, pd.DataFrame],
) -> None:
    """A return line for a product the member never bought before it is quarantined."""
    ol = tables["order_lines"]
    neg = ol["quantity"] < 0
    if not neg.any():
        return
    buys = ol.loc[~neg & ol["product_id"].notna(), ["member_id", "product_id", "ts"]]
    first_buy = buys.groupby(["member_id", "product_id"], as_index=False)["ts"].min()
    rets = ol.loc[neg & ol["product_id"].notna(), ["member_id", "product_id", "ts"]].reset_index()
    joined = rets.merge(first_buy, on=["member_id", "product_id"], how="left", suffixes=("", "_b"))
    orphan_idx = joined.loc[joined["ts_b"].isna() | (joined["ts_b"] > joined["ts"]), "index"]
    if orphan_idx.empty:
        return
    reason = "return of a product the member had not bought before"
    q = ol.loc[orphan_idx].astype("string").copy()
    q.insert(0, "reason", reason)
    q.insert(0, "source_row", -1)
    quarantine["order_lines"] = pd.concat([quarantine.get("order_lines"), q], ignore_index=True)
    rep = report["order_lines"]
    rep.quarantined += len(orphan_idx)
    rep.kept -= len(orphan_idx)
    rep.reasons[reason] = rep.reasons.get(reason, 0) + len(orphan_idx)
    tables["order_lines"] = ol.drop(index=orphan_idx).reset_index(drop=True)


def write_quarantine(shop: ShopData, quarantine_dir: Path, reports_dir: Path) -> Path:
    """Write quarantined rows (with reasons) and the ingest report; returns the report path."""
    stamp = shop.as_of.isoformat()
    qdir = quarantine_dir / stamp
    qdir.mkdir(parents=True, exist_ok=True)
    for old in qdir.glob("*.parquet"):
        old.unlink()
    for name, q in shop.quarantine.items():
        q.to_parquet(qdir / f"{name}.parquet", index=False)
    rdir = reports_dir / stamp
    rdir.mkdir(parents=True, exist_ok=True)
    path = rdir / "ingest.json"
    path.write_text(json.dumps(shop.report_dict(), indent=2))
    return path
