"""Does one policy rule match one packet? Calico's rule semantics, one field at a time.

The packet's source port is an ephemeral port: a rule that asks for source ports does not
match it, and one that excludes source ports does (policies name destination ports)."""

from dataclasses import dataclass

from policy.evaluate.universe import Universe, address, network
from policy.model.rules import PROTOCOL_NUMBERS, EntityRule, ICMPMatch, Rule

IMPLIED_VERSION = {1: 4, 58: 6}  # ICMP is IPv4 only, ICMPv6 IPv6 only


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a flow. `port` is the destination port (TCP, UDP, SCTP, UDPLite);
    `icmp_type` and `icmp_code` are set for ICMP and ICMPv6."""

    source: str
    destination: str
    protocol: int
    port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def version(self) -> int:
        return address(self.source).version


def protocol_number(protocol: int | str) -> int:
    return protocol if isinstance(protocol, int) else PROTOCOL_NUMBERS[protocol]


def rule_matches(rule: Rule, packet: Packet, namespace: str | None, universe: Universe) -> bool:
    """`namespace` is the policy's (None for global policies and profiles): it scopes selectors."""
    protocol = protocol_number(rule.protocol) if rule.protocol is not None else None
    wanted = rule.ipVersion or IMPLIED_VERSION.get(protocol or 0)
    if wanted and wanted != packet.version:
        return False
    if protocol is not None and protocol != packet.protocol:
        return False
    if rule.notProtocol is not None and protocol_number(rule.notProtocol) == packet.protocol:
        return False
    if rule.icmp and not _icmp_matches(rule.icmp, packet):
        return False
    if rule.notICMP and rule.notICMP.type is not None and _icmp_matches(rule.notICMP, packet):
        return False
    return _side_matches(rule.source, packet.source, None, packet, namespace, universe) and _side_matches(
        rule.destination, packet.destination, packet.port, packet, namespace, universe
    )


def _icmp_matches(icmp: ICMPMatch, packet: Packet) -> bool:
    if icmp.type is None:
        return True
    return packet.icmp_type == icmp.type and (icmp.code is None or packet.icmp_code == icmp.code)


def selection_terms(entity: EntityRule) -> str | None:
    """The selector an entity's `selector` and `serviceAccounts` make together, or None."""
    terms = [f"({entity.selector})"] if entity.selector else []
    if entity.serviceAccounts:
        terms += entity.serviceAccounts.terms()
    return " && ".join(terms) or None


def side_scope(entity: EntityRule, namespace: str | None, universe: Universe) -> frozenset[int] | None:
    """The members one side's selector fields limit it to, or None when nothing does. As in
    Calico, in a namespaced policy any selector field (notSelector too) limits the side to the
    policy's namespace, or to the namespaces namespaceSelector picks."""
    selector = selection_terms(entity)
    limited = (
        selector is not None
        or entity.namespaceSelector is not None
        or (entity.notSelector is not None and namespace is not None)
    )
    return universe.select(selector or "all()", entity.namespaceSelector, namespace) if limited else None


def _side_matches(
    entity: EntityRule, ip: str, port: int | None, packet: Packet, namespace: str | None, universe: Universe
) -> bool:
    target = address(ip)
    if entity.nets and not any(target in network(n) for n in entity.nets):
        return False
    if any(target in network(n) for n in entity.notNets):
        return False
    scope = side_scope(entity, namespace, universe)
    if scope is not None and not scope & universe.holders(ip):
        return False
    if entity.notSelector and universe.select(
        entity.notSelector, entity.namespaceSelector, namespace
    ) & universe.holders(ip):
        return False
    if not entity.ports and not entity.notPorts:
        return True
    # A named port means the endpoints the side selects; with no selector field, every
    # endpoint of every namespace (Kubernetes: a named port in a rule without peers).
    named = scope if scope is not None else universe.select("all()", None, None)
    if entity.ports and not any(_port_matches(p, ip, port, packet.protocol, named, universe) for p in entity.ports):
        return False
    return not any(_port_matches(p, ip, port, packet.protocol, named, universe) for p in entity.notPorts)


def _port_matches(
    spec: int | str, ip: str, port: int | None, protocol: int, scope: frozenset[int], universe: Universe
) -> bool:
    if port is None:
        return False
    if isinstance(spec, int):
        return port == spec
    if ":" in spec:
        low, _, high = spec.partition(":")
        return int(low) <= port <= int(high)
    target = address(ip)
    return any(
        (spec, protocol, port) in universe.members[i].named_ports()
        and any(n.num_addresses == 1 and n.network_address == target for n in universe.members[i].networks)
        for i in scope & universe.holders(ip)
    )
