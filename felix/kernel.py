"""The narrow seam at the kernel: what the route driver needs, as plain data."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from threading import Event
from typing import Protocol

WORKLOAD_ROUTE_PROTO = 76  # every workload route Calyx programs carries this protocol number


@dataclass(frozen=True, slots=True)
class KernelRoute:
    dst: str  # canonical CIDR text
    ifindex: int


class RouteError(Exception):
    def __init__(self, route: KernelRoute, reason: str):
        self.route, self.reason = route, reason
        super().__init__(f"{route.dst} on ifindex {route.ifindex}: {reason}")


class Kernel(Protocol):
    def links(self, names: Iterable[str]) -> dict[str, int]:
        """Name -> ifindex of those of the named interfaces that exist and are up."""
        ...

    def workload_routes(self) -> set[KernelRoute]:
        """Unicast main-table routes with our protocol and an output interface (never blackholes)."""
        ...

    def add_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]: ...

    def delete_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        """Deleting a route that is already gone is not an error."""
        ...

    def configure_interface(self, name: str, ifindex: int, ipv4: bool, ipv6: bool) -> None:
        """Per-interface sysctls (proxy ARP/NDP, forwarding) and the IPv6 gateway proxy entry."""
        ...

    def enable_forwarding(self) -> None: ...

    def watch_links(self, emit: Callable[[str | None, int | None], None], stop: Event, subscribed: Event) -> None:
        """Block until stop, calling emit(name, ifindex) for links that are up, emit(name, None)
        for removed or down ones and emit(None, None) when events were lost and a re-read is due.

        Sets `subscribed` once events are being captured: links read after that miss nothing."""
        ...
