"""Tag rules as data: a small rule language, parsed into an expression tree and compiled two
ways from the same tree, to a boolean mask over a pandas frame and to a DuckDB ``WHERE``
clause with ``?`` parameters.

A rule compares a member feature (a column of the tag frame, or a model score such as
``churn_risk``) with a literal (number, string, true/false) or with a number times another
numeric feature, combined with and / or / not. It is written either as YAML::

    {all: [{feature: recency_days, op: ">", value: 60},
           {feature: country, op: in, value: [DE, FR]}]}

or in the compact form, parsed by the recursive-descent parser below (never by ``eval``)::

    recency_days > 60 and country in ("DE", "FR")
    orders_recent <= 0.5 * orders_previous and not (frequency between 1 and 2)

A comparison on a missing value is false (also for ``!=`` and ``not in``); ``not`` negates that
result, so both compilations agree row for row. Identifiers must name a known column and are
quoted in SQL; literals are always bound as parameters. No text a user writes ever becomes SQL
or Python code.

A rules file (features/default_tags.yaml is the programme's defaults) holds ``tags`` (each holds
or not, independently) and exclusive ``groups`` (ordered: the first tag whose rule matches wins,
members matching none get the group's ``default``). :func:`load_rules` reads it, keeping line
numbers; :func:`validate_rules` lists every problem with its line; :func:`evaluate_tags` gives a
bool column per tag and a sentence per tag and member saying why; :func:`rules_version` is the
file's content hash.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import pandas as pd

DEFAULT_RULES = Path(__file__).with_name("default_tags.yaml")
LIVE_RULES = "tags.yaml"  # the home's copy of the rules in force (``memberwise run --tags``)

Kind = Literal["number", "string", "bool"]
Scalar = Union[float, int, str, bool]  # noqa: UP007  (a runtime alias, kept readable)

COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")
ORDER_OPS = ("<", "<=", ">", ">=")
LIST_OPS = ("in", "not in")
ALL_OPS = (*COMPARE_OPS, *LIST_OPS, "between")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODEL_SCORES: dict[str, Kind] = {
    "churn_risk": "number", "clv_12m": "number", "abuse_risk": "number",
}  # fmt: skip
"""Model score columns a rule may name; rules naming one are evaluated after the models
score (on the member table), the others when the tag frame is built."""


class RuleError(ValueError):
    """A rule that cannot be parsed or does not fit the features; ``line`` is 1-based (0 when
    unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class RulesInvalid(ValueError):
    """A rules file with problems; ``problems`` lists every one (each a RuleError)."""

    def __init__(self, path: Path | str, problems: Sequence[RuleError]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s)\n{lines}")


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Compare:
    """``feature op value``; with ``of`` set, ``feature op value * of`` (both numeric)."""

    feature: str
    op: str
    value: Scalar
    of: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class In:
    """``feature in values`` (``negate``: not in)."""

    feature: str
    values: tuple[Scalar, ...]
    negate: bool = False
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Between:
    """``low <= feature <= high``."""

    feature: str
    low: float
    high: float
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    item: Expr
    line: int = field(default=0, compare=False)


Expr = Union[Compare, In, Between, And, Or, Not]  # noqa: UP007


def features_of(expr: Expr) -> Iterator[tuple[str, int]]:
    """Every (feature, line) the rule names, in order."""
    if isinstance(expr, (And, Or)):
        for item in expr.items:
            yield from features_of(item)
    elif isinstance(expr, Not):
        yield from features_of(expr.item)
    else:
        yield expr.feature, expr.line
        if isinstance(expr, Compare) and expr.of is not None:
            yield expr.of, expr.line


# --------------------------------------------------------------------------- compact form

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<punct>[()\[\],*])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "between", "true", "false"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, ident, keyword, op, punct, end
    text: str
    pos: int
    line: int


def _tokenize(text: str, line: int) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RuleError(
                f"unexpected character {text[pos]!r} at column {pos + 1} of {text!r}: a rule "
                "holds only feature names, numbers, quoted strings, < <= > >= == != * , ( ) "
                "and the words and, or, not, in, between, true, false",
                line + text.count("\n", 0, pos),
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "ident" and word.lower() in _KEYWORDS:
                kind, word = "keyword", word.lower()
            toks.append(_Tok(kind, word, pos, line + text.count("\n", 0, pos)))
        pos = m.end()
    toks.append(_Tok("end", "", len(text), line + text.count("\n")))
    return toks


class _Parser:
    """expr := and ("or" and)* ; and := unary ("and" unary)* ; unary := "not" unary | atom ;
    atom := "(" expr ")" | IDENT [comparison] ; comparison := OP literal | OP NUMBER "*" IDENT
    | ["not"] "in" list | "between" NUMBER "and" NUMBER ; list := "(" literal ("," literal)* ")"
    (or brackets). A bare IDENT means ``IDENT == true``."""

    def __init__(self, text: str, line: int) -> None:
        self.text = text
        self.toks = _tokenize(text, line)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: _Tok, expected: str) -> RuleError:
        found = "the end of the rule" if tok.kind == "end" else repr(tok.text)
        return RuleError(
            f"expected {expected} but found {found} at column {tok.pos + 1} of {self.text!r}",
            tok.line,
        )

    def accept(self, kind: str, text: str | None = None) -> _Tok | None:
        tok = self.peek()
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str, expected: str) -> _Tok:
        tok = self.accept(kind, text)
        if tok is None:
            raise self.fail(self.peek(), expected)
        return tok

    def parse(self) -> Expr:
        expr = self.expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "'and', 'or' or the end of the rule")
        return expr

    def expr(self) -> Expr:
        first = self.peek()
        items = [self.conj()]
        while self.accept("keyword", "or"):
            items.append(self.conj())
        return items[0] if len(items) == 1 else Or(tuple(items), first.line)

    def conj(self) -> Expr:
        first = self.peek()
        items = [self.unary()]
        while self.accept("keyword", "and"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items), first.line)

    def unary(self) -> Expr:
        tok = self.accept("keyword", "not")
        if tok:
            return Not(self.unary(), tok.line)
        return self.atom()

    def atom(self) -> Expr:
        if self.accept("punct", "("):
            expr = self.expr()
            self.expect("punct", ")", "')'")
            return expr
        tok = self.next()
        if tok.kind != "ident":
            raise self.fail(tok, "a feature name, 'not' or '('")
        name, line = tok.text, tok.line
        nxt = self.peek()
        if nxt.kind == "op":
            self.next()
            if self.peek().kind == "number" and self.toks[self.i + 1].text == "*":
                factor = float(self.next().text)
                self.next()
                other = self.next()
                if other.kind != "ident":
                    raise self.fail(other, "a numeric feature name after '*'")
                return Compare(name, nxt.text, factor, of=other.text, line=line)
            return Compare(name, nxt.text, self.literal(), line=line)
        if nxt.kind == "keyword" and nxt.text in ("in", "not"):
            self.next()
            negate = nxt.text == "not"
            if negate:
                self.expect("keyword", "in", "'in' after 'not'")
            return In(name, self.literal_list(), negate, line)
        if nxt.kind == "keyword" and nxt.text == "between":
            self.next()
            low = self.literal()
            self.expect("keyword", "and", "'and' between the two bounds")
            high = self.literal()
            return _between(name, low, high, line)
        if nxt.kind == "punct" and nxt.text in ("(", "["):
            raise RuleError(
                f"{name!r} is followed by {nxt.text!r}: a rule cannot call functions", line
            )
        return Compare(name, "==", True, line=line)  # a bare bool feature

    def literal(self) -> Scalar:
        tok = self.next()
        if tok.kind == "number":
            return _number(tok.text)
        if tok.kind == "string":
            return _unquote(tok.text)
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return tok.text == "true"
        raise self.fail(tok, "a number, a quoted string, true or false")

    def literal_list(self) -> tuple[Scalar, ...]:
        open_ = self.next()
        if open_.text not in ("(", "["):
            raise self.fail(open_, "'(' or '[' opening the list")
        close = ")" if open_.text == "(" else "]"
        values = [self.literal()]
        while self.accept("punct", ","):
            values.append(self.literal())
        self.expect("punct", close, f"',' or {close!r}")
        return tuple(values)


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if re.fullmatch(r"-?\d+", text) else value


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: m.group(1), body)


def _between(name: str, low: Any, high: Any, line: int) -> Between:
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RuleError(f"between needs two numbers, got {v!r}", line)
    if low > high:
        raise RuleError(f"between {low} and {high} can never hold: the low bound is above", line)
    return Between(name, low, high, line)


def parse_rule(rule: Any, line: int = 0) -> Expr:
    """A rule in compact form (a string) or YAML structure (dicts and lists, as loaded) -> the
    expression tree. Raises RuleError."""
    if isinstance(rule, str):
        if not rule.strip():
            raise RuleError("empty rule", line)
        return _Parser(rule, line).parse()
    if isinstance(rule, Mapping):
        return _from_mapping({k: (v, line) for k, v in rule.items()}, line)
    raise RuleError(f"a rule is a string or a mapping, not {type(rule).__name__}", line)


def _from_mapping(m: Mapping[str, tuple[Any, int]], line: int) -> Expr:
    """``m``: key -> (value, line of the value). Values are plain Python (strings, lists,
    mappings) or, from the YAML loader, ``_Located`` nodes."""
    keys = set(m)
    for combinator, cls in (("all", And), ("any", Or)):
        if combinator in keys:
            if keys != {combinator}:
                raise RuleError(f"'{combinator}' stands alone, found also {sorted(keys - {combinator})}", line)  # fmt: skip
            items, iline = m[combinator]
            if isinstance(items, _Located):
                items = items.value
            if not isinstance(items, list) or not items:
                raise RuleError(f"'{combinator}' needs a non-empty list of rules", iline)
            sub = tuple(_sub(it, iline) for it in items)
            return sub[0] if len(sub) == 1 else cls(sub, line)
    if "not" in keys:
        if keys != {"not"}:
            raise RuleError(f"'not' stands alone, found also {sorted(keys - {'not'})}", line)
        item, iline = m["not"]
        return Not(_sub(item, iline), line)
    if "feature" not in keys:
        raise RuleError(
            f"a rule is {{all: [...]}}, {{any: [...]}}, {{not: ...}} or "
            f"{{feature, op, value}}; found keys {sorted(keys)}",
            line,
        )
    unknown = keys - {"feature", "op", "value", "of"}
    if unknown:
        raise RuleError(f"unknown key(s) {sorted(unknown)} in a comparison", line)
    feature, fline = m["feature"]
    feature = _plain(feature)
    if not isinstance(feature, str) or not IDENT.match(feature):
        raise RuleError(f"feature {feature!r} is not a feature name", fline)
    op, oline = m.get("op", ("==", line))
    op = _plain(op)
    if op not in ALL_OPS:
        raise RuleError(f"unknown op {op!r}: use one of {', '.join(ALL_OPS)}", oline)
    if "value" not in m:
        raise RuleError(f"comparison on {feature!r} has no 'value'", line)
    value, vline = m["value"]
    value = _plain(value)
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            raise RuleError(f"'{op}' needs a non-empty list as value", vline)
        return In(feature, tuple(_literal(v, vline) for v in value), op == "not in", fline)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError("'between' needs a list of two numbers as value", vline)
        return _between(feature, value[0], value[1], vline)
    of = None
    if "of" in m:
        of, ofline = m["of"]
        of = _plain(of)
        if not isinstance(of, str) or not IDENT.match(of):
            raise RuleError(f"'of' {of!r} is not a feature name", ofline)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError("with 'of', value is a number (the factor)", vline)
    return Compare(feature, op, _literal(value, vline), of=of, line=fline)


def _literal(v: Any, line: int) -> Scalar:
    v = _plain(v)
    if isinstance(v, (bool, int, float, str)):
        if isinstance(v, float) and not math.isfinite(v):
            raise RuleError(f"value {v!r} is not a finite number", line)
        return v
    raise RuleError(f"value {v!r} is not a number, string, true or false", line)


def _sub(item: Any, line: int) -> Expr:
    if isinstance(item, _Located):
        line = item.line
        item = item.value
    if isinstance(item, str):
        return parse_rule(item, line)
    if isinstance(item, dict):
        return _from_mapping(_located_items(item, line), line)
    raise RuleError(f"a rule is a string or a mapping, not {type(item).__name__}", line)


# --------------------------------------------------------------------------- feature types


def feature_kinds(frame: pd.DataFrame | None = None) -> dict[str, Kind]:
    """Known features and their kind: the tag frame's columns (features/tags.py) and the model
    scores; with ``frame``, its own columns (by dtype) instead."""
    if frame is not None:
        kinds: dict[str, Kind] = {}
        for c in frame.columns:
            dt = frame[c].dtype
            if pd.api.types.is_bool_dtype(dt):
                kinds[str(c)] = "bool"
            elif pd.api.types.is_numeric_dtype(dt):
                kinds[str(c)] = "number"
            elif pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt):
                kinds[str(c)] = "string"
        return kinds
    from features.tags import INT_FEATURES, NUMERIC_FEATURES, STRING_FEATURES

    out: dict[str, Kind] = {"member_id": "string"}
    out.update({c: "number" for c in (*NUMERIC_FEATURES, *INT_FEATURES)})
    out.update({c: "string" for c in STRING_FEATURES})
    out.update(MODEL_SCORES)
    return out


def _kind_of(v: Scalar) -> Kind:
    if isinstance(v, bool):
        return "bool"
    return "number" if isinstance(v, (int, float)) else "string"


def check_types(expr: Expr, kinds: Mapping[str, Kind]) -> list[RuleError]:
    """Every unknown feature and every comparison whose sides do not fit, with lines."""
    errors: list[RuleError] = []

    def known(name: str, line: int) -> Kind | None:
        if not IDENT.match(name) or name not in kinds:
            errors.append(RuleError(f"unknown feature {name!r}", line))
            return None
        return kinds[name]

    def walk(e: Expr) -> None:
        if isinstance(e, (And, Or)):
            for item in e.items:
                walk(item)
        elif isinstance(e, Not):
            walk(e.item)
        elif isinstance(e, Between):
            k = known(e.feature, e.line)
            if k is not None and k != "number":
                errors.append(RuleError(f"{e.feature!r} is a {k} feature: 'between' needs a number feature", e.line))  # fmt: skip
        elif isinstance(e, In):
            k = known(e.feature, e.line)
            for v in e.values:
                if k is not None and _kind_of(v) != k:
                    errors.append(RuleError(f"{e.feature!r} is a {k} feature, compared with the {_kind_of(v)} {v!r}", e.line))  # fmt: skip
        else:
            k = known(e.feature, e.line)
            if e.op not in COMPARE_OPS:
                errors.append(RuleError(f"unknown op {e.op!r}", e.line))
            if e.of is not None:
                k2 = known(e.of, e.line)
                for name, kk in ((e.feature, k), (e.of, k2)):
                    if kk is not None and kk != "number":
                        errors.append(RuleError(f"{name!r} is a {kk} feature: '* feature' needs numbers", e.line))  # fmt: skip
                return
            vk = _kind_of(e.value)
            if k is not None and vk != k:
                errors.append(RuleError(f"{e.feature!r} is a {k} feature, compared with the {vk} {e.value!r}", e.line))  # fmt: skip
            elif k in ("string", "bool") and e.op in ORDER_OPS:
                errors.append(RuleError(f"{e.feature!r} is a {k} feature: use == != or in, not {e.op!r}", e.line))  # fmt: skip

    walk(expr)
    errors.extend(_contradictions(expr))
    return errors


def _contradictions(expr: Expr) -> list[RuleError]:
    """Conjunctions whose numeric bounds on one feature leave nothing, e.g. x > 5 and x < 3."""
    errors: list[RuleError] = []

    def bounds(items: Sequence[Expr]) -> dict[str, list[tuple[float, bool, float, bool]]]:
        out: dict[str, list[tuple[float, bool, float, bool]]] = {}
        for e in items:
            if isinstance(e, Between):
                out.setdefault(e.feature, []).append((e.low, True, e.high, True))
            elif isinstance(e, Compare) and e.of is None and _kind_of(e.value) == "number":
                v = float(e.value)
                b = {"<": (-math.inf, False, v, False), "<=": (-math.inf, False, v, True),
                     ">": (v, False, math.inf, False), ">=": (v, True, math.inf, False),
                     "==": (v, True, v, True)}.get(e.op)  # fmt: skip
                if b:
                    out.setdefault(e.feature, []).append(b)
        return out

    def walk(e: Expr) -> None:
        if isinstance(e, And):
            for name, bs in bounds(e.items).items():
                lo, lo_in, hi, hi_in = -math.inf, False, math.inf, False
                for blo, blo_in, bhi, bhi_in in bs:
                    if blo > lo or (blo == lo and not blo_in):
                        lo, lo_in = blo, blo_in
                    if bhi < hi or (bhi == hi and not bhi_in):
                        hi, hi_in = bhi, bhi_in
                if lo > hi or (lo == hi and not (lo_in and hi_in)):
                    errors.append(RuleError(f"the conditions on {name!r} contradict each other: the rule can never hold", e.line))  # fmt: skip
        if isinstance(e, (And, Or)):
            for item in e.items:
                walk(item)
        elif isinstance(e, Not):
            walk(e.item)

    walk(expr)
    return errors


# --------------------------------------------------------------------------- pandas


def _values(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        raise RuleError(f"the frame has no column {name!r} (the rule needs it)")
    return frame[name]


def _cmp(s: pd.Series, op: str, v: Any) -> np.ndarray:
    if op == "<":
        r = s < v
    elif op == "<=":
        r = s <= v
    elif op == ">":
        r = s > v
    elif op == ">=":
        r = s >= v
    elif op == "==":
        r = s == v
    elif op == "!=":
        r = s != v
    else:  # pragma: no cover - parse_rule only builds the ops above
        raise RuleError(f"unknown op {op!r}")
    return np.asarray(pd.Series(r).fillna(False), dtype=bool)


def to_mask(expr: Expr, frame: pd.DataFrame) -> np.ndarray:
    """(n_rows,) bool: where the rule holds on each row of ``frame``."""
    if isinstance(expr, And):
        out = np.ones(len(frame), dtype=bool)
        for item in expr.items:
            out &= to_mask(item, frame)
        return out
    if isinstance(expr, Or):
        out = np.zeros(len(frame), dtype=bool)
        for item in expr.items:
            out |= to_mask(item, frame)
        return out
    if isinstance(expr, Not):
        return ~to_mask(expr.item, frame)
    s = _values(frame, expr.feature)
    present = np.asarray(s.notna(), dtype=bool)
    if isinstance(expr, Between):
        return present & _cmp(s, ">=", expr.low) & _cmp(s, "<=", expr.high)
    if isinstance(expr, In):
        hit = np.asarray(s.isin(list(expr.values)), dtype=bool)
        return present & (~hit if expr.negate else hit)
    if expr.of is not None:
        other = _values(frame, expr.of)
        rhs = other.astype("float64") * float(expr.value)
        return present & np.asarray(other.notna(), dtype=bool) & _cmp(s.astype("float64"), expr.op, rhs)  # fmt: skip
    return present & _cmp(s, expr.op, expr.value)


# --------------------------------------------------------------------------- SQL


def quote_ident(name: str, columns: Sequence[str] | set[str]) -> str:
    """A known column's name, double-quoted for SQL. Raises RuleError for any other name."""
    if not IDENT.match(name) or name not in columns:
        raise RuleError(f"unknown feature {name!r}")
    return '"' + name + '"'


def to_sql(expr: Expr, columns: Sequence[str] | set[str]) -> tuple[str, list[Any]]:
    """The rule as a DuckDB boolean expression (usable after WHERE) with ``?`` placeholders,
    and its parameters in order. Only column names from ``columns`` appear in the text, quoted;
    every literal is a parameter. NULL comparisons are false, as in :func:`to_mask`."""
    params: list[Any] = []
    cols = set(columns)

    def go(e: Expr) -> str:
        if isinstance(e, (And, Or)):
            joiner = " AND " if isinstance(e, And) else " OR "
            return "(" + joiner.join(go(i) for i in e.items) + ")"
        if isinstance(e, Not):
            return "(NOT " + go(e.item) + ")"
        col = quote_ident(e.feature, cols)
        if isinstance(e, Between):
            params.extend([e.low, e.high])
            return f"COALESCE({col} BETWEEN ? AND ?, FALSE)"
        if isinstance(e, In):
            params.extend(e.values)
            marks = ", ".join("?" for _ in e.values)
            neg = "NOT " if e.negate else ""
            return f"COALESCE({col} {neg}IN ({marks}), FALSE)"
        if e.op not in COMPARE_OPS:
            raise RuleError(f"unknown op {e.op!r}", e.line)
        op = "=" if e.op == "==" else e.op
        params.append(e.value)
        if e.of is not None:
            return f"COALESCE({col} {op} ? * {quote_ident(e.of, cols)}, FALSE)"
        return f"COALESCE({col} {op} ?, FALSE)"

    return go(expr), params


# --------------------------------------------------------------------------- rules files


@dataclass(frozen=True)
class Tag:
    """One tag: ``name`` holds for a member where ``rule`` does. ``explain`` is an optional
    sentence with ``{feature}`` placeholders filled with the member's values."""

    name: str
    rule: Expr
    description: str = ""
    owner: str = ""
    explain: str = ""
    line: int = 0


@dataclass(frozen=True)
class Group:
    """An exclusive group: the first tag whose rule holds wins; ``default`` (a tag name, or
    empty for none) for members matching no rule. ``column(tag)`` names its bool column."""

    name: str
    tags: tuple[Tag, ...]
    default: str = ""
    description: str = ""
    owner: str = ""
    line: int = 0

    def column(self, tag: str) -> str:
        return f"{self.name}.{tag}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags) + ((self.default,) if self.default else ())


@dataclass(frozen=True)
class TagRules:
    """A parsed rules file: independent ``tags`` and exclusive ``groups``; ``version`` is the
    file's content hash (:func:`rules_version`)."""

    tags: tuple[Tag, ...]
    groups: tuple[Group, ...] = ()
    version: str = ""
    source: str = ""

    def columns(self) -> list[str]:
        """The bool columns :func:`evaluate_tags` writes, in order."""
        return [t.name for t in self.tags] + [g.column(n) for g in self.groups for n in g.names]


def uses_scores(expr: Expr) -> bool:
    """Whether the rule names a model score (:data:`MODEL_SCORES`)."""
    return any(f in MODEL_SCORES for f, _ in features_of(expr))


def without_scores(rules: TagRules) -> TagRules:
    """The tags and groups of ``rules`` that name no model score: what the tag frame can
    evaluate before any model has scored."""
    tags = tuple(t for t in rules.tags if not uses_scores(t.rule))
    groups = tuple(g for g in rules.groups if not any(uses_scores(t.rule) for t in g.tags))
    return TagRules(tags, groups, rules.version, rules.source)


def tag_names(rules: TagRules) -> list[str]:
    """Every tag name a member can carry in the ``tags`` list: the plain tags, in order."""
    return [t.name for t in rules.tags]


def live_rules_path(settings: Any) -> Path:
    """The rules file in force for a home: ``tags.rules_file`` when set, else HOME/tags.yaml
    when present (``memberwise run --tags FILE`` copies FILE there), else the defaults."""
    given = settings.tags.rules_file
    if given:
        return Path(given).expanduser()
    home_copy = settings.home_dir / LIVE_RULES
    return home_copy if home_copy.exists() else DEFAULT_RULES


def rules_version(path: Path | str) -> str:
    """The tag version: the first 12 hex digits of the sha256 of the file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


@dataclass
class _Located:
    value: Any
    line: int


def _plain(v: Any) -> Any:
    """A located YAML value -> plain Python (lists and dicts unwrapped all the way down)."""
    if isinstance(v, _Located):
        v = v.value
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _located_items(d: dict[str, Any], line: int) -> dict[str, tuple[Any, int]]:
    return {k: (v, v.line if isinstance(v, _Located) else line) for k, v in d.items()}


def _compose(text: str, problems: list[RuleError]) -> _Located | None:
    """YAML text -> nested _Located values (1-based lines); YAML errors go to ``problems``."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problems.append(RuleError(f"not valid YAML: {getattr(exc, 'problem', exc)}", line))
        return None
    if node is None:
        return None
    constructor = yaml.SafeLoader("")

    def conv(n: Any) -> _Located:
        line = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in n.value:
                key = constructor.construct_object(k, deep=True)
                if not isinstance(key, str):
                    problems.append(RuleError(f"key {key!r} is not a name", k.start_mark.line + 1))  # fmt: skip
                    continue
                if key in out:
                    problems.append(RuleError(f"duplicate key {key!r}", k.start_mark.line + 1))
                out[key] = conv(v)
            return _Located(out, line)
        if isinstance(n, yaml.SequenceNode):
            return _Located([conv(x) for x in n.value], line)
        return _Located(constructor.construct_object(n, deep=True), line)

    return conv(node)


_TAG_KEYS = {"name", "description", "owner", "explain", "rule"}
_GROUP_KEYS = {"name", "description", "owner", "default", "tags"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _parse_file(
    text: str, kinds: Mapping[str, Kind] | None
) -> tuple[TagRules | None, list[RuleError]]:
    problems: list[RuleError] = []
    root = _compose(text, problems)
    if problems:
        return None, problems
    if root is None or not isinstance(root.value, dict):
        return None, [RuleError("the file must be a mapping with 'tags' and/or 'groups'", 1)]
    top = root.value
    for key in set(top) - {"tags", "groups", "version"}:
        problems.append(RuleError(f"unknown top-level key {key!r}: use tags, groups", top[key].line))  # fmt: skip
    seen: dict[str, int] = {}

    def claim(name: str, line: int) -> bool:
        if name == "member_id" or name.endswith("_reason"):
            problems.append(RuleError(f"{name!r} is reserved for the output's columns: choose another name", line))  # fmt: skip
            return False
        if name in seen:
            problems.append(RuleError(f"duplicate name {name!r} (first on line {seen[name]})", line))  # fmt: skip
            return False
        seen[name] = line
        return True

    def tag(item: _Located, where: str, claim_name: Any) -> Tag | None:
        if not isinstance(item.value, dict):
            problems.append(RuleError(f"each entry of {where} is a mapping with name and rule", item.line))  # fmt: skip
            return None
        d = item.value
        for key in set(d) - _TAG_KEYS:
            problems.append(RuleError(f"unknown key {key!r} in a tag: use {', '.join(sorted(_TAG_KEYS))}", d[key].line))  # fmt: skip
        name = _plain(d.get("name", _Located(None, item.line)))
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(RuleError(f"tag name {name!r} is not a name (letters, digits, _ and -)", item.line))  # fmt: skip
            return None
        fresh = claim_name(name, item.line)
        texts = {}
        for key in ("description", "owner", "explain"):
            v = _plain(d.get(key, _Located("", item.line)))
            if not isinstance(v, str):
                problems.append(RuleError(f"{key} of {name!r} is not text", d[key].line))
                v = ""
            texts[key] = v
        if "rule" not in d:
            problems.append(RuleError(f"tag {name!r} has no rule", item.line))
            return None
        try:
            expr = _sub(d["rule"], d["rule"].line)
        except RuleError as exc:
            problems.append(exc)
            return None
        if kinds is not None:
            problems.extend(check_types(expr, kinds))
            for m in re.finditer(r"\{([^{}]*)\}", texts["explain"]):
                if m.group(1) not in kinds:
                    problems.append(RuleError(f"explain of {name!r} names unknown feature {{{m.group(1)}}}", d["explain"].line))  # fmt: skip
        if not fresh:
            return None
        return Tag(name, expr, texts["description"], texts["owner"], texts["explain"], item.line)

    tags: list[Tag] = []
    t_node = top.get("tags", _Located([], root.line))
    if not isinstance(t_node.value, list):
        problems.append(RuleError("'tags' is a list of tags", t_node.line))
    else:
        for item in t_node.value:
            t = tag(item, "tags", claim)
            if t:
                tags.append(t)
    groups: list[Group] = []
    g_node = top.get("groups", _Located([], root.line))
    if not isinstance(g_node.value, list):
        problems.append(RuleError("'groups' is a list of exclusive groups", g_node.line))
    else:
        for item in g_node.value:
            if not isinstance(item.value, dict):
                problems.append(RuleError("each group is a mapping with name and tags", item.line))  # fmt: skip
                continue
            d = item.value
            for key in set(d) - _GROUP_KEYS:
                problems.append(RuleError(f"unknown key {key!r} in a group: use {', '.join(sorted(_GROUP_KEYS))}", d[key].line))  # fmt: skip
            gname = _plain(d.get("name", _Located(None, item.line)))
            if not isinstance(gname, str) or not _NAME.match(gname):
                problems.append(RuleError(f"group name {gname!r} is not a name", item.line))
                continue
            claim(gname, item.line)
            members_node = d.get("tags", _Located([], item.line))
            if not isinstance(members_node.value, list) or not members_node.value:
                problems.append(RuleError(f"group {gname!r} is empty: give it a list of tags", members_node.line))  # fmt: skip
                continue
            inner: list[Tag] = []
            inner_seen: dict[str, int] = {}
            rules_seen: dict[Expr, str] = {}

            def claim_inner(name: str, line: int, gname: str = gname, inner_seen: dict[str, int] = inner_seen) -> bool:  # fmt: skip
                if name in inner_seen:
                    problems.append(RuleError(f"duplicate name {name!r} in group {gname!r} (first on line {inner_seen[name]})", line))  # fmt: skip
                    return False
                inner_seen[name] = line
                return True

            for sub in members_node.value:
                t = tag(sub, f"group {gname!r}", claim_inner)
                if not t:
                    continue
                if t.rule in rules_seen:
                    problems.append(RuleError(f"tag {t.name!r} of group {gname!r} can never hold: {rules_seen[t.rule]!r} above has the same rule and wins", t.line))  # fmt: skip
                rules_seen.setdefault(t.rule, t.name)
                inner.append(t)
            default = _plain(d.get("default", _Located("", item.line)))
            if not isinstance(default, str) or (default and not _NAME.match(default)):
                problems.append(RuleError(f"default of group {gname!r} is not a name", d["default"].line))  # fmt: skip
                default = ""
            elif default in inner_seen:
                problems.append(RuleError(f"default {default!r} of group {gname!r} is also one of its ruled tags", d["default"].line))  # fmt: skip
            texts = {k: _plain(d.get(k, _Located("", item.line))) for k in ("description", "owner")}  # fmt: skip
            groups.append(Group(gname, tuple(inner), default, str(texts["description"] or ""),
                                str(texts["owner"] or ""), item.line))  # fmt: skip
    if not tags and not groups and not problems:
        problems.append(RuleError("the file defines no tags and no groups", root.line))
    return TagRules(tuple(tags), tuple(groups)), problems


def validate_rules(
    path: Path | str, kinds: Mapping[str, Kind] | None = None
) -> tuple[TagRules | None, list[RuleError]]:
    """Parse and check a rules file against the known features (``kinds``, default
    :func:`feature_kinds`): every problem with its line, sorted by line; the rules when the
    file could be read."""
    text = Path(path).read_text(encoding="utf-8")
    rules, problems = _parse_file(text, feature_kinds() if kinds is None else kinds)
    problems.sort(key=lambda p: p.line)
    if rules is not None:
        rules = TagRules(rules.tags, rules.groups, rules_version(path), str(path))
    return rules, problems


def load_rules(path: Path | str = DEFAULT_RULES, kinds: Mapping[str, Kind] | None = None) -> TagRules:  # fmt: skip
    """A valid rules file (default: the programme's defaults). Raises RulesInvalid listing
    every problem."""
    rules, problems = validate_rules(path, kinds)
    if problems or rules is None:
        raise RulesInvalid(path, problems)
    return rules


# --------------------------------------------------------------------------- evaluation


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "missing"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        if f.is_integer():
            return f"{int(f):,}".replace(",", "")
        return f"{f:.2f}".rstrip("0").rstrip(".")
    return repr(str(v)) if isinstance(v, str) else str(v)


def _lit(v: Scalar) -> str:
    return repr(v) if isinstance(v, str) else _fmt(v)


_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


_PY_OPS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}  # fmt: skip


def _holds(expr: Expr, row: Mapping[str, Any]) -> bool:
    """The rule on one row (a dict), with the same semantics as :func:`to_mask`."""
    if isinstance(expr, And):
        return all(_holds(i, row) for i in expr.items)
    if isinstance(expr, Or):
        return any(_holds(i, row) for i in expr.items)
    if isinstance(expr, Not):
        return not _holds(expr.item, row)
    v: Any = row.get(expr.feature)
    if _missing(v):
        return False
    if isinstance(expr, Between):
        return bool(expr.low <= v <= expr.high)
    if isinstance(expr, In):
        return (v in expr.values) != expr.negate
    if expr.of is not None:
        other: Any = row.get(expr.of)
        return not _missing(other) and bool(_PY_OPS[expr.op](v, float(expr.value) * other))
    return bool(_PY_OPS[expr.op](v, expr.value))


def _why(expr: Expr, row: Mapping[str, Any], holds: bool) -> str:
    """Why ``expr`` holds (``holds``) or fails on ``row``, quoting values and thresholds."""
    if isinstance(expr, Not):
        return _why(expr.item, row, not holds)
    if isinstance(expr, (And, Or)):
        # all parts explain an AND that holds / an OR that fails; else the deciding parts
        need_all = isinstance(expr, And) == holds
        parts = []
        for item in expr.items:
            item_holds = _holds(item, row)
            if need_all or item_holds == holds:
                parts.append(_why(item, row, holds))
        joiner = " and " if isinstance(expr, And) == holds else " or "
        return joiner.join(parts) if len(parts) == 1 else "(" + joiner.join(parts) + ")"
    value = row.get(expr.feature)
    shown = f"{expr.feature} {_fmt(value)}"
    if _fmt(value) == "missing":
        return f"{expr.feature} is missing"
    if isinstance(expr, Between):
        word = "between" if holds else "not between"
        return f"{shown} {word} {_lit(expr.low)} and {_lit(expr.high)}"
    if isinstance(expr, In):
        inside = holds != expr.negate
        listed = ", ".join(_lit(v) for v in expr.values)
        return f"{shown} {'in' if inside else 'not in'} ({listed})"
    op = expr.op if holds else _NEGATE[expr.op]
    if expr.of is not None:
        other = row.get(expr.of)
        if _fmt(other) == "missing":
            return f"{expr.of} is missing"
        return f"{shown} {op} {_lit(expr.value)} * {expr.of} {_fmt(other)}"
    return f"{shown} {op} {_lit(expr.value)}"


def _explain(template: str, row: Mapping[str, Any]) -> str:
    """Fill ``{feature}`` placeholders by plain substitution (no format mini-language)."""
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: _fmt(row.get(m.group(1))), template)


def _reason(tag: Tag, row: Mapping[str, Any], label: str) -> str:
    why = _why(tag.rule, row, True)
    if why.startswith("(") and why.endswith(")"):
        why = why[1:-1]
    placeholders = re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", tag.explain)
    if tag.explain and all(_fmt(row.get(n)) != "missing" for n in placeholders):
        return f"{label}: {_explain(tag.explain, row)} ({why})"
    return f"{label}: {why}"


def evaluate_tags(frame: pd.DataFrame, rules: TagRules) -> pd.DataFrame:
    """Tags of every row of ``frame`` (a tag frame, optionally with model scores).

    Returns a frame on ``frame``'s index: ``member_id`` when present; one bool column per
    tag (``rules.columns()``: plain tags by name, group tags as ``group.tag``); one string
    column per group holding the winning tag (or None); and ``<column>_reason`` per bool
    column, a sentence quoting the member's values and the rule's thresholds where the tag
    holds, "" elsewhere. Raises RuleError when the frame lacks a column a rule needs.
    """
    out = pd.DataFrame(index=frame.index)
    if "member_id" in frame.columns:
        out["member_id"] = frame["member_id"]
    reasons: dict[str, pd.Series] = {}

    def reason_series(tag: Tag, mask: np.ndarray, label: str) -> pd.Series:
        r = pd.Series("", index=frame.index, dtype=object)
        needed = sorted({f for f, _ in features_of(tag.rule)}
                        | set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", tag.explain)))  # fmt: skip
        sub = frame.loc[mask, [c for c in needed if c in frame.columns]]
        r[mask] = [_reason(tag, row, label) for row in sub.to_dict("records")]
        return r

    for t in rules.tags:
        mask = to_mask(t.rule, frame)
        out[t.name] = mask
        reasons[t.name] = reason_series(t, mask, t.name)
    for g in rules.groups:
        taken = np.zeros(len(frame), dtype=bool)
        winner = pd.Series(None, index=frame.index, dtype=object)
        for t in g.tags:
            mask = to_mask(t.rule, frame) & ~taken
            taken |= mask
            col = g.column(t.name)
            out[col] = mask
            winner[mask] = t.name
            reasons[col] = reason_series(t, mask, f"{g.name} {t.name}")
        if g.default:
            col = g.column(g.default)
            out[col] = ~taken
            winner[~taken] = g.default
            r = pd.Series("", index=frame.index, dtype=object)
            r[~taken] = f"{g.name} {g.default}: no rule above it in the group holds"
            reasons[col] = r
        out[g.name] = winner
    for col, r in reasons.items():
        out[f"{col}_reason"] = r
    return out


def group_to_sql(group: Group, columns: Sequence[str] | set[str]) -> tuple[str, list[Any]]:
    """An exclusive group as a DuckDB ``CASE`` expression giving the winning tag's name (first
    rule that holds, else the default or NULL), with its parameters in order."""
    parts, params = [], []
    for t in group.tags:
        cond, p = to_sql(t.rule, columns)
        parts.append(f"WHEN {cond} THEN ?")
        params.extend([*p, t.name])
    tail = "ELSE ?" if group.default else "ELSE NULL"
    if group.default:
        params.append(group.default)
    return "CASE " + " ".join(parts) + f" {tail} END", params
