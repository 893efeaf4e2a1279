"""Outgoing NAT, as Calico's IPPool `natOutgoing`: traffic from a pool's workloads to a
destination outside every Calyx IPPool leaves the node with the node's address (masquerade),
so workloads reach the world without the fabric routing their pools. Pure: pools in, the
sets and the chain the `inet calyx` table's postrouting hook jumps to out."""

from collections.abc import Iterable

from policy.compiler.matches import match
from policy.compiler.sets import collapse
from policy.model.pools import IPPool

NAT_CHAIN = "nat-outgoing"
ALL_POOLS = {4: "pools4", 6: "pools6"}  # every IPPool's cidr: destinations never masqueraded
NAT_POOLS = {4: "nat-pools4", 6: "nat-pools6"}  # the cidrs of pools with natOutgoing
_FAMILY = {4: ("ipv4", "ip", "ipv4_addr"), 6: ("ipv6", "ip6", "ipv6_addr")}


def nat_rules() -> tuple:
    """Masquerade what a natOutgoing pool sends beyond every pool (the same rules whatever the pools)."""
    rules = []
    for family, (nfproto, protocol, _) in _FAMILY.items():
        source = {"payload": {"protocol": protocol, "field": "saddr"}}
        destination = {"payload": {"protocol": protocol, "field": "daddr"}}
        rules.append(
            [
                match({"meta": {"key": "nfproto"}}, nfproto),
                match(source, "@" + NAT_POOLS[family]),
                match(destination, "@" + ALL_POOLS[family], "!="),
                {"masquerade": None},
            ]
        )
    return tuple(rules)


def nat_set_elements(pools: Iterable[IPPool]) -> dict[str, tuple[str, frozenset[str]]]:
    """set name -> (element type, cidrs): disabled pools count too, their workloads still run."""
    pools = list(pools)
    sets = {}
    for family, (_, _, element_type) in _FAMILY.items():
        mine = [p for p in pools if (":" in p.spec.cidr) == (family == 6)]
        sets[ALL_POOLS[family]] = (element_type, collapse(p.spec.cidr for p in mine))
        sets[NAT_POOLS[family]] = (element_type, collapse(p.spec.cidr for p in mine if p.spec.natOutgoing))
    return sets
