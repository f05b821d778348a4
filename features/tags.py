"""Member tags as of a date, computed with DuckDB.

Input: the typed tables of a shop (pandas frames as read by the ingest step, timestamps
naive UTC). Output: one row per member known at the as-of instant, with numeric
behaviour features, RFM scores, lifecycle stage, value tier, rule tags and early-warning
signals. ``as_of`` is a date; everything up to the end of that day (UTC) is visible.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from features.rules import TagRules, evaluate_tags, load_rules, without_scores
from features.settings import TagConfig

LIFECYCLE_STAGES = (
    "new",
    "active",
    "growing",
    "mature",
    "declining",
    "dormant",
    "churned",
    "reactivated",
)

# The classic RFM grid on recency and frequency scores: (segment, R range, F range).
RFM_SEGMENTS: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("champions", (5, 5), (4, 5)),
    ("loyal_customers", (3, 4), (4, 5)),
    ("potential_loyalists", (4, 5), (2, 3)),
    ("new_customers", (5, 5), (1, 1)),
    ("promising", (4, 4), (1, 1)),
    ("need_attention", (3, 3), (3, 3)),
    ("about_to_sleep", (3, 3), (1, 2)),
    ("cant_lose_them", (1, 2), (5, 5)),
    ("at_risk", (1, 2), (3, 4)),
    ("hibernating", (1, 2), (1, 2)),
)

# Numeric features (float) that models may consume; the Feast schema is built from these.
NUMERIC_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "purchase_days",
    "first_purchase_days",
    "monetary",
    "avg_order_value",
    "max_order_value",
    "median_order_value",
    "order_value_ratio",
    "orders_30d",
    "orders_recent",
    "orders_previous",
    "spend_recent",
    "spend_previous",
    "tenure_days",
    "usual_cycle_days",
    "gap_ratio",
    "distinct_products",
    "discount_share",
    "discount_order_share",
    "discount_order_lift",
    "last_gap_days",
    "events_30d",
    "events_recent",
    "messages_recent",
    "opens_recent",
    "open_rate",
    "top_category_share",
    "coupon_offers",
    "coupon_redemption_rate",
    "coupon_redemption_lift",
    "r_score",
    "f_score",
    "m_score",
)
STRING_FEATURES: tuple[str, ...] = (
    "country",
    "rfm_segment",
    "lifecycle_stage",
    "value_tier",
    "top_category",
    "categories",
    "preferred_channel",
    "timezone",
    "tags",
)
INT_FEATURES: tuple[str, ...] = ("active_hour", "active_how")


def reference_instant(as_of: date) -> datetime:
    """The exclusive end of the as-of day (UTC, naive)."""
    return datetime.combine(as_of, datetime.min.time()) + timedelta(days=1)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def compute_tags(
    tables: dict[str, pd.DataFrame],
    as_of: date,
    config: TagConfig | None = None,
    rules: TagRules | None = None,
) -> pd.DataFrame:
    """Tags of every member known by the end of ``as_of``.

    Returns a frame with ``member_id``, ``event_timestamp`` (the as-of date, UTC), the
    columns in NUMERIC_FEATURES, STRING_FEATURES and INT_FEATURES, and the rule tags of
    ``rules`` (default: features/default_tags.yaml) that need no model score: one bool
    column per plain tag, the winner of each exclusive group in a column named for the
    group (``lifecycle_stage`` among them), and ``tags``, the holding plain tags joined by
    commas. Rules on model scores are evaluated after the models score
    (:func:`features.rules.evaluate_tags` on the member table).
    """
    cfg = config or TagConfig()
    ref = reference_instant(as_of)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ol = tables["order_lines"]
    if "discount" not in ol:
        ol = ol.assign(discount=0.0)
    con.register("order_lines_all", ol)
    members = tables.get("members")
    if members is None:
        members = _empty(
            {"member_id": "string", "signup_ts": "datetime64[us]", "timezone": "string"}
        )
    if "signup_ts" not in members:
        members = members.assign(
            signup_ts=pd.Series(pd.NaT, index=members.index, dtype="datetime64[us]")
        )
    if "timezone" not in members:
        members = members.assign(timezone=pd.Series(pd.NA, index=members.index, dtype="string"))
    con.register("members_all", members[["member_id", "signup_ts", "timezone"]])
    products = tables.get("products")
    if products is None or "category" not in products:
        products = _empty({"product_id": "string", "category": "string"})
    con.register("products", products[["product_id", "category"]])
    events = tables.get("events")
    if events is None:
        events = _empty({"member_id": "string", "ts": "datetime64[us]"})
    con.register("events_all", events[["member_id", "ts"]])
    messages = tables.get("messages")
    if messages is None:
        messages = _empty(
            {
                "member_id": "string",
                "channel": "string",
                "sent_ts": "datetime64[us]",
                "opened_ts": "datetime64[us]",
            }
        )
    if "opened_ts" not in messages:
        messages = messages.assign(
            opened_ts=pd.Series(pd.NaT, index=messages.index, dtype="datetime64[us]")
        )
    con.register("messages_all", messages[["member_id", "channel", "sent_ts", "opened_ts"]])

    offers = tables.get("coupon_offers")
    if offers is None:
        offers = _empty({"member_id": "string", "offered_ts": "datetime64[us]",
                         "coupon_id": "string", "redeemed_ts": "datetime64[us]"})  # fmt: skip
    if "redeemed_ts" not in offers:
        offers = offers.assign(
            redeemed_ts=pd.Series(pd.NaT, index=offers.index, dtype="datetime64[us]")
        )
    con.register("offers_all", offers[["member_id", "offered_ts", "coupon_id", "redeemed_ts"]])

    w = cfg.activity_window_days
    params = {
        "ref": ref,
        "recent_start": ref - timedelta(days=w),
        "prev_start": ref - timedelta(days=2 * w),
        "hf_start": ref - timedelta(days=cfg.high_frequency_window_days),
        "d30": ref - timedelta(days=30),
    }
    con.execute(
        """
        CREATE TEMP TABLE lines AS
        SELECT member_id, order_id, ts, product_id, quantity, unit_price,
               COALESCE(discount, 0.0) AS discount,
               quantity * unit_price - COALESCE(discount, 0.0) AS net
        FROM order_lines_all WHERE ts < $ref;
        CREATE TEMP TABLE orders AS
        SELECT member_id, order_id, MIN(ts) AS ts, SUM(net) AS value,
               SUM(CASE WHEN quantity > 0 THEN quantity * unit_price ELSE 0 END) AS gross,
               SUM(CASE WHEN quantity > 0 THEN discount ELSE 0 END) AS disc,
               BOOL_OR(quantity > 0) AS is_purchase
        FROM lines GROUP BY member_id, order_id;
        """.replace("$ref", "TIMESTAMP '" + ref.isoformat(sep=" ") + "'")
    )
    sql = """
    WITH purchases AS (
        SELECT *, ts - LAG(ts) OVER (PARTITION BY member_id ORDER BY ts) AS gap
        FROM orders WHERE is_purchase
    ),
    o AS (
        SELECT member_id,
               MIN(ts) AS first_ts, MAX(ts) AS last_ts, COUNT(*) AS frequency,
               COUNT(DISTINCT CAST(ts AS DATE)) AS purchase_days,
               AVG(value) AS avg_order_value, MAX(value) AS max_order_value,
               MEDIAN(value) AS median_order_value,
               AVG(CASE WHEN disc > 0 THEN 1.0 ELSE 0.0 END) AS discount_order_share,
               SUM(gross) AS gross, SUM(disc) AS disc,
               COUNT(*) FILTER (WHERE ts >= $hf_start) AS orders_30d,
               COUNT(*) FILTER (WHERE ts >= $recent_start) AS orders_recent,
               COUNT(*) FILTER (WHERE ts >= $prev_start AND ts < $recent_start) AS orders_previous,
               COALESCE(SUM(value) FILTER (WHERE ts >= $recent_start), 0) AS spend_recent,
               COALESCE(SUM(value) FILTER (WHERE ts >= $prev_start AND ts < $recent_start), 0)
                   AS spend_previous,
               MEDIAN(epoch(gap) / 86400.0) AS usual_cycle_days,
               arg_max(epoch(gap) / 86400.0, ts) AS last_gap_days
        FROM purchases GROUP BY member_id
    ),
    money AS (SELECT member_id, SUM(value) AS monetary FROM orders GROUP BY member_id),
    prod AS (
        SELECT member_id, COUNT(DISTINCT product_id) AS distinct_products
        FROM lines WHERE quantity > 0 AND product_id IS NOT NULL GROUP BY member_id
    ),
    ev AS (
        SELECT member_id,
               COUNT(*) FILTER (WHERE ts >= $d30) AS events_30d,
               COUNT(*) FILTER (WHERE ts >= $recent_start) AS events_recent
        FROM events_all WHERE ts < $ref GROUP BY member_id
    ),
    msg AS (
        SELECT member_id,
               COUNT(*) FILTER (WHERE sent_ts >= $recent_start) AS messages_recent,
               COUNT(*) FILTER (WHERE sent_ts >= $recent_start AND opened_ts IS NOT NULL)
                   AS opens_recent,
               AVG(CASE WHEN opened_ts IS NOT NULL THEN 1.0 ELSE 0.0 END) AS open_rate
        FROM messages_all WHERE sent_ts < $ref GROUP BY member_id
    ),
    chan AS (
        SELECT member_id, arg_max(channel, rate * 1e6 + opens) AS preferred_channel
        FROM (
            SELECT member_id, channel, COUNT(opened_ts) AS opens,
                   COUNT(opened_ts) * 1.0 / COUNT(*) AS rate
            FROM messages_all WHERE sent_ts < $ref GROUP BY member_id, channel
        ) GROUP BY member_id
    ),
    cpn AS (
        SELECT member_id, COUNT(*) AS coupon_offers,
               AVG(CASE WHEN redeemed_ts IS NOT NULL AND redeemed_ts < $ref THEN 1.0 ELSE 0.0 END)
                   AS coupon_redemption_rate
        FROM offers_all WHERE offered_ts < $ref AND coupon_id IS NOT NULL GROUP BY member_id
    ),
    ids AS (
        SELECT member_id FROM members_all WHERE signup_ts IS NULL OR signup_ts < $ref
        UNION SELECT member_id FROM orders
    ),
    base AS (
        SELECT ids.member_id,
               COALESCE(m.timezone, 'UTC') AS timezone,
               COALESCE(LEAST(m.signup_ts, o.first_ts), m.signup_ts, o.first_ts) AS since_ts,
               o.*  EXCLUDE (member_id),
               money.monetary, prod.distinct_products,
               ev.events_30d, ev.events_recent,
               msg.messages_recent, msg.opens_recent, msg.open_rate,
               chan.preferred_channel, cpn.coupon_offers, cpn.coupon_redemption_rate
        FROM ids
        LEFT JOIN (SELECT member_id, ANY_VALUE(signup_ts) AS signup_ts,
                          ANY_VALUE(timezone) AS timezone
                   FROM members_all GROUP BY member_id) m USING (member_id)
        LEFT JOIN o USING (member_id)
        LEFT JOIN money USING (member_id)
        LEFT JOIN prod USING (member_id)
        LEFT JOIN ev USING (member_id)
        LEFT JOIN msg USING (member_id)
        LEFT JOIN chan USING (member_id)
        LEFT JOIN cpn USING (member_id)
    )
    SELECT member_id, timezone, first_ts, last_ts, last_gap_days AS last_gap_days,
           epoch($ref - last_ts) / 86400.0 AS recency_days,
           COALESCE(frequency, 0) AS frequency,
           COALESCE(purchase_days, 0) AS purchase_days,
           epoch($ref - first_ts) / 86400.0 AS first_purchase_days,
           COALESCE(monetary, 0) AS monetary,
           avg_order_value, max_order_value, median_order_value, discount_order_share,
           COALESCE(orders_30d, 0) AS orders_30d,
           COALESCE(orders_recent, 0) AS orders_recent,
           COALESCE(orders_previous, 0) AS orders_previous,
           COALESCE(spend_recent, 0) AS spend_recent,
           COALESCE(spend_previous, 0) AS spend_previous,
           epoch($ref - since_ts) / 86400.0 AS tenure_days,
           usual_cycle_days,
           epoch($ref - last_ts) / 86400.0 / NULLIF(usual_cycle_days, 0) AS gap_ratio,
           COALESCE(distinct_products, 0) AS distinct_products,
           COALESCE(disc / NULLIF(gross, 0), 0) AS discount_share,
           COALESCE(events_30d, 0) AS events_30d,
           COALESCE(events_recent, 0) AS events_recent,
           COALESCE(messages_recent, 0) AS messages_recent,
           COALESCE(opens_recent, 0) AS opens_recent,
           open_rate, preferred_channel,
           COALESCE(coupon_offers, 0) AS coupon_offers, coupon_redemption_rate
    FROM base
    """
    for k, v in params.items():
        sql = sql.replace("$" + k, "TIMESTAMP '" + v.isoformat(sep=" ") + "'")
    df = con.execute(sql).df()

    # categories: spend share per category over purchases
    cat = con.execute(
        """
        SELECT l.member_id, p.category, SUM(l.quantity * l.unit_price) AS spend
        FROM lines l JOIN products p USING (product_id)
        WHERE l.quantity > 0 AND p.category IS NOT NULL
        GROUP BY 1, 2
        """
    ).df()
    hours = con.execute(
        """
        WITH t AS (
            SELECT member_id, ts FROM orders WHERE is_purchase
            UNION ALL SELECT member_id, ts FROM events_all WHERE ts < $ref
            UNION ALL SELECT member_id, opened_ts FROM messages_all
                WHERE opened_ts IS NOT NULL AND opened_ts < $ref
        ),
        tz AS (SELECT member_id, ANY_VALUE(timezone) AS timezone FROM members_all GROUP BY 1),
        loc AS (
            SELECT t.member_id,
                   timezone(COALESCE(tz.timezone, 'UTC'), t.ts::TIMESTAMPTZ) AS lt
            FROM t LEFT JOIN tz USING (member_id)
        )
        SELECT member_id,
               (isodow(lt) - 1) * 24 + hour(lt) AS how, hour(lt) AS hod, COUNT(*) AS n
        FROM loc GROUP BY ALL
        """.replace("$ref", "TIMESTAMP '" + ref.isoformat(sep=" ") + "'")
    ).df()
    con.close()
    # the member's country (members table), the segment a member with no purchases yet is
    # recommended from (what members of the same country buy)
    src = tables.get("members")
    if src is not None and "country" in src and len(src):
        country = src.dropna(subset=["country"]).drop_duplicates("member_id", keep="last")
        df["country"] = df["member_id"].map(
            dict(zip(country["member_id"].astype(str), country["country"].astype(str), strict=True))
        )
    else:
        df["country"] = None
    return _finish(df, cat, hours, as_of, cfg, rules)


def _finish(
    df: pd.DataFrame,
    cat: pd.DataFrame,
    hours: pd.DataFrame,
    as_of: date,
    cfg: TagConfig,
    rules: TagRules | None,
) -> pd.DataFrame:
    df = df.sort_values("member_id", kind="stable").reset_index(drop=True)
    n = len(df)
    buyers = df["frequency"] > 0

    # RFM quintiles among buyers (ties broken by member_id so the split is deterministic)
    for col, name, ascending in (
        ("recency_days", "r_score", False),
        ("frequency", "f_score", True),
        ("monetary", "m_score", True),
    ):
        score = pd.Series(np.nan, index=df.index)
        b = df[buyers]
        if len(b):
            order = b.sort_values([col, "member_id"], ascending=[ascending, True]).index
            pos = pd.Series(np.arange(len(order)), index=order)
            score[b.index] = (pos.loc[b.index].to_numpy() * 5 // len(b)) + 1
        df[name] = score
    r, f = df["r_score"], df["f_score"]
    seg = pd.Series("no_purchase", index=df.index, dtype="object")
    for name, (r0, r1), (f0, f1) in reversed(RFM_SEGMENTS):
        seg[(r >= r0) & (r <= r1) & (f >= f0) & (f <= f1)] = name
    df["rfm_segment"] = seg

    # value tier: a pyramid on monetary value, top tier first
    shares = np.cumsum(cfg.value_tier_shares)
    order = df.sort_values(["monetary", "member_id"], ascending=[False, True]).index
    pct = pd.Series((np.arange(n) + 0.5) / max(n, 1), index=order).reindex(df.index)
    tier_idx = np.searchsorted(shares, pct.to_numpy(), side="right").clip(0, len(shares) - 1)
    df["value_tier"] = np.asarray(cfg.value_tier_names, dtype=object)[tier_idx]

    # scale-free comparisons with the shop: the member's typical order against the shop's
    # typical member, the member's response to discounts and offers against everyone's
    typical = df.loc[buyers, "median_order_value"].median()
    df["order_value_ratio"] = df["median_order_value"] / typical if typical and typical > 0 else np.nan  # fmt: skip
    shop_disc = df.loc[buyers, "discount_order_share"].mean()
    df["discount_order_lift"] = (
        df["discount_order_share"] / shop_disc if shop_disc and shop_disc > 0 else np.nan
    )
    offered = df["coupon_offers"] > 0
    shop_redeem = (
        (df.loc[offered, "coupon_redemption_rate"] * df.loc[offered, "coupon_offers"]).sum()
        / df.loc[offered, "coupon_offers"].sum()
        if offered.any()
        else np.nan
    )
    df["coupon_redemption_lift"] = (
        df["coupon_redemption_rate"] / shop_redeem if shop_redeem and shop_redeem > 0 else np.nan
    )

    # category preferences
    if len(cat):
        cat = cat.sort_values(["member_id", "spend", "category"], ascending=[True, False, True])
        total = cat.groupby("member_id")["spend"].transform("sum")
        cat = cat.assign(share=cat["spend"] / total)
        top = cat.groupby("member_id").head(cfg.top_categories)
        lists = top.groupby("member_id")["category"].agg(",".join)
        first = top.groupby("member_id").head(1).set_index("member_id")
        df["top_category"] = df["member_id"].map(first["category"])
        df["top_category_share"] = df["member_id"].map(first["share"])
        df["categories"] = df["member_id"].map(lists)
    else:
        df["top_category"] = None
        df["top_category_share"] = np.nan
        df["categories"] = None

    # active hours in the member's own timezone (mode of engagement hour-of-week / hour)
    if len(hours):
        how = hours.sort_values(["member_id", "n", "how"], ascending=[True, False, True])
        how = how.groupby("member_id").head(1).set_index("member_id")["how"]
        hod = hours.groupby(["member_id", "hod"], as_index=False)["n"].sum()
        hod = hod.sort_values(["member_id", "n", "hod"], ascending=[True, False, True])
        hod = hod.groupby("member_id").head(1).set_index("member_id")["hod"]
        df["active_how"] = df["member_id"].map(how).astype("Int64")
        df["active_hour"] = df["member_id"].map(hod).astype("Int64")
    else:
        df["active_how"] = pd.Series(pd.NA, index=df.index, dtype="Int64")
        df["active_hour"] = pd.Series(pd.NA, index=df.index, dtype="Int64")

    df["event_timestamp"] = pd.Timestamp(as_of, tz="UTC")
    for c in NUMERIC_FEATURES:
        df[c] = df[c].astype("float64")

    # rule tags and exclusive groups, from the rules file (those needing no model score)
    base = without_scores(rules if rules is not None else load_rules())
    ev = evaluate_tags(df, base)
    plain = [t.name for t in base.tags]
    for name in plain:
        df[name] = ev[name].to_numpy(bool)
    for g in base.groups:
        df[g.name] = ev[g.name].to_numpy(object)
    flags = df[plain].to_numpy(bool) if plain else np.zeros((len(df), 0), dtype=bool)
    names = np.asarray(plain, dtype=object)
    df["tags"] = [",".join(names[row]) for row in flags]
    for c in STRING_FEATURES:
        if c not in df:
            df[c] = None  # a rules file without that group
        df[c] = df[c].astype("object").where(df[c].notna(), None)
    groups = [g.name for g in base.groups if g.name not in STRING_FEATURES]
    cols = ["member_id", "event_timestamp", *NUMERIC_FEATURES, *plain, *STRING_FEATURES,
            *INT_FEATURES, *groups]  # fmt: skip
    return df[cols]
