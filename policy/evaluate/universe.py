"""Who is who for the evaluator: the endpoints and network sets selectors pick, the addresses
each holds, and which selection an address falls in.

Written from the semantics, not from the compiler, so the two can be held against each other
(and against the kernel). Lookups are cached: explaining one flow asks a few questions, a
reachability matrix asks the same ones many times."""

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from policy.compiler.labels import namespace_matches
from policy.model.policies import GlobalNetworkSet, NetworkSet, Profile
from policy.model.resources import (
    NAMESPACE_LABEL,
    Namespace,
    Node,
    WorkloadEndpoint,
    endpoint_labels,
    namespace_labels,
)
from policy.model.rules import PROTOCOL_NUMBERS
from policy.model.selector import parse_selector

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=65536)
def network(text: str) -> Network:
    return ipaddress.ip_network(text, strict=False)


@lru_cache(maxsize=65536)
def address(text: str) -> Address:
    return ipaddress.ip_address(text)


@dataclass(frozen=True, eq=False)
class Member:
    """An endpoint or a network set as selectors see it."""

    resource: WorkloadEndpoint | NetworkSet | GlobalNetworkSet
    labels: Mapping[str, str]
    networks: tuple[Network, ...]  # for an endpoint: only those it holds (see Universe)

    @property
    def namespace(self) -> str | None:
        return self.resource.namespace

    @property
    def is_endpoint(self) -> bool:
        return isinstance(self.resource, WorkloadEndpoint)

    @property
    def node(self) -> str | None:
        return self.resource.spec.node if isinstance(self.resource, WorkloadEndpoint) else None

    @property
    def name(self) -> str:
        """How people name it: 'ns/name' for namespaced members, the name for global ones."""
        resource = self.resource
        return f"{resource.namespace}/{resource.name}" if resource.namespace else resource.name

    def named_ports(self) -> tuple[tuple[str, int, int], ...]:
        """(name, protocol number, port) of an endpoint's spec.ports."""
        if not isinstance(self.resource, WorkloadEndpoint):
            return ()
        return tuple((p.name, PROTOCOL_NUMBERS[p.protocol], p.port) for p in self.resource.spec.ports)


class Universe:
    """The items of a model that selectors and addresses refer to.

    `created` gives each endpoint's etcd create revision by (namespace, name): of two endpoints
    of one node claiming the same network, the one created first holds it (then the smaller
    name), as felix decides; the other sends from, and is selected by, none of it."""

    def __init__(self, resources: Iterable, created: Mapping[tuple[str | None, str], int] | None = None):
        resources = list(resources)
        profiles = {r.name: r for r in resources if isinstance(r, Profile)}
        self.namespaces: dict[str, dict[str, str]] = {
            r.name: namespace_labels(r) for r in resources if isinstance(r, Namespace)
        }
        self.nodes: list[Node] = [r for r in resources if isinstance(r, Node)]
        endpoints = sorted(
            (r for r in resources if isinstance(r, WorkloadEndpoint)), key=lambda e: (e.namespace or "", e.name)
        )
        held = _held_networks(endpoints, created or {})
        self.members: list[Member] = [Member(e, _endpoint_labels(e, profiles), held[id(e)]) for e in endpoints]
        self.members += [
            Member(s, _netset_labels(s), tuple(network(n) for n in s.spec.nets))
            for s in resources
            if isinstance(s, (NetworkSet, GlobalNetworkSet))
        ]
        self._selections: dict[tuple, frozenset[int]] = {}
        self._holders: dict[str, frozenset[int]] = {}

    @property
    def endpoints(self) -> list[Member]:
        return [m for m in self.members if m.is_endpoint]

    def select(self, selector: str, namespace_selector: str | None, namespace: str | None) -> frozenset[int]:
        """Indexes of the members `selector` picks: in the namespaces `namespace_selector` picks,
        else in `namespace` alone (a NetworkPolicy), else anywhere (a GlobalNetworkPolicy)."""
        cache_key = (selector, namespace_selector, namespace)
        found = self._selections.get(cache_key)
        if found is None:
            chosen = parse_selector(selector)
            found = self._selections[cache_key] = frozenset(
                i
                for i, m in enumerate(self.members)
                if self._in_scope(m, namespace_selector, namespace) and chosen.matches(m.labels)
            )
        return found

    def _in_scope(self, member: Member, namespace_selector: str | None, namespace: str | None) -> bool:
        if namespace_selector is not None:
            labels = None if member.namespace is None else self.namespaces.get(member.namespace, {})
            return namespace_matches(parse_selector(namespace_selector), labels)
        return namespace is None or member.namespace == namespace

    def holders(self, ip: str) -> frozenset[int]:
        """Indexes of the members one of whose networks contains the address."""
        found = self._holders.get(ip)
        if found is None:
            target = address(ip)
            found = self._holders[ip] = frozenset(
                i for i, m in enumerate(self.members) if any(target in n for n in m.networks)
            )
        return found

    def owner(self, ip: str) -> Member | None:
        """The endpoint that holds the address as a host address (/32 or /128), if any."""
        target = address(ip)
        for i in sorted(self.holders(ip)):
            member = self.members[i]
            if member.is_endpoint and any(
                n.num_addresses == 1 and n.network_address == target for n in member.networks
            ):
                return member
        return None


def _endpoint_labels(endpoint: WorkloadEndpoint, profiles: Mapping[str, Profile]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name in endpoint.spec.profiles:
        if name in profiles:
            labels.update(profiles[name].spec.labelsToApply)
    labels.update(endpoint.metadata.labels)
    spec = endpoint.spec
    return endpoint_labels(labels, endpoint.namespace or "", spec.orchestrator, spec.serviceAccountName)


def _netset_labels(netset: NetworkSet | GlobalNetworkSet) -> dict[str, str]:
    labels = dict(netset.metadata.labels)
    if netset.namespace:
        labels[NAMESPACE_LABEL] = netset.namespace
    return labels


def _held_networks(
    endpoints: list[WorkloadEndpoint], created: Mapping[tuple[str | None, str], int]
) -> dict[int, tuple[Network, ...]]:
    """Per endpoint (by id), the networks it holds: a network claimed by several endpoints of
    one node belongs to the one created first, then to the smallest key (namespace/name)."""
    claims: dict[tuple[str, str], list[WorkloadEndpoint]] = defaultdict(list)
    for endpoint in endpoints:
        for text in set(endpoint.spec.ipNetworks):
            claims[(endpoint.spec.node, text)].append(endpoint)
    owner = {
        claim: min(claimants, key=lambda e: (created.get((e.namespace, e.name), 0), f"{e.namespace}/{e.name}"))
        for claim, claimants in claims.items()
    }
    return {
        id(e): tuple(network(text) for text in dict.fromkeys(e.spec.ipNetworks) if owner[(e.spec.node, text)] is e)
        for e in endpoints
    }
