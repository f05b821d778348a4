"""Tag rules as data: parsing, the two compilations, validation with lines, reasons."""

import json
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.rules import (
    DEFAULT_RULES,
    And,
    Between,
    Compare,
    In,
    Not,
    Or,
    RuleError,
    RulesInvalid,
    _holds,
    evaluate_tags,
    feature_kinds,
    group_to_sql,
    load_rules,
    parse_rule,
    rules_version,
    to_mask,
    to_sql,
    validate_rules,
)
from features.settings import TagConfig
from features.tags import compute_tags

BOOL_TAGS = tuple(t.name for t in load_rules().tags)


@pytest.fixture
def frame():
    """Six members whose right answers are read off by eye; member f has missing values."""
    return pd.DataFrame(
        {
            "member_id": ["a", "b", "c", "d", "e", "f"],
            "recency_days": [74.0, 10.0, 61.0, 60.0, 200.0, np.nan],
            "frequency": [2.0, 5.0, 1.0, 3.0, 0.0, 0.0],
            "orders_recent": [1.0, 4.0, 0.0, 2.0, 0.0, 0.0],
            "orders_previous": [2.0, 2.0, 0.0, 2.0, 3.0, 0.0],
            "country": ["DE", "FR", "DE", None, "NL", "FR"],
            "dormant": [True, False, True, False, True, False],
        }
    )


KINDS = {
    "member_id": "string",
    "recency_days": "number",
    "frequency": "number",
    "orders_recent": "number",
    "orders_previous": "number",
    "country": "string",
    "dormant": "bool",
}


# --------------------------------------------------------------------------- parsing


def test_compact_form_parses_into_the_tree():
    expr = parse_rule(
        "recency_days >= 60 and (country in ('DE', \"FR\") or not dormant) "
        "and frequency between 1 and 3 and orders_recent <= 0.5 * orders_previous"
    )
    assert expr == And(
        (
            Compare("recency_days", ">=", 60),
            Or((In("country", ("DE", "FR")), Not(Compare("dormant", "==", True)))),
            Between("frequency", 1, 3),
            Compare("orders_recent", "<=", 0.5, of="orders_previous"),
        )
    )
    assert parse_rule("a == 1 or b == 2 and c == 3") == Or(
        (Compare("a", "==", 1), And((Compare("b", "==", 2), Compare("c", "==", 3))))
    )
    assert parse_rule("country not in ['NL']") == In("country", ("NL",), negate=True)
    assert parse_rule("name == 'it\\'s'") == Compare("name", "==", "it's")


def test_yaml_structure_parses_into_the_same_tree_as_the_compact_form():
    structure = {
        "all": [
            {"feature": "recency_days", "op": ">=", "value": 60},
            {
                "any": [
                    {"feature": "country", "op": "in", "value": ["DE", "FR"]},
                    {"not": "dormant"},
                ]
            },  # fmt: skip
            {"feature": "frequency", "op": "between", "value": [1, 3]},
        ]
    }
    compact = "recency_days >= 60 and (country in ('DE', 'FR') or not dormant) and frequency between 1 and 3"  # fmt: skip
    assert parse_rule(structure) == parse_rule(compact)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "recency_days > 60; DROP TABLE members",
        "recency_days > ",
        "recency_days >= 60 and",
        "(recency_days >= 60",
        "recency_days = 60",
        "x between 5 and 1",
        "country in ()",
        "open(1)",
        "a > b",
        "",
    ],
)
def test_compact_form_rejects_anything_outside_the_language(text):
    with pytest.raises(RuleError):
        parse_rule(text, line=7)


def test_parse_errors_carry_the_line():
    with pytest.raises(RuleError) as info:
        parse_rule("recency_days >> 60", line=12)
    assert info.value.line == 12 and "line 12" in str(info.value)


# --------------------------------------------------------------------------- two compilations


RULES = [
    "recency_days > 60",
    "recency_days >= 60 and frequency < 3",
    "not recency_days > 60",
    "country != 'DE'",
    "country in ('DE', 'NL')",
    "country not in ('DE')",
    "frequency between 1 and 3 or dormant",
    "not (dormant or country == 'FR')",
    "orders_previous > 0 and orders_recent <= 0.5 * orders_previous",
    "dormant == false",
]


@pytest.mark.parametrize("text", RULES)
def test_pandas_and_duckdb_agree_row_for_row(frame, text):
    expr = parse_rule(text)
    sql, params = to_sql(expr, list(frame.columns))
    con = duckdb.connect()
    con.register("members", frame)
    got = con.execute(f"SELECT member_id FROM members WHERE {sql} ORDER BY member_id", params)
    in_sql = [r[0] for r in got.fetchall()]
    mask = to_mask(expr, frame)
    assert in_sql == sorted(frame.loc[mask, "member_id"])
    # the row-by-row evaluation behind the reasons agrees too
    assert [_holds(expr, row) for row in frame.to_dict("records")] == mask.tolist()


def test_known_answers_with_missing_values(frame):
    def members(text):
        return "".join(frame.loc[to_mask(parse_rule(text), frame), "member_id"])

    assert members("recency_days > 60") == "ace"  # f's recency is missing: false
    assert members("not recency_days > 60") == "bdf"  # ... and its negation true
    assert members("country != 'DE'") == "bef"  # d's country is missing: false
    assert members("orders_previous > 0 and orders_recent <= 0.5 * orders_previous") == "ae"


def test_sql_binds_every_literal_and_never_splices_user_text(frame):
    attack = "x'); DROP TABLE members; --"
    expr = parse_rule({"feature": "country", "op": "==", "value": attack})
    sql, params = to_sql(expr, list(frame.columns))
    assert attack not in sql and "DROP" not in sql and "'" not in sql
    assert params == [attack]
    con = duckdb.connect()
    con.execute("CREATE TABLE members AS SELECT * FROM frame")
    assert con.execute(f"SELECT COUNT(*) FROM members WHERE {sql}", params).fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM members").fetchone() == (6,)  # still there

    sql, params = to_sql(parse_rule("recency_days >= 60 and country in ('DE', 'FR')"), frame.columns)  # fmt: skip
    assert "60" not in sql and "DE" not in sql and params == [60, "DE", "FR"]


def test_sql_rejects_columns_it_does_not_know(frame):
    with pytest.raises(RuleError, match="unknown feature"):
        to_sql(parse_rule("password_hash == 'x'"), list(frame.columns))


def test_a_rule_on_a_column_the_frame_lacks_is_a_clear_error(frame):
    with pytest.raises(RuleError, match="churn_risk"):
        to_mask(parse_rule("churn_risk > 0.5"), frame)


# --------------------------------------------------------------------------- files


def _write(tmp_path, text):
    path = tmp_path / "tags.yaml"
    path.write_text(text)
    return path


def test_default_rules_validate():
    rules, problems = validate_rules(DEFAULT_RULES)
    assert problems == []
    assert {t.name for t in rules.tags} >= set(BOOL_TAGS)
    assert [g.name for g in rules.groups] == ["lifecycle_stage", "value_segment"]
    assert rules.version == rules_version(DEFAULT_RULES)


def test_validate_reports_every_problem_with_its_line(tmp_path):
    path = _write(
        tmp_path,
        """tags:
  - name: a
    rule: "__import__('os')"
  - name: b
    rule: {feature: no_such_column, op: ">", value: 1}
  - name: a
    rule: {feature: country, op: ">=", value: 5}
  - name: c
    rule: {feature: recency_days, op: "~", value: 5}
  - name: d
    rule:
      all:
        - {feature: frequency, op: ">", value: 1}
        - {feature: "__import__('os')", op: "==", value: 1}
groups:
  - name: empty
    tags: []
""",
    )
    _, problems = validate_rules(path)
    found = {(p.line, kind) for p in problems for kind in
             ("call", "unknown feature", "duplicate", "string feature", "unknown op",
              "not a feature name", "empty") if kind in p.message}  # fmt: skip
    assert found == {
        (3, "call"),
        (5, "unknown feature"),
        (6, "duplicate"),
        (7, "string feature"),
        (9, "unknown op"),
        (14, "not a feature name"),
        (17, "empty"),
    }
    with pytest.raises(RulesInvalid) as info:
        load_rules(path)
    assert len(info.value.problems) == len(problems)


def test_validate_finds_contradictions_and_shadowed_group_tags(tmp_path):
    path = _write(
        tmp_path,
        """groups:
  - name: stage
    tags:
      - {name: x, rule: "frequency > 1"}
      - {name: y, rule: "frequency > 1"}
      - {name: z, rule: "recency_days > 60 and recency_days <= 30"}
""",
    )
    _, problems = validate_rules(path)
    assert [(p.line, "never" in p.message) for p in problems] == [(5, True), (6, True)]


def test_names_of_output_columns_are_reserved(tmp_path):
    path = _write(tmp_path, "tags:\n  - {name: member_id, rule: frequency > 1}\n"
                            "  - {name: x_reason, rule: frequency > 1}\n")  # fmt: skip
    _, problems = validate_rules(path)
    assert [(p.line, "reserved" in p.message) for p in problems] == [(2, True), (3, True)]


def test_yaml_errors_and_duplicate_keys_have_lines(tmp_path):
    _, problems = validate_rules(_write(tmp_path, "tags:\n  - name: a\n    rule: [\n"))
    assert problems and problems[0].line >= 3 and "YAML" in problems[0].message
    path = _write(tmp_path, "tags:\n  - name: a\n    rule: frequency > 1\n    rule: frequency > 2\n")  # fmt: skip
    _, problems = validate_rules(path)
    assert [(p.line, "duplicate key" in p.message) for p in problems] == [(4, True)]


def test_rules_version_is_the_content_hash(tmp_path):
    path = _write(tmp_path, "tags:\n  - {name: a, rule: frequency > 1}\n")
    v1 = rules_version(path)
    assert len(v1) == 12 and int(v1, 16) >= 0
    assert load_rules(path).version == v1
    path.write_text("tags:\n  - {name: a, rule: frequency > 2}\n")
    assert rules_version(path) != v1


# --------------------------------------------------------------------------- evaluation

GROUPED = """tags:
  - name: dormant_60
    explain: "{recency_days} days since the last order"
    rule: {feature: recency_days, op: ">=", value: 60}
  - name: lapsing_buyer
    rule: recency_days > 30 and frequency >= 2
groups:
  - name: stage
    default: active
    tags:
      - {name: lost, rule: "recency_days > 180 or frequency == 0"}
      - {name: sleeping, rule: "recency_days > 60"}
      - {name: loyal, rule: "frequency >= 3"}
"""


def test_exclusive_groups_give_one_tag_per_member_first_match_wins(tmp_path, frame):
    rules = load_rules(_write(tmp_path, GROUPED), KINDS)
    out = evaluate_tags(frame, rules).set_index("member_id")
    cols = [rules.groups[0].column(n) for n in rules.groups[0].names]
    assert (out[cols].sum(axis=1) == 1).all()
    assert out["stage"].to_dict() == {"a": "sleeping", "b": "loyal", "c": "sleeping",
                                      "d": "loyal", "e": "lost", "f": "lost"}  # fmt: skip
    # the same group compiled to SQL picks the same winner
    sql, params = group_to_sql(rules.groups[0], list(frame.columns))
    con = duckdb.connect()
    con.register("members", frame)
    got = con.execute(f"SELECT member_id, {sql} FROM members", params).fetchall()
    assert dict(got) == out["stage"].to_dict()


def test_reasons_quote_the_value_and_the_threshold(tmp_path, frame):
    rules = load_rules(_write(tmp_path, GROUPED), KINDS)
    out = evaluate_tags(frame, rules).set_index("member_id")
    assert out.loc["a", "dormant_60_reason"] == (
        "dormant_60: 74 days since the last order (recency_days 74 >= 60)"
    )
    assert out.loc["b", "dormant_60_reason"] == ""  # the tag does not hold
    assert out.loc["a", "lapsing_buyer_reason"] == (
        "lapsing_buyer: recency_days 74 > 30 and frequency 2 >= 2"
    )
    assert out.loc["f", "stage.lost_reason"] == "stage lost: frequency 0 == 0"
    one = frame.iloc[[1]].assign(frequency=1.0)  # recent, one order: no rule holds
    quiet = evaluate_tags(one, rules).iloc[0]
    assert quiet["stage"] == "active"
    assert quiet["stage.active_reason"] == "stage active: no rule above it in the group holds"


def test_reasons_of_negations_and_lists():
    frame = pd.DataFrame({"member_id": ["x"], "recency_days": [12.5], "country": ["DE"]})
    kinds = {"member_id": "string", "recency_days": "number", "country": "string"}
    expr = parse_rule("not recency_days > 30 and country in ('DE', 'AT')")
    from features.rules import Tag, TagRules

    out = evaluate_tags(frame, TagRules((Tag("near", expr),)))
    assert out.loc[0, "near_reason"] == "near: recency_days 12.5 <= 30 and country 'DE' in ('DE', 'AT')"  # fmt: skip
    assert feature_kinds(frame) == kinds


# --------------------------------------------------------------------------- the defaults


def _tiny_shop():
    ref = pd.Timestamp("2024-07-01")
    rows = [  # member, days before the end of the as-of day, price, discount
        ("dormant", 61, 10, 0), ("dormant", 200, 10, 0),
        ("recent", 59, 10, 0), ("recent", 100, 10, 0),
        ("freq", 1, 10, 0), ("freq", 10, 10, 0), ("freq", 29, 10, 0), ("freq", 120, 10, 0),
        ("big", 5, 1500, 0), ("big", 300, 5, 0),
        ("deal", 5, 10, 8), ("deal", 40, 10, 0),
        ("drop", 40, 10, 0), ("drop", 95, 10, 0), ("drop", 100, 10, 0), ("drop", 120, 10, 0),
        ("gap", 60, 10, 0), ("gap", 80, 10, 0), ("gap", 100, 10, 0),
    ]  # fmt: skip
    lines = pd.DataFrame(
        [
            {
                "order_id": f"o{i}",
                "member_id": m,
                "ts": ref - pd.Timedelta(days=d),
                "product_id": "p1",
                "quantity": 1.0,
                "unit_price": float(p),
                "discount": float(disc),
            }
            for i, (m, d, p, disc) in enumerate(rows)
        ]  # fmt: skip
    )
    members = pd.DataFrame(
        {
            "member_id": ["idle", "joined"],
            "signup_ts": [ref - pd.Timedelta(days=90), ref - pd.Timedelta(days=5)],
            "timezone": ["UTC", "UTC"],
        }  # fmt: skip
    )
    return {"order_lines": lines, "members": members}


def test_default_rules_reproduce_the_computed_rule_tags():
    tags = compute_tags(_tiny_shop(), date(2024, 6, 30), TagConfig())
    out = evaluate_tags(tags, load_rules())
    for name in BOOL_TAGS:
        assert (out[name] == tags[name]).all(), name
    holding = tags[[t for t in BOOL_TAGS if t != "prefers_category"]]
    assert holding.any().all()  # every tag (but the category one: no products) holds here
    by = out.set_index("member_id")
    assert by.loc["dormant", "dormant_reason"].startswith("dormant: 61 days since the last order")
    # lifecycle comes from the file's exclusive group, the tag frame carries its winner
    assert (out["lifecycle_stage"] == tags["lifecycle_stage"]).all()
    assert len(set(out["lifecycle_stage"])) >= 4


def test_cli_validate_exit_codes(tmp_path):
    from pipelines.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["tags", "validate", str(DEFAULT_RULES)])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output and rules_version(DEFAULT_RULES) in ok.output
    bad = _write(tmp_path, "tags:\n  - name: x\n    rule: \"__import__('os')\"\n")
    res = runner.invoke(app, ["tags", "validate", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:3:" in res.output.replace("\n", "") and "call functions" in res.output


@pytest.mark.parametrize(
    "rule",
    [
        "recency_days > 60; DROP TABLE members",
        "recency_days > 60 -- comment",
        "recency_days > 60 or 1=1",
        "__import__('os').system('rm -rf /')",
        "eval('1')",
        "recency_days.__class__ > 1",
        "`recency_days` > 60",
    ],
)
def test_validate_rejects_injection_attempts(tmp_path, rule):
    """SQL fragments, calls and attribute access are refused by `tags validate` (exit 2,
    with the line of the rule)."""
    from pipelines.cli import app

    path = _write(tmp_path, f"tags:\n  - name: sneaky\n    rule: {json.dumps(rule)}\n")
    res = CliRunner().invoke(app, ["tags", "validate", str(path)])
    assert res.exit_code == 2, res.output
    assert f"{path}:3:" in res.output.replace("\n", "")


def test_a_quoted_string_is_bound_never_spliced():
    expr = parse_rule("value_tier == \"gold' OR '1'='1\"")
    sql, params = to_sql(expr, {"value_tier"})
    assert "OR '1'" not in sql and params == ["gold' OR '1'='1"]
