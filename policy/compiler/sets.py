"""Named nftables sets: what each holds (a selection of items, or fixed nets) and its name.

A set is named by a hash of what it holds, so every rule that means the same thing shares
one set. Its kind follows its elements: host addresses only (every pod) make a plain hash
set, a network among them an interval set, named with `-i` after the hash. libnftables reads
every interval set's elements back from the kernel before each element change (~140 ms at
121,000 elements, docs/scaling.md); hash sets it leaves alone. A set changing kind is a new
set: the chains that use it switch to it, and the old one goes, in one transaction."""

import hashlib
import ipaddress
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from policy.compiler.labels import Item, namespace_matches
from policy.model.selector import parse_selector

ADDRESS_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
PORT_TYPES = {4: ("ipv4_addr", "inet_proto", "inet_service"), 6: ("ipv6_addr", "inet_proto", "inet_service")}


@dataclass(frozen=True, slots=True)
class Selection:
    """Items matching `selector`, in the namespaces `namespace_selector` picks, or else in
    `namespace` alone (a namespaced policy), or else anywhere (a global policy)."""

    selector: str
    namespace_selector: str | None = None
    namespace: str | None = None

    def matches(self, item: Item, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if self.namespace_selector is not None:
            labels = None if item.namespace is None else namespace_labels.get(item.namespace, {})
            if not namespace_matches(parse_selector(self.namespace_selector), labels):
                return False
        elif self.namespace is not None and item.namespace != self.namespace:
            return False
        return parse_selector(self.selector).matches(item.labels)

    def scoped_namespaces(
        self, namespace_labels: Mapping[str, Mapping[str, str]], known: Iterable[str | None]
    ) -> set[str | None] | None:
        """The namespaces (None: global items) this selection may pick from; None means all."""
        if self.namespace_selector is not None:
            selector = parse_selector(self.namespace_selector)
            return {
                ns for ns in known if namespace_matches(selector, None if ns is None else namespace_labels.get(ns, {}))
            }
        if self.namespace is not None:
            return {self.namespace}
        return None


@dataclass(frozen=True)
class SetSpec:
    """One named set: addresses of a selection's items, fixed nets, or (address, proto, port)
    of a selection's endpoints that have a named port."""

    family: int
    selection: Selection | None = None
    nets: tuple[str, ...] = ()
    port_name: str | None = None
    protocol: int | None = None

    @cached_property
    def name(self) -> str:
        kind = "port" if self.port_name else ("sel" if self.selection else "net")
        digest = hashlib.sha1(repr(self).encode()).hexdigest()[:16]
        return f"{kind}{self.family}-{digest}"

    @property
    def nft_type(self):
        return PORT_TYPES[self.family] if self.port_name else ADDRESS_TYPES[self.family]

    def set_name(self, interval: bool) -> str:
        """The name of this spec's set as an interval set, or as a plain hash set."""
        return f"{self.name}-i" if interval else self.name


def needs_interval(elements: Iterable) -> bool:
    """Whether elements (from collapse) hold a network, which only an interval set can."""
    return any("/" in e for e in elements if isinstance(e, str))


def collapse(networks: Iterable[str]) -> frozenset[str]:
    """Interval sets refuse overlapping elements: merge them, keeping host addresses bare (a
    set of host addresses only is a hash set, which needs them bare)."""
    networks = list(networks)
    if all(n.endswith("/128") or n.endswith("/32") and ":" not in n for n in networks):  # endpoints only
        # interned: an endpoint in several sets holds one string for all of them
        return frozenset(sys.intern(n.rpartition("/")[0]) for n in networks)
    nets = [ipaddress.ip_network(n) for n in networks]
    if all(n.num_addresses == 1 for n in nets):
        return frozenset(str(n.network_address) for n in nets)
    return frozenset(
        str(n.network_address) if n.num_addresses == 1 else str(n)
        for n in ipaddress.collapse_addresses(nets)  # type: ignore[type-var]
    )
