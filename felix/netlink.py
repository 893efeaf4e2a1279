"""The kernel seam on pyroute2: the only module of the agent that speaks netlink or writes sysctls."""

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from threading import Event

from pyroute2 import AsyncIPRoute, IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

from felix.kernel import WORKLOAD_ROUTE_PROTO, KernelRoute, RouteError

log = logging.getLogger(__name__)

MAIN_TABLE = 254
RTN_UNICAST = 1
SCOPE_LINK = 253
NTF_PROXY = 0x08
RTM_NEWLINK, RTM_DELLINK = 16, 17
IPV6_GATEWAY = "fe80::1"
IFF_UP = 0x1

# Per workload interface, as Calico does: answer ARP/NDP for the gateway, forward, ignore RAs.
_IPV4_SYSCTLS = {"net/ipv4/conf/{}/proxy_arp": "1", "net/ipv4/neigh/{}/proxy_delay": "0",
                 "net/ipv4/conf/{}/forwarding": "1", "net/ipv4/conf/{}/rp_filter": "1"}
_IPV6_SYSCTLS = {"net/ipv6/conf/{}/proxy_ndp": "1", "net/ipv6/neigh/{}/proxy_delay": "0",
                 "net/ipv6/conf/{}/forwarding": "1", "net/ipv6/conf/{}/accept_ra": "0"}


def _write_sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


class NetlinkKernel:
    def __init__(self) -> None:
        self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def links(self) -> dict[str, int]:
        """Interfaces that are up: the kernel refuses routes on a down one (ENETDOWN)."""
        return {link.get_attr("IFLA_IFNAME"): link["index"] for link in self._ipr.get_links() if link["flags"] & IFF_UP}

    def workload_routes(self) -> set[KernelRoute]:
        routes = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self._ipr.get_routes(family=family, table=MAIN_TABLE):
                if msg["proto"] != WORKLOAD_ROUTE_PROTO or msg["type"] != RTN_UNICAST:
                    continue
                oif = msg.get_attr("RTA_OIF")
                if oif is None:
                    continue
                dst = msg.get_attr("RTA_DST") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
                routes.add(KernelRoute(str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}")), oif))
        return routes

    def _route(self, command: str, route: KernelRoute) -> None:
        v6 = ":" in route.dst
        self._ipr.route(command, dst=route.dst, oif=route.ifindex, proto=WORKLOAD_ROUTE_PROTO,
                        table=MAIN_TABLE, type=RTN_UNICAST, **({} if v6 else {"scope": SCOPE_LINK}))

    def add_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        errors = []
        for route in routes:
            try:
                self._route("add", route)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST and self._is_ours(route):
                    continue  # already there (it survived a link flap)
                reason = "a route to this destination that Calyx does not own exists" if exc.code == errno.EEXIST else str(exc)
                errors.append(RouteError(route, reason))
        return errors

    def _is_ours(self, route: KernelRoute) -> bool:
        network = ipaddress.ip_network(route.dst)
        family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
        for msg in self._ipr.get_routes(family=family, table=MAIN_TABLE, dst=str(network.network_address),
                                        dst_len=network.prefixlen):
            if msg["proto"] == WORKLOAD_ROUTE_PROTO and msg.get_attr("RTA_OIF") == route.ifindex:
                return True
        return False

    def delete_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        errors = []
        for route in routes:
            try:
                self._route("del", route)
            except NetlinkError as exc:
                if exc.code not in (errno.ESRCH, errno.ENODEV):
                    errors.append(RouteError(route, str(exc)))
        return errors

    def configure_interface(self, name: str, ipv4: bool, ipv6: bool) -> None:
        for path, value in (_IPV4_SYSCTLS.items() if ipv4 else ()):
            _write_sysctl(path.format(name), value)
        if ipv6:
            for path, value in _IPV6_SYSCTLS.items():
                _write_sysctl(path.format(name), value)
            index = self._ipr.link_lookup(ifname=name)
            if index:
                try:
                    self._ipr.neigh("add", dst=IPV6_GATEWAY, ifindex=index[0], flags=NTF_PROXY, family=socket.AF_INET6)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise OSError(exc.code, f"proxy NDP entry on {name}: {exc}") from None

    def enable_forwarding(self) -> None:
        _write_sysctl("net/ipv4/ip_forward", "1")
        _write_sysctl("net/ipv6/conf/all/forwarding", "1")

    def watch_links(self, emit: Callable[[str | None, int | None], None], stop: Event, subscribed: Event) -> None:
        asyncio.run(self._watch_links(emit, stop, subscribed))

    @staticmethod
    async def _watch_links(emit: Callable[[str | None, int | None], None], stop: Event, subscribed: Event) -> None:
        # pyroute2 buffers datagrams behind its own event loop, so a select() on its socket
        # can lag one event behind: read through the asyncio API, in this thread's own loop.
        async with AsyncIPRoute() as events:
            await events.bind(groups=RTMGRP_LINK)
            subscribed.set()
            while not stop.is_set():
                try:
                    messages = await asyncio.wait_for(_one_datagram(events), timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                except (NetlinkError, OSError) as exc:  # ENOBUFS: the kernel dropped events
                    log.warning("link events lost (%s); re-reading interfaces", exc)
                    emit(None, None)
                    continue
                for msg in messages:
                    name = msg.get_attr("IFLA_IFNAME")
                    if msg["header"]["type"] == RTM_NEWLINK and msg["flags"] & IFF_UP:
                        emit(name, msg["index"])
                    elif msg["header"]["type"] in (RTM_NEWLINK, RTM_DELLINK):
                        emit(name, None)  # gone, or down: the kernel drops its routes either way


async def _one_datagram(events: AsyncIPRoute) -> list:
    return [msg async for msg in events.get()]
