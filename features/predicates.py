"""Segment predicates: a JSON tree in the tag rules' language (features/rules.py), parsed into
the same expression tree and compiled to parameterized SQL for DuckDB or PostgreSQL.

A predicate is what a tag rule's ``rule:`` holds, as JSON::

    {"all": [{"feature": "value_tier", "op": "in", "value": ["gold", "platinum"]},
             {"feature": "churn_risk", "op": ">=", "value": 0.6},
             {"not": {"feature": "tags", "op": "==", "value": "dormant"}}]}

``any`` / ``all`` / ``not`` combine; a leaf is ``{feature, op, value}`` (or a string in the
compact form, ``"churn_risk >= 0.6"``). List columns (``tags``) take ``==`` (the list
contains the value), ``!=`` (it does not), ``in`` (it contains any of the values) and
``not in`` (none of them). Column names appear in the SQL only when they are columns of the
member table, quoted; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from features.rules import (
    COMPARE_OPS,
    And,
    Between,
    Compare,
    Expr,
    In,
    Kind,
    Not,
    Or,
    RuleError,
    check_types,
    parse_rule,
    quote_ident,
)

Dialect = Literal["duckdb", "postgres"]
ListKind = Literal["list"]
ColumnKinds = Mapping[str, Kind | ListKind]


class PredicateError(ValueError):
    """A predicate that cannot be parsed or does not fit the member table. ``node`` is the
    JSON path of the offending node (``$.all[1].not``)."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.message = message


def parse_predicate(tree: Any, kinds: ColumnKinds, max_nodes: int = 200) -> Expr:
    """The JSON tree -> the rules' expression tree, checked against ``kinds`` (column -> kind
    of the member table). Raises PredicateError naming the bad node."""
    count = 0

    def go(node: Any, where: str) -> Expr:
        nonlocal count
        count += 1
        if count > max_nodes:
            raise PredicateError(where, f"a predicate has at most {max_nodes} nodes")
        if isinstance(node, Mapping):
            keys = set(node)
            for key, cls in (("all", And), ("any", Or)):
                if key in keys:
                    if keys != {key}:
                        raise PredicateError(where, f"'{key}' stands alone, found also {sorted(keys - {key})}")  # fmt: skip
                    items = node[key]
                    if not isinstance(items, list) or not items:
                        raise PredicateError(f"{where}.{key}", f"'{key}' needs a non-empty list")
                    sub = tuple(go(it, f"{where}.{key}[{i}]") for i, it in enumerate(items))
                    return sub[0] if len(sub) == 1 else cls(sub)
            if "not" in keys:
                if keys != {"not"}:
                    raise PredicateError(where, f"'not' stands alone, found also {sorted(keys - {'not'})}")  # fmt: skip
                return Not(go(node["not"], f"{where}.not"))
        elif not isinstance(node, str):
            raise PredicateError(where, f"a node is an object or a string, not {type(node).__name__}")  # fmt: skip
        try:
            leaf = parse_rule(dict(node) if isinstance(node, Mapping) else node)
        except RuleError as exc:
            raise PredicateError(where, exc.message) from None
        _check_leaf(leaf, kinds, where)
        return leaf

    return go(tree, "$")


def _check_leaf(expr: Expr, kinds: ColumnKinds, where: str) -> None:
    if isinstance(expr, (And, Or, Not)):  # a compact string may hold a whole tree
        items = expr.items if isinstance(expr, (And, Or)) else (expr.item,)
        for item in items:
            _check_leaf(item, kinds, where)
        return
    kind = kinds.get(expr.feature)
    if kind is None:
        raise PredicateError(where, f"unknown feature {expr.feature!r}; known: {', '.join(sorted(kinds))}")  # fmt: skip
    if kind == "list":
        if isinstance(expr, Between) or (isinstance(expr, Compare) and expr.op not in ("==", "!=")):  # fmt: skip
            raise PredicateError(where, f"{expr.feature!r} is a list: use ==, !=, in or not in")
        values = expr.values if isinstance(expr, In) else (expr.value,)  # type: ignore[union-attr]
        if any(not isinstance(v, str) for v in values) or (isinstance(expr, Compare) and expr.of):
            raise PredicateError(where, f"{expr.feature!r} holds names: compare it with strings")
        return
    scalar = {k: v for k, v in kinds.items() if v != "list"}
    problems = check_types(expr, scalar)  # type: ignore[arg-type]
    if problems:
        raise PredicateError(where, problems[0].message)


@dataclass(frozen=True)
class Compiled:
    """A boolean SQL expression (after WHERE) and its parameters, in order."""

    sql: str
    params: list[Any]


def to_sql(expr: Expr | None, kinds: ColumnKinds, dialect: Dialect) -> Compiled:
    """``expr`` as a boolean SQL expression for ``dialect`` (``?`` placeholders for DuckDB,
    ``%s`` for PostgreSQL). NULLs compare false, so ``NOT`` of a rule is its complement.
    ``None`` is every member (``TRUE``)."""
    if expr is None:
        return Compiled("TRUE", [])
    mark = "?" if dialect == "duckdb" else "%s"
    params: list[Any] = []
    cols = set(kinds)

    def go(e: Expr) -> str:
        if isinstance(e, (And, Or)):
            joiner = " AND " if isinstance(e, And) else " OR "
            return "(" + joiner.join(go(i) for i in e.items) + ")"
        if isinstance(e, Not):
            return "(NOT " + go(e.item) + ")"
        col = quote_ident(e.feature, cols)
        if kinds[e.feature] == "list":
            return _list_sql(e, col, params, dialect)
        if isinstance(e, Between):
            params.extend([e.low, e.high])
            return f"COALESCE({col} BETWEEN {mark} AND {mark}, FALSE)"
        if isinstance(e, In):
            params.extend(e.values)
            marks = ", ".join(mark for _ in e.values)
            neg = "NOT " if e.negate else ""
            return f"COALESCE({col} {neg}IN ({marks}), FALSE)"
        if e.op not in COMPARE_OPS:
            raise RuleError(f"unknown op {e.op!r}")
        op = "=" if e.op == "==" else ("<>" if e.op == "!=" else e.op)
        params.append(e.value)
        if e.of is not None:
            return f"COALESCE({col} {op} {mark} * {quote_ident(e.of, cols)}, FALSE)"
        return f"COALESCE({col} {op} {mark}, FALSE)"

    return Compiled(go(expr), params)


def _list_sql(e: Expr, col: str, params: list[Any], dialect: Dialect) -> str:
    if isinstance(e, In):
        params.append(list(e.values))
        if dialect == "duckdb":
            test = f"list_has_any({col}, ?::VARCHAR[])"
        else:
            test = f"{col} && %s::text[]"
        return f"{'NOT ' if e.negate else ''}COALESCE({test}, FALSE)"
    assert isinstance(e, Compare)
    params.append(e.value)
    test = f"list_contains({col}, ?)" if dialect == "duckdb" else f"%s = ANY({col})"
    return f"{'NOT ' if e.op == '!=' else ''}COALESCE({test}, FALSE)"


def kinds_of(columns: Sequence[tuple[str, str]]) -> dict[str, Kind | ListKind]:
    """Column kinds from (name, SQL type) pairs as either database reports them."""
    out: dict[str, Kind | ListKind] = {}
    for name, sql_type in columns:
        t = sql_type.upper()
        if t.endswith("[]") or t == "ARRAY" or t.startswith("_"):
            out[name] = "list"
        elif t.startswith("BOOL"):
            out[name] = "bool"
        elif any(k in t for k in ("INT", "DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")):
            out[name] = "number"
        elif any(k in t for k in ("CHAR", "TEXT", "STRING", "DATE", "TIME")):
            out[name] = "string"
    return out
