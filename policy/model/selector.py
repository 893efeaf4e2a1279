"""Calico's label selector language: parse once into an immutable tree, then match.

    ==  !=  in {..}  not in {..}  has(k)  !  &&  ||  ( )  all()  global()
    contains "s"   starts with "s"   ends with "s"

`k != v` and `k not in {..}` are true when k is absent, as in Calico.  Every node has a
canonical text (str), so equal selectors share one nftables set whatever their spelling."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

Labels = Mapping[str, str]


class SelectorError(ValueError):
    """A syntax error, with the 1-based column where the parser gave up."""

    def __init__(self, text: str, column: int, message: str):
        self.text, self.column, self.message = text, column, message
        super().__init__(f"{message} at column {column}: {text!r}")


def _quote(value: str) -> str:
    return "'" + value + "'" if "'" not in value else '"' + value + '"'


@dataclass(frozen=True, slots=True)
class All:
    def matches(self, labels: Labels) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global:
    """Matches non-namespaced things (GlobalNetworkSets) when used as a namespaceSelector."""

    def matches(self, labels: Labels) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has:
    key: str

    def matches(self, labels: Labels) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class Compare:
    """key OP value, for the operators that compare one label with one string."""

    key: str
    op: str  # == != contains starts-with ends-with
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.key)
        if self.op == "!=":
            return actual != self.value
        if actual is None:
            return False
        if self.op == "==":
            return actual == self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class In:
    key: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: Labels) -> bool:
        return (labels.get(self.key) in self.values) != self.negated

    def __str__(self) -> str:
        values = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.key} {'not in' if self.negated else 'in'} {{{values}}}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Selector"

    def matches(self, labels: Labels) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{_wrapped(self.operand)}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple["Selector", ...]

    def matches(self, labels: Labels) -> bool:
        return all(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return " && ".join(_wrapped(o) for o in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple["Selector", ...]

    def matches(self, labels: Labels) -> bool:
        return any(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return " || ".join(_wrapped(o) for o in self.operands)


Selector = All | Global | Has | Compare | In | Not | And | Or


def _wrapped(node: Selector) -> str:
    return f"({node})" if isinstance(node, (And, Or)) else str(node)


def with_key_prefix(node: Selector, prefix: str) -> Selector:
    """The same selector over keys with `prefix` before each (`a == 'x'` -> `pcsa.a == 'x'`): how
    a service account selector is matched against the labels its profile gives endpoints."""
    if isinstance(node, Has | Compare | In):
        return replace(node, key=prefix + node.key)
    if isinstance(node, Not):
        return Not(with_key_prefix(node.operand, prefix))
    if isinstance(node, And | Or):
        return type(node)(tuple(with_key_prefix(o, prefix) for o in node.operands))
    return node


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|&&|\|\||[!(){},])
    | (?P<string>"[^"]*"|'[^']*')
    | (?P<word>[A-Za-z0-9_./-]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"in", "not", "has", "all", "global", "contains", "starts", "ends", "with"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # op string word end
    text: str
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise SelectorError(text, column, f"unexpected character {text[column - 1]!r}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        start = m.start(kind)
        tokens.append(_Token(kind, m.group(kind), start + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.i = text, _tokens(text), 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def fail(self, token: _Token, expected: str) -> SelectorError:
        found = "end of selector" if token.kind == "end" else repr(token.text)
        return SelectorError(self.text, token.column, f"expected {expected}, found {found}")

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text or token.kind == "string":
            raise self.fail(token, repr(text))
        return token

    def parse(self) -> Selector:
        if self.peek().kind == "end":
            return All()
        node = self.disjunction()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "'&&', '||' or end of selector")
        return node

    def disjunction(self) -> Selector:
        operands = [self.conjunction()]
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Selector:
        operands = [self.unary()]
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Selector:
        token = self.peek()
        if token.kind == "op" and token.text == "!":
            self.take()
            return Not(self.unary())
        if token.kind == "op" and token.text == "(":
            self.take()
            node = self.disjunction()
            self.expect(")")
            return node
        if token.kind == "word" and token.text in ("all", "global", "has") and self.peek(1).text == "(":
            return self.function()
        return self.comparison()

    def function(self) -> Selector:
        name = self.take().text
        self.expect("(")
        if name == "has":
            key = self.label_key()
            self.expect(")")
            return Has(key)
        self.expect(")")
        return All() if name == "all" else Global()

    def label_key(self) -> str:
        token = self.take()
        if token.kind != "word" or token.text in _KEYWORDS:
            raise self.fail(token, "a label key")
        return token.text

    def comparison(self) -> Selector:
        key = self.label_key()
        token = self.take()
        if token.kind == "op" and token.text in ("==", "!="):
            return Compare(key, token.text, self.string())
        if token.kind == "word" and token.text == "in":
            return In(key, self.string_set())
        if token.kind == "word" and token.text == "not":
            self.expect("in")
            return In(key, self.string_set(), negated=True)
        if token.kind == "word" and token.text == "contains":
            return Compare(key, "contains", self.string())
        if token.kind == "word" and token.text in ("starts", "ends"):
            self.expect("with")
            return Compare(key, f"{token.text} with", self.string())
        raise self.fail(token, "an operator (==, !=, in, not in, contains, starts with, ends with)")

    def string(self) -> str:
        token = self.take()
        if token.kind != "string":
            raise self.fail(token, "a quoted string")
        return token.text[1:-1]

    def string_set(self) -> frozenset[str]:
        self.expect("{")
        values = []
        if self.peek().text != "}":
            values.append(self.string())
            while self.peek().text == ",":
                self.take()
                values.append(self.string())
        self.expect("}")
        return frozenset(values)


@lru_cache(maxsize=4096)
def parse_selector(text: str) -> Selector:
    """Parse (cached: policies repeat the same selectors); raise SelectorError with a column."""
    return _Parser(text).parse()
