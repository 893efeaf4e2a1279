"""The compiled ruleset of the `inet calyx` table, and the transaction that builds it from nothing.

Chains hold tuples of rules (each a list of expressions); sets hold frozensets of elements.
Both are immutable values, so the driver can diff what it programmed against what is desired."""

from dataclasses import dataclass, field

from policy.compiler.matches import match
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


def base_chains() -> dict[str, tuple[Hook, tuple]]:
    """The hooked chains: (hook, rules).  Unknown workload interfaces carry nothing;
    host-to-workload traffic (output) is not filtered, as in Calico."""
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
        "forward": (
            Hook("forward"),
            (established, unknown_in, unknown_out, *spoofed, dispatch_in, dispatch_out),
        ),
        "input": (
            Hook("input"),
            (
                established,
                [match(_IIF, WORKLOAD_INTERFACE_PATTERN), _ND, {"accept": None}],
                unknown_in,
                *spoofed,
                dispatch_in,
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
    for name, (hook, rules) in base_chains().items():
        tx.add(Chain(name, hook))
        for expr in rules:
            tx.add(Rule(name, tuple(expr)))
    return tx
