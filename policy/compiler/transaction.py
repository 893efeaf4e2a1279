"""A typed nftables transaction on the `inet calyx` table, in the manner of knftables.

Operations are frozen objects (Table, Chain, Set, Map, Rule, SetElements, MapElements), checked
when they are added: a bad name, an interface name nft would refuse or a statement outside
Calyx's vocabulary fails here, in Python, with a message, not later as one refused transaction.
The transaction renders itself in two forms, in this one place: nft's text syntax (what the
driver sends: libnftables parses it about 2.5 times faster) and libnftables JSON (what tests
and golden files compare)."""

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from policy.compiler.nft_text import statement, value

FAMILY = "inet"
TABLE = "calyx"
SET_TYPES = {"ipv4_addr", "ipv6_addr", "inet_proto", "inet_service", "ifname"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,127}\Z")
_ADDRESS = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?\Z")
_INTERFACE = re.compile(r"[A-Za-z0-9_.\-]{1,15}\Z")
_T = {"family": FAMILY, "table": TABLE}

Verb = Literal["add", "delete", "flush"]
SetType = str | tuple[str, ...]  # one type, or the parts of a concatenation


class TransactionError(ValueError):
    """An operation Calyx must never send: a bug upstream, caught before the kernel sees it."""


@dataclass(frozen=True)
class Hook:
    hook: str  # forward, input, ...
    type: str = "filter"
    priority: int = 0
    policy: str = "accept"


@dataclass(frozen=True)
class Table:
    pass


@dataclass(frozen=True)
class Chain:
    name: str
    hook: Hook | None = None


@dataclass(frozen=True)
class Set:
    name: str
    type: SetType
    interval: bool = False
    elements: tuple = ()  # addresses, prefixes, or tuples for a concatenated type


@dataclass(frozen=True)
class Map:
    """A verdict map from interface name to the chain to jump to."""

    name: str
    elements: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Rule:
    chain: str
    statements: tuple[dict, ...]  # libnftables JSON statements (policy/compiler/matches.py)


@dataclass(frozen=True)
class SetElements:
    set: str
    type: SetType  # the set's type: how its elements are written
    values: tuple


@dataclass(frozen=True)
class MapElements:
    map: str
    elements: tuple[tuple[str, str], ...]  # (interface, chain); a delete names the interfaces only


Object = Table | Chain | Set | Map | Rule | SetElements | MapElements
_VERBS: dict[type, set[str]] = {
    Table: {"add"},
    Chain: {"add", "flush", "delete"},
    Set: {"add", "flush", "delete"},
    Map: {"add", "flush"},
    Rule: {"add"},
    SetElements: {"add", "delete"},
    MapElements: {"add", "delete"},
}


class Transaction:
    """Operations applied all or nothing, in order."""

    def __init__(self) -> None:
        self._ops: list[tuple[Verb, Object]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def __bool__(self) -> bool:
        return bool(self._ops)

    def add(self, obj: Object) -> "Transaction":
        return self._append("add", obj)

    def flush(self, obj: Object) -> "Transaction":
        return self._append("flush", obj)

    def delete(self, obj: Object) -> "Transaction":
        return self._append("delete", obj)

    def extend(self, other: "Transaction") -> "Transaction":
        self._ops.extend(other._ops)
        return self

    def _append(self, verb: Verb, obj: Object) -> "Transaction":
        if verb not in _VERBS[type(obj)]:
            raise TransactionError(f"cannot {verb} a {type(obj).__name__.lower()}")
        _validate(verb, obj)
        self._ops.append((verb, obj))
        return self

    # -- rendering ----------------------------------------------------------------------------
    def commands(self) -> list[dict]:
        """libnftables JSON: `{"nftables": commands}` is the same transaction."""
        return [{verb: _json(verb, obj)} for verb, obj in self._ops]

    def text(self) -> str:
        """One nft script. A trailing run of additions that starts by adding the table becomes
        one table block (what `nft list` prints), which nft parses fastest."""
        ops = self._ops
        start = next((i for i, (_, obj) in enumerate(ops) if isinstance(obj, Table)), len(ops))
        if any(verb != "add" or not isinstance(obj, Set | Map | Chain | Rule) for verb, obj in ops[start + 1 :]):
            start = len(ops)
        lines = [_command(verb, obj) for verb, obj in ops[:start]]
        if start < len(ops):
            lines.append(_block([obj for _, obj in ops[start + 1 :]]))
        return "\n".join(lines) + "\n"


# -- validation ---------------------------------------------------------------------------------
def _validate(verb: Verb, obj: Object) -> None:
    name = getattr(obj, "name", None) or getattr(obj, "chain", None) or getattr(obj, "set", None)
    name = name or getattr(obj, "map", None)
    if not isinstance(obj, Table) and not _NAME.match(str(name)):
        raise TransactionError(f"{type(obj).__name__.lower()} name {name!r} is not an nft identifier")
    if isinstance(obj, Set) and verb != "add":
        return  # a flush or delete names the set only
    if isinstance(obj, Set | SetElements):
        parts = obj.type if isinstance(obj.type, tuple) else (obj.type,)
        if not parts or not set(parts) <= SET_TYPES:
            raise TransactionError(f"set {name}: type {obj.type!r} is not one Calyx uses")
        for element in obj.elements if isinstance(obj, Set) else obj.values:
            _check_element(str(name), parts, element)
    elif isinstance(obj, Map | MapElements):
        for interface, chain in obj.elements:
            _check_interface(str(name), interface)
            if verb == "add" and not _NAME.match(chain):
                raise TransactionError(f"map {name}: {chain!r} is not a chain name")
    elif isinstance(obj, Rule):
        if not obj.statements:
            raise TransactionError(f"rule in {obj.chain}: no statements")
        try:
            for s in obj.statements:
                statement(s)
        except (ValueError, KeyError, TypeError) as exc:
            raise TransactionError(f"rule in {obj.chain}: {exc}") from None


def _check_element(name: str, parts: tuple[str, ...], element: object) -> None:
    values = element if isinstance(element, tuple) else (element,)
    if len(values) != len(parts):
        raise TransactionError(f"set {name}: element {element!r} does not have {len(parts)} parts")
    for part, v in zip(parts, values, strict=True):
        if part == "ifname":
            _check_interface(name, v)
        elif part in ("ipv4_addr", "ipv6_addr"):  # a cheap check: sets hold tens of thousands of them
            if not isinstance(v, str) or not _ADDRESS.match(v) or (":" in v) != (part == "ipv6_addr"):
                raise TransactionError(f"set {name}: {v!r} is not an address or prefix of type {part}")
        elif not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
            raise TransactionError(f"set {name}: {v!r} is not a {part}")


def _check_interface(name: str, interface: object) -> None:
    if not isinstance(interface, str) or not _INTERFACE.match(interface):
        raise TransactionError(f"{name}: {interface!r} is not an interface name")


# -- libnftables JSON ---------------------------------------------------------------------------
def element_literal(v):
    """An address, a prefix, or a concatenation of them with protocol and port numbers."""
    if isinstance(v, tuple):
        return {"concat": [element_literal(x) if isinstance(x, str) else x for x in v]}
    if "/" in v:
        net = ipaddress.ip_network(v)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    return v


def _json_type(t: SetType):
    return list(t) if isinstance(t, tuple) else t


def _json(verb: Verb, obj: Object) -> dict:
    if isinstance(obj, Table):
        return {"table": {"family": FAMILY, "name": TABLE}}
    if isinstance(obj, Chain):
        hook = obj.hook
        extra = {"type": hook.type, "hook": hook.hook, "prio": hook.priority, "policy": hook.policy} if hook else {}
        return {"chain": {**_T, "name": obj.name, **(extra if verb == "add" else {})}}
    if isinstance(obj, Rule):
        *expr, last = obj.statements
        if "comment" in last:  # a statement in text, the rule's own field in JSON
            return {"rule": {**_T, "chain": obj.chain, "expr": expr, "comment": last["comment"]}}
        return {"rule": {**_T, "chain": obj.chain, "expr": list(obj.statements)}}
    if isinstance(obj, Set):
        body: dict = {**_T, "name": obj.name}
        if verb == "add":
            body["type"] = _json_type(obj.type)
            if obj.interval:
                body["flags"] = ["interval"]
            if obj.elements:
                body["elem"] = [element_literal(e) for e in obj.elements]
        return {"set": body}
    if isinstance(obj, Map):
        body = {**_T, "name": obj.name}
        if verb == "add":
            body.update(type="ifname", map="verdict")
            if obj.elements:
                body["elem"] = _verdicts(obj.elements)
        return {"map": body}
    if isinstance(obj, SetElements):
        return {"element": {**_T, "name": obj.set, "elem": [element_literal(e) for e in obj.values]}}
    elem = _verdicts(obj.elements) if verb == "add" else [interface for interface, _ in obj.elements]
    return {"element": {**_T, "name": obj.map, "elem": elem}}


def _verdicts(elements: tuple[tuple[str, str], ...]) -> list:
    return [[interface, {"jump": {"target": chain}}] for interface, chain in elements]


# -- nft text -----------------------------------------------------------------------------------
def _ident(name: str) -> str:
    return f"{FAMILY} {TABLE} {name}"


def _hook(hook: Hook) -> str:
    return f"type {hook.type} hook {hook.hook} priority {hook.priority}; policy {hook.policy};"


def _text_elements(t: SetType, values: tuple) -> str:
    quote: bool | tuple[bool, ...] = tuple(p == "ifname" for p in t) if isinstance(t, tuple) else t == "ifname"
    return ", ".join(value(element_literal(v), quote) for v in values)


def _text_verdicts(elements: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{value(interface, True)} : jump {chain}" for interface, chain in elements)


def _definition(obj: Set | Map) -> str:
    if isinstance(obj, Map):
        parts = ["type ifname : verdict"]
        if obj.elements:
            parts.append(f"elements = {{ {_text_verdicts(obj.elements)} }}")
    else:
        parts = [f"type {' . '.join(obj.type) if isinstance(obj.type, tuple) else obj.type}"]
        if obj.interval:
            parts.append("flags interval")
        if obj.elements:
            parts.append(f"elements = {{ {_text_elements(obj.type, obj.elements)} }}")
    return "; ".join(parts) + ";"


def _command(verb: Verb, obj: Object) -> str:
    if isinstance(obj, Table):
        return f"add table {FAMILY} {TABLE}"
    if isinstance(obj, Chain):
        if verb == "add" and obj.hook:
            return f"add chain {_ident(obj.name)} {{ {_hook(obj.hook)} }}"
        return f"{verb} chain {_ident(obj.name)}"
    if isinstance(obj, Rule):
        return f"add rule {_ident(obj.chain)} " + " ".join(statement(s) for s in obj.statements)
    if isinstance(obj, Set | Map):
        what = "map" if isinstance(obj, Map) else "set"
        if verb != "add":
            return f"{verb} {what} {_ident(obj.name)}"
        return f"add {what} {_ident(obj.name)} {{ {_definition(obj)} }}"
    if isinstance(obj, SetElements):
        return f"{verb} element {_ident(obj.set)} {{ {_text_elements(obj.type, obj.values)} }}"
    if verb == "add":
        return f"add element {_ident(obj.map)} {{ {_text_verdicts(obj.elements)} }}"
    keys = ", ".join(value(interface, True) for interface, _ in obj.elements)
    return f"delete element {_ident(obj.map)} {{ {keys} }}"


def _block(objects: list[Object]) -> str:
    lines = [f"table {FAMILY} {TABLE} {{"]
    chains: dict[str, tuple[list[str], list[str]]] = {}  # name -> (head, rules), in order of first mention
    for obj in objects:
        if isinstance(obj, Set | Map):
            lines.append(f"\t{'map' if isinstance(obj, Map) else 'set'} {obj.name} {{ {_definition(obj)} }}")
        elif isinstance(obj, Chain):
            head = chains.setdefault(obj.name, ([], []))[0]
            if obj.hook and not head:
                head.append(_hook(obj.hook))
        elif isinstance(obj, Rule):
            chains.setdefault(obj.chain, ([], []))[1].append(" ".join(statement(s) for s in obj.statements))
    for name, (head, rules) in chains.items():
        lines.append(f"\tchain {name} {{")
        lines += [f"\t\t{line}" for line in head + rules]
        lines.append("\t}")
    return "\n".join([*lines, "}"])
