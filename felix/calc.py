"""Pure calculation: from this node's workload endpoints to the routes each interface needs.

The index holds only the projection routes need, so 10,000 endpoints stay small, and reports
which interfaces one change touches, so an update recomputes those alone.  Results depend on
the current set of endpoints only, never on the order the updates came in."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from policy.compiler.claims import Claims, claim, claimants, release
from policy.compiler.compiler import EndpointFacts


@dataclass(frozen=True, slots=True)
class EndpointRoutes:
    interface: str
    networks: tuple[str, ...]
    created: int = 0  # etcd create revision: of two endpoints claiming one address, the older keeps it


def endpoint_routes(endpoint: EndpointFacts, node: str, created: int = 0) -> EndpointRoutes | None:
    """The routing-relevant part of an endpoint, or None when it lives on another node."""
    if endpoint.node != node:
        return None
    networks = endpoint.networks
    if len(networks) > 1:
        networks = tuple(sorted(set(networks)))
    return EndpointRoutes(endpoint.interface, networks, created)  # one address: the same tuple


class RouteIndex:
    """Keys per interface and per network are Claims: almost always one key, stored as itself."""

    def __init__(self) -> None:
        self._endpoints: dict[str, EndpointRoutes] = {}
        self._by_interface: Claims = {}
        self._claims: Claims = {}  # network -> endpoint keys claiming it
        self.conflict_count = 0  # networks claimed by more than one endpoint

    def __len__(self) -> int:
        return len(self._endpoints)

    def update(self, key: str, routes: EndpointRoutes | None) -> set[str]:
        """Set (or with None, remove) one endpoint; return the interfaces whose routes may change."""
        old = self._endpoints.get(key)
        if old == routes:
            return set()
        networks = set(old.networks if old else ()) | set(routes.networks if routes else ())
        dirty = self._owner_interfaces(networks)
        if old:
            self._forget(key, old)
            dirty.add(old.interface)
        if routes:
            self._endpoints[key] = routes
            claim(self._by_interface, routes.interface, key)
            for network in routes.networks:
                self.conflict_count += claim(self._claims, network, key) == 2
            dirty.add(routes.interface)
        return dirty | self._owner_interfaces(networks)

    def _forget(self, key: str, old: EndpointRoutes) -> None:
        del self._endpoints[key]
        release(self._by_interface, old.interface, key)
        for network in old.networks:
            self.conflict_count -= release(self._claims, network, key) == 1

    def _owner_interfaces(self, networks: set[str]) -> set[str]:
        return {self._endpoints[self.owner(n)].interface for n in networks if n in self._claims}

    def owner(self, network: str) -> str:
        """When two endpoints claim one network, the one created first in etcd keeps it (then the
        smaller key): a newcomer can never take a running workload's address, and the answer
        depends on what etcd holds, not on the order updates arrived in."""
        return min(claimants(self._claims, network), key=lambda key: (self._endpoints[key].created, key))

    def claimants(self, networks: Iterable[str]) -> set[str]:
        return {key for network in networks for key in claimants(self._claims, network)}

    def owned(self, key: str) -> tuple[str, ...]:
        """The networks an endpoint holds: its own, less those an older endpoint holds."""
        return tuple(n for n in self._endpoints[key].networks if self.owner(n) == key)

    def refused(self) -> dict[str, str]:
        """Endpoint key -> why some of its addresses were refused, for the status felix publishes."""
        reasons: dict[str, list[str]] = defaultdict(list)
        for network, found in sorted(self._claims.items()):
            if isinstance(found, tuple):  # more than one claimant
                owner = self.owner(network)
                for key in sorted(k for k in found if k != owner):
                    reasons[key].append(f"{network} is held by {owner}")
        return {key: "address conflict: " + ", ".join(held) for key, held in reasons.items()}

    def desired(self, interface: str) -> tuple[str, ...] | None:
        """Routes for one interface, sorted; None when no endpoint uses it (its routes must go).
        One endpoint holding all its networks (the usual case) shares its own tuple."""
        keys = claimants(self._by_interface, interface)
        if not keys:
            return None
        held = tuple(n for key in keys for n in self._endpoints[key].networks if self.owner(n) == key)
        if len(keys) == 1 and held == self._endpoints[keys[0]].networks:
            return self._endpoints[keys[0]].networks
        return tuple(sorted(set(held)))
