"""The compiled ruleset of the `inet calyx` table, and the transaction that builds it from nothing.

Chains hold tuples of rules (each a list of expressions); sets hold frozensets of elements.
Both are immutable values, so the driver can diff what it programmed against what is desired."""

from dataclasses import dataclass, field

from policy.compiler.matches import L4PROTO, match
from policy.compiler.nat import NAT_CHAIN
from policy.compiler.transaction import Chain, Hook, Map, Rule, Set, SetType, Table, Transaction
from policy.model.names import WORKLOAD_INTERFACE_PATTERN

FROM_WORKLOAD_MAP = "from-wl"  # workload interface -> jump wl-out-<if> (traffic the workload sends)
TO_WORKLOAD_MAP = "to-wl"  # workload interface -> jump wl-in-<if> (traffic to the workload)
KNOWN_INTERFACES = "wl-ifaces"  # a set (type ifname) of every interface in the maps
SOURCES = {4: "wl-src4", 6: "wl-src6"}  # (interface, address) a workload may send from
_IIF, _OIF = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
_ESTABLISHED = match({"ct": {"key": "state"}}, ["established", "related"], "in")
_ND = match(
    {"payload": {"protocol": "icmpv6", "field": "type"}},
    {"set": ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"]},
)


@dataclass(frozen=True)
class HostAccess:
    """What a workload may reach on its own host once its egress policy allowed it (Calico's
    defaultEndpointToHostAction): Drop (the default: the node's agents, BGP and kubelet are
    not the workloads' business), Accept, or Return (on to the host's own firewall). `allowed`
    are (protocol number, port) pairs accepted even under Drop, e.g. node-local DNS."""

    action: str = "Drop"
    allowed: tuple[tuple[int, int], ...] = ()

    def rules(self) -> list[list]:
        from_workload = match(_IIF, WORKLOAD_INTERFACE_PATTERN)
        rules = [
            [
                from_workload,
                match(L4PROTO, protocol),
                match({"payload": {"protocol": "th", "field": "dport"}}, port),
                {"accept": None},
            ]
            for protocol, port in self.allowed
        ]
        if self.action == "Drop":
            rules.append([from_workload, {"drop": None}])
        elif self.action == "Accept":
            rules.append([from_workload, {"accept": None}])
        return rules


DEFAULT_HOST_ACCESS = HostAccess()


@dataclass(frozen=True)
class SetDef:
    type: SetType
    interval: bool
    elements: frozenset

    def as_set(self, name: str, with_elements: bool = True) -> Set:
        return Set(name, self.type, self.interval, tuple(sorted(self.elements)) if with_elements else ())


@dataclass
class Ruleset:
    chains: dict[str, tuple] = field(default_factory=dict)
    sets: dict[str, SetDef] = field(default_factory=dict)
    from_workload: dict[str, str] = field(default_factory=dict)  # interface -> chain
    to_workload: dict[str, str] = field(default_factory=dict)
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # interface -> its endpoint's networks
    host_access: HostAccess = DEFAULT_HOST_ACCESS


def interface_sets(sources: dict[str, tuple[str, ...]]) -> dict[str, SetDef]:
    """The known workload interfaces, and per family the (interface, network) pairs for anti-spoofing."""
    sets = {KNOWN_INTERFACES: SetDef("ifname", False, frozenset(sources))}
    for family, name in SOURCES.items():
        pairs = frozenset(
            (interface, network.removesuffix("/32" if family == 4 else "/128"))
            for interface, networks in sources.items()
            for network in networks
            if (":" in network) == (family == 6)
        )
        sets[name] = SetDef(("ifname", "ipv4_addr" if family == 4 else "ipv6_addr"), True, pairs)
    return sets


def base_chains(host_access: HostAccess = DEFAULT_HOST_ACCESS) -> dict[str, tuple[Hook, tuple]]:
    """The hooked chains: (hook, rules).  Unknown workload interfaces carry nothing; a workload's
    source address is checked before anything is accepted, established flows included (a
    workload must not inject into another's flow); host-to-workload traffic (output) is not
    filtered, as in Calico. postrouting (source NAT) jumps to the outgoing-NAT chain (nat.py)."""
    unknown_in = [match(_IIF, WORKLOAD_INTERFACE_PATTERN), match(_IIF, "@" + KNOWN_INTERFACES, "!="), {"drop": None}]
    spoofed = [
        [
            match(_IIF, "@" + KNOWN_INTERFACES),
            match({"concat": [_IIF, {"payload": {"protocol": proto, "field": "saddr"}}]}, "@" + SOURCES[family], "!="),
            {"drop": None},
        ]
        for family, proto in ((4, "ip"), (6, "ip6"))
    ]
    unknown_out = [match(_OIF, WORKLOAD_INTERFACE_PATTERN), match(_OIF, "@" + KNOWN_INTERFACES, "!="), {"drop": None}]
    dispatch_in = [{"vmap": {"key": _IIF, "data": "@" + FROM_WORKLOAD_MAP}}]
    dispatch_out = [{"vmap": {"key": _OIF, "data": "@" + TO_WORKLOAD_MAP}}]
    established = [_ESTABLISHED, {"accept": None}]
    return {
        "postrouting": (Hook("postrouting", type="nat", priority=100), ([{"jump": {"target": NAT_CHAIN}}],)),
        "forward": (
            Hook("forward"),
            (unknown_in, unknown_out, *spoofed, established, dispatch_in, dispatch_out),
        ),
        "input": (
            Hook("input"),
            (
                [match(_IIF, WORKLOAD_INTERFACE_PATTERN), _ND, {"accept": None}],
                unknown_in,
                *spoofed,
                established,
                dispatch_in,
                *host_access.rules(),
            ),
        ),
    }


def build(ruleset: Ruleset) -> Transaction:
    """Every operation that builds the table from nothing (the `nft -f` equivalent of a ruleset)."""
    tx = Transaction().add(Table())
    for name, definition in sorted(ruleset.sets.items()):
        tx.add(definition.as_set(name))
    for name in sorted(ruleset.chains):
        tx.add(Chain(name))
    for name, rules in sorted(ruleset.chains.items()):
        for expr in rules:
            tx.add(Rule(name, tuple(expr)))
    for map_name, mapping in ((FROM_WORKLOAD_MAP, ruleset.from_workload), (TO_WORKLOAD_MAP, ruleset.to_workload)):
        tx.add(Map(map_name, tuple(sorted(mapping.items()))))
    for name, (hook, rules) in base_chains(ruleset.host_access).items():
        tx.add(Chain(name, hook))
        for expr in rules:
            tx.add(Rule(name, tuple(expr)))
    return tx
