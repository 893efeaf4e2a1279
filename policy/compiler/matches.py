"""One policy rule to nftables rule expressions (libnftables JSON), registering the sets it needs.

A rule can become several nftables rules: one per IP version when it matches addresses, and
one per named port (numbers and each named port are alternatives, so ORed across rules)."""

from collections.abc import Callable
from itertools import product

from policy.compiler.sets import Selection, SetSpec, collapse
from policy.compiler.transaction import element_literal
from policy.model.rules import PROTOCOL_NUMBERS, EntityRule, ICMPMatch, Rule

ACCEPT_MARK = 0x10000
PASS_MARK = 0x20000
MARK = {"meta": {"key": "mark"}}
L4PROTO = {"meta": {"key": "l4proto"}}
_FAMILY = {4: "ip", 6: "ip6"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}

Expr = dict
WantSet = Callable[[SetSpec], str]


def match(left, right, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def set_mark(bits: int) -> Expr:
    return {"mangle": {"key": MARK, "value": {"|": [MARK, bits]}}}


def clear_mark(bits: int) -> Expr:
    return {"mangle": {"key": MARK, "value": {"&": [MARK, 0xFFFFFFFF ^ bits]}}}


def mark_is(bits: int, present: bool) -> Expr:
    return match({"&": [MARK, bits]}, bits if present else 0)


def verdict(action: str, log_prefix: str) -> list[Expr]:
    """Allow and Pass mark the packet and return to the endpoint chain, which decides."""
    if action == "Allow":
        return [set_mark(ACCEPT_MARK), {"return": None}]
    if action == "Pass":
        return [set_mark(PASS_MARK), {"return": None}]
    if action == "Deny":
        return [{"drop": None}]
    return [{"log": {"prefix": log_prefix[:127]}}]


def protocol_number(protocol: int | str) -> int:
    return protocol if isinstance(protocol, int) else PROTOCOL_NUMBERS[protocol]


def _address(family: int, side: str) -> Expr:
    return {"payload": {"protocol": _FAMILY[family], "field": "saddr" if side == "source" else "daddr"}}


def _port(side: str) -> Expr:
    return {"payload": {"protocol": "th", "field": "sport" if side == "source" else "dport"}}


def _nets(family: int, nets: list[str], want: WantSet) -> str | dict:
    """One address or prefix goes in the rule itself, more in a named set. Each set is an object
    the kernel names and finds by a walk of the table's sets: 30,000 rules each with one /32 in
    a set of its own took libnftables and the kernel 1.5 minutes to load, quadratic in the sets."""
    elements = collapse(nets)
    if len(elements) == 1:
        return element_literal(next(iter(elements)))
    return "@" + want(SetSpec(family, nets=tuple(sorted(nets))))


def _ports(numbers: list) -> int | dict:
    """A single port or range is compared in the rule itself, more in an anonymous set (which the
    kernel also makes an object of)."""
    values = _port_values(numbers)
    return values[0] if len(values) == 1 else {"set": values}


def _port_values(ports: list) -> list:
    values: list[int | dict] = []
    for port in ports:
        if isinstance(port, int):
            values.append(port)
        else:
            low, _, high = port.partition(":")
            values.append({"range": [int(low), int(high)]})
    return values


def _selection(entity: EntityRule, namespace: str | None) -> Selection | None:
    """What one side's selector fields pick, as Calico forms a rule's selector: `selector` and
    service accounts ANDed, in the namespaces `namespaceSelector` picks, else (a namespaced
    policy) in its own namespace as soon as any selector field is used, `notSelector` included.
    None when nothing limits the side to endpoints and network sets."""
    terms = [f"({entity.selector})"] if entity.selector else []
    if entity.serviceAccounts:
        terms += entity.serviceAccounts.terms()
    scoped = entity.namespaceSelector is not None or (entity.notSelector is not None and namespace is not None)
    if not terms and not scoped:
        return None
    return Selection(" && ".join(terms) or "all()", entity.namespaceSelector, namespace)


def named_scope(entity: EntityRule, namespace: str | None) -> Selection:
    """The endpoints whose named ports a side's named port means: those its selector fields
    pick, and with none, every endpoint of every namespace (Calico's `all()`, and Kubernetes'
    meaning of a named port in a rule without peers), whatever the policy's namespace."""
    return _selection(entity, namespace) or Selection("all()")


def _family_specific(rule: Rule) -> bool:
    if rule.ipVersion or protocol_number(rule.protocol or 0) in (1, 58):
        return True
    for entity in (rule.source, rule.destination):
        named = any(isinstance(p, str) and ":" not in p for p in entity.ports + entity.notPorts)
        if (
            entity.nets
            or entity.notNets
            or entity.selector
            or entity.notSelector
            or entity.namespaceSelector
            or entity.serviceAccounts
            or named
        ):
            return True
    return False


def _icmp(icmp: ICMPMatch, family: int, negated: bool) -> list[Expr]:
    proto = "icmp" if family == 4 else "icmpv6"
    type_, code = ({"payload": {"protocol": proto, "field": f}} for f in ("type", "code"))
    if icmp.type is None:
        return []
    if icmp.code is None:
        return [match(type_, icmp.type, "!=" if negated else "==")]
    if negated:
        return [match({"concat": [type_, code]}, {"concat": [icmp.type, icmp.code]}, "!=")]
    return [match(type_, icmp.type), match(code, icmp.code)]


def _side(
    entity: EntityRule, side: str, family: int | None, namespace: str | None, protocol: int | None, want: WantSet
) -> list[list[Expr]] | None:
    """Alternatives for one side (source or destination); None when it cannot match this family."""
    common: list[Expr] = []
    if family is not None:
        nets = [n for n in entity.nets if (":" in n) == (family == 6)]
        if entity.nets and not nets:
            return None
        if nets:
            common.append(match(_address(family, side), _nets(family, nets, want)))
        not_nets = [n for n in entity.notNets if (":" in n) == (family == 6)]
        if not_nets:
            common.append(match(_address(family, side), _nets(family, not_nets, want), "!="))
        selection = _selection(entity, namespace)
        if selection:
            common.append(match(_address(family, side), "@" + want(SetSpec(family, selection))))
        if entity.notSelector:
            excluded = Selection(entity.notSelector, entity.namespaceSelector, namespace)
            common.append(match(_address(family, side), "@" + want(SetSpec(family, excluded)), "!="))
    scope = named_scope(entity, namespace)

    def named_port_match(name: str, op: str) -> Expr:
        assert family is not None  # a named port makes the rule family-specific (_family_specific)
        spec = SetSpec(family, scope, port_name=name, protocol=protocol)
        return match({"concat": [_address(family, side), L4PROTO, _port(side)]}, "@" + want(spec), op)

    numbers = [p for p in entity.notPorts if isinstance(p, int) or ":" in p]
    if numbers:
        common.append(match(_port(side), _ports(numbers), "!="))
    common += [named_port_match(p, "!=") for p in entity.notPorts if isinstance(p, str) and ":" not in p]
    numbers = [p for p in entity.ports if isinstance(p, int) or ":" in p]
    names = [p for p in entity.ports if isinstance(p, str) and ":" not in p]
    if not entity.ports:
        return [common]
    alternatives = [common + [match(_port(side), _ports(numbers))]] if numbers else []
    alternatives += [common + [named_port_match(name, "==")] for name in names]
    return alternatives


def compile_rule(rule: Rule, namespace: str | None, log_prefix: str, want: WantSet) -> list[list[Expr]]:
    """nftables rules (expression lists) for one policy rule; namespace scopes its selectors."""
    protocol = protocol_number(rule.protocol) if rule.protocol is not None else None
    families: list[int | None] = [None]
    if _family_specific(rule):
        implied = {1: 4, 58: 6}.get(protocol or 0)
        families = [f for f in (4, 6) if f == (rule.ipVersion or implied or f)]
    compiled = []
    for family in families:
        head: list[Expr] = []
        if family is not None:
            head.append(match({"meta": {"key": "nfproto"}}, _NFPROTO[family]))
        if protocol is not None:
            head.append(match(L4PROTO, protocol))
        if rule.notProtocol is not None:
            head.append(match(L4PROTO, protocol_number(rule.notProtocol), "!="))
        if rule.icmp or rule.notICMP:
            assert family is not None  # the model allows ICMP fields only with protocol ICMP or ICMPv6
            if rule.icmp:
                head += _icmp(rule.icmp, family, negated=False)
            if rule.notICMP:
                head += _icmp(rule.notICMP, family, negated=True)
        sources = _side(rule.source, "source", family, namespace, protocol, want)
        destinations = _side(rule.destination, "destination", family, namespace, protocol, want)
        if sources is None or destinations is None:
            continue
        for source, destination in product(sources, destinations):
            compiled.append(head + source + destination + verdict(rule.action, log_prefix))
    return compiled
