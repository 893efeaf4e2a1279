"""Route driver: keeps the kernel's workload routes equal to the desired ones, writing the minimum.

It reads the kernel back on resync (at in-sync and periodically), then works from what it
programmed, so one endpoint change costs one netlink write, not a dump of 10,000 routes.
Routes per interface are tuples (almost always one route: 48 bytes, where a set costs 216)."""

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from felix.kernel import Kernel, KernelRoute, RouteError

log = logging.getLogger(__name__)


@dataclass
class RouteApplyResult:
    added: int = 0
    deleted: int = 0
    errors: list[RouteError] = field(default_factory=list)


class WorkloadRouteDriver:
    def __init__(self, kernel: Kernel):
        self._kernel = kernel
        self._links: dict[str, int] = {}
        self._desired: dict[str, tuple[str, ...]] = {}
        self._programmed: dict[int, tuple[str, ...]] = {}  # ifindex -> our routes believed in the kernel
        self.route_count = 0
        self._configured: dict[str, int] = {}  # interface -> _settings() of what it was configured for
        self._dirty_interfaces: set[str] = set()
        self._dirty_indexes: set[int] = set()
        self._needs_resync = False

    @property
    def pending(self) -> bool:
        return self._needs_resync or bool(self._dirty_interfaces or self._dirty_indexes)

    def set_desired(self, interface: str, networks: Collection[str] | None) -> None:
        if networks is None:
            self._desired.pop(interface, None)
        else:
            self._desired[interface] = networks if isinstance(networks, tuple) else tuple(sorted(networks))
        self._dirty_interfaces.add(interface)

    def link_changed(self, name: str, ifindex: int | None) -> None:
        """Track the interfaces endpoints use; others are looked up if an endpoint names them later."""
        if name not in self._desired and name not in self._links:
            return
        old = self._links.get(name)
        if old is not None and old != ifindex:
            self._forget_index(old)  # the kernel dropped its routes with it
        if ifindex is None:
            self._links.pop(name, None)
            self._configured.pop(name, None)
        else:
            self._links[name] = ifindex
        if name in self._desired and old != ifindex:
            self._dirty_interfaces.add(name)

    def resync(self) -> None:
        """Forget what we believe and re-read links and routes, so the next apply sweeps strays."""
        self._needs_resync = False
        self._links = self._kernel.links(self._desired)
        self._programmed = {}
        routes = self._kernel.workload_routes()
        found: dict[int, list[str]] = {}
        for route in routes:
            found.setdefault(route.ifindex, []).append(route.dst)
        self._programmed = {ifindex: tuple(dsts) for ifindex, dsts in found.items()}
        self.route_count = len(routes)
        wanted = {self._links[name] for name in self._desired if name in self._links}
        self._dirty_indexes = set(self._programmed) - wanted
        self._dirty_interfaces = set(self._desired)
        self._configured = {n: c for n, c in self._configured.items() if self._links.get(n) == c >> 2}

    def resync_pending(self) -> None:
        """After an unexpected failure nothing of the cache can be trusted: re-read at the next apply."""
        self._needs_resync = True

    def apply(self) -> RouteApplyResult:
        """Delete what is not desired, then add what is missing; failures stay dirty for a retry."""
        if self._needs_resync:
            self.resync()
        deletes: list[KernelRoute] = []
        adds: list[KernelRoute] = []
        wanted: dict[int, tuple[str, ...]] = {}
        for stale in self._dirty_indexes:
            deletes.extend(KernelRoute(dst, stale) for dst in self._programmed.get(stale, ()))
        for name in self._dirty_interfaces:
            ifindex = self._links.get(name)
            if ifindex is None and name in self._desired:
                ifindex = self._kernel.links([name]).get(name)
                if ifindex is not None:
                    self._links[name] = ifindex
            if ifindex is None:
                continue  # programmed when the interface appears
            desired = self._desired.get(name, ())
            if name in self._desired:
                self._configure(name, ifindex, desired)
                wanted[ifindex] = desired
            have = self._programmed.get(ifindex, ())
            deletes.extend(KernelRoute(dst, ifindex) for dst in have if dst not in desired)
            adds.extend(KernelRoute(dst, ifindex) for dst in desired if dst not in have)
        result = RouteApplyResult()
        failed = self._record(self._kernel.delete_routes(deletes), deletes, added=False, result=result)
        failed |= self._record(self._kernel.add_routes(adds), adds, added=True, result=result)
        for ifindex, desired in wanted.items():
            if self._programmed.get(ifindex) == desired:
                self._programmed[ifindex] = desired  # one tuple for both: 48 bytes per interface
        names = {index: name for name, index in self._links.items()}
        self._dirty_indexes = {ifindex for ifindex in failed if ifindex not in names}
        self._dirty_interfaces = {names[ifindex] for ifindex in failed if ifindex in names}
        return result

    def _forget_index(self, ifindex: int) -> None:
        self.route_count -= len(self._programmed.pop(ifindex, ()))

    def _record(
        self, errors: list[RouteError], routes: list[KernelRoute], added: bool, result: RouteApplyResult
    ) -> set[int]:
        failed_routes = {error.route for error in errors}
        for route in routes:
            if route in failed_routes:
                continue
            programmed = self._programmed.get(route.ifindex, ())
            if added:
                if route.dst not in programmed:
                    self.route_count += 1
                    self._programmed[route.ifindex] = (*programmed, route.dst)
                result.added += 1
            else:
                if route.dst in programmed:
                    self.route_count -= 1
                    left = tuple(dst for dst in programmed if dst != route.dst)
                    if left:
                        self._programmed[route.ifindex] = left
                    else:
                        del self._programmed[route.ifindex]
                result.deleted += 1
        for error in errors:
            log.warning("route %s failed: %s", "add" if added else "delete", error)
        result.errors.extend(errors)
        return {route.ifindex for route in failed_routes}

    def _configure(self, name: str, ifindex: int, desired: tuple[str, ...]) -> None:
        has_v6 = any(":" in n for n in desired)
        has_v4 = any(":" not in n for n in desired)
        ipv4, ipv6 = has_v4 or not has_v6, has_v6
        have = self._configured.get(name)
        if have is not None and have >> 2 == ifindex and have | _settings(ifindex, ipv4, ipv6) == have:
            return  # configured already, for these families or more
        try:
            self._kernel.configure_interface(name, ifindex, ipv4=ipv4, ipv6=ipv6)
            self._configured[name] = _settings(ifindex, ipv4, ipv6)
        except OSError as exc:  # the interface may vanish between the event and the write
            log.info("could not configure %s yet: %s", name, exc)


def _settings(ifindex: int, ipv4: bool, ipv6: bool) -> int:
    """An interface's index and the families it was configured for, in one int: a tuple of the
    three cost 64 bytes per interface, the int 28."""
    return ifindex << 2 | ipv6 << 1 | ipv4
