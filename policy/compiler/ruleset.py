"""The compiled ruleset of the `inet calyx` table, and its rendering as libnftables JSON commands.

Chains hold tuples of rules (each a list of expressions); sets hold frozensets of elements.
Both are immutable values, so the driver can diff what it programmed against what is desired."""

import ipaddress
from dataclasses import dataclass, field

from policy.compiler.matches import match

TABLE = "calyx"
FAMILY = "inet"
WORKLOAD_INTERFACE_PATTERN = "cx*"
FROM_WORKLOAD_MAP = "from-wl"  # workload interface -> jump wl-out-<if> (traffic the workload sends)
TO_WORKLOAD_MAP = "to-wl"  # workload interface -> jump wl-in-<if> (traffic to the workload)
KNOWN_INTERFACES = "wl-ifaces"  # a set (type ifname) of every interface in the maps
SOURCES = {4: "wl-src4", 6: "wl-src6"}  # (interface, address) a workload may send from
_T = {"family": FAMILY, "table": TABLE}
_IIF, _OIF = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
_ESTABLISHED = match({"ct": {"key": "state"}}, ["established", "related"], "in")
_ND = match(
    {"payload": {"protocol": "icmpv6", "field": "type"}},
    {"set": ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"]},
)


@dataclass
class SetDef:
    type: str | list[str]
    interval: bool
    elements: frozenset


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
        sets[name] = SetDef(["ifname", "ipv4_addr" if family == 4 else "ipv6_addr"], True, pairs)
    return sets


def base_chains() -> dict[str, tuple[dict, tuple]]:
    """The hooked chains: (definition, rules).  Unknown workload interfaces carry nothing;
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
    hooked = {"type": "filter", "prio": 0, "policy": "accept"}
    return {
        "forward": (
            {**hooked, "hook": "forward"},
            (established, unknown_in, unknown_out, *spoofed, dispatch_in, dispatch_out),
        ),
        "input": (
            {**hooked, "hook": "input"},
            (
                established,
                [match(_IIF, WORKLOAD_INTERFACE_PATTERN), _ND, {"accept": None}],
                unknown_in,
                *spoofed,
                dispatch_in,
            ),
        ),
    }


def element(value):
    """A set element in libnftables JSON: an address, a prefix, or an (address, proto, port) tuple."""
    if isinstance(value, tuple):
        return {"concat": [element(v) if isinstance(v, str) else v for v in value]}
    if "/" in value:
        net = ipaddress.ip_network(value)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    return value


def set_object(name: str, definition: SetDef, elements=None) -> dict:
    obj = {**_T, "name": name, "type": definition.type}
    if definition.interval:
        obj["flags"] = ["interval"]
    if elements:
        obj["elem"] = [element(e) for e in sorted(elements)]
    return obj


def rule_object(chain: str, expr: list) -> dict:
    return {**_T, "chain": chain, "expr": expr}


def verdict_elements(mapping: dict[str, str]) -> list:
    return [[interface, {"jump": {"target": chain}}] for interface, chain in sorted(mapping.items())]


def full_commands(ruleset: Ruleset) -> list[dict]:
    """Every command that builds the table from nothing (the `nft -f` equivalent of a ruleset)."""
    commands: list[dict] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for name, definition in sorted(ruleset.sets.items()):
        commands.append({"add": {"set": set_object(name, definition, definition.elements)}})
    for name in sorted(ruleset.chains):
        commands.append({"add": {"chain": {**_T, "name": name}}})
    for name, rules in sorted(ruleset.chains.items()):
        commands.extend({"add": {"rule": rule_object(name, expr)}} for expr in rules)
    for map_name, mapping in ((FROM_WORKLOAD_MAP, ruleset.from_workload), (TO_WORKLOAD_MAP, ruleset.to_workload)):
        obj = {**_T, "name": map_name, "type": "ifname", "map": "verdict"}
        if mapping:
            obj["elem"] = verdict_elements(mapping)
        commands.append({"add": {"map": obj}})
    for name, (definition, rules) in base_chains().items():
        commands.append({"add": {"chain": {**_T, "name": name, **definition}}})
        commands.extend({"add": {"rule": rule_object(name, expr)}} for expr in rules)
    return commands
