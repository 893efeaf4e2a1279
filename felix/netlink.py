"""The kernel seam on pyroute2: the only module of the agent that speaks netlink or writes sysctls.

pyroute2 is imported where it is used (the link watch, IPv6 proxy entries), not at start: its
package import (~60 ms, every netlink family it knows) then overlaps felix's first etcd list."""

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from threading import Event
from typing import TYPE_CHECKING, Any

from felix.kernel import KernelRoute, RouteError
from felix.route_batch import RTM_DELROUTE, RTM_NEWROUTE, RouteBatch

if TYPE_CHECKING:
    from pyroute2 import AsyncIPRoute

log = logging.getLogger(__name__)

NTF_PROXY = 0x08
RTM_NEWLINK, RTM_DELLINK = 16, 17
SIOCGIFFLAGS = 0x8913
IPV6_GATEWAY = "fe80::1"
IFF_UP = 0x1

# Per workload interface, as Calico does: answer ARP/NDP for the gateway, forward, ignore RAs.
_IPV4_SYSCTLS = {
    "net/ipv4/conf/{}/proxy_arp": "1",
    "net/ipv4/neigh/{}/proxy_delay": "0",
    "net/ipv4/conf/{}/forwarding": "1",
    "net/ipv4/conf/{}/rp_filter": "1",
}
_IPV6_SYSCTLS = {
    "net/ipv6/conf/{}/proxy_ndp": "1",
    "net/ipv6/neigh/{}/proxy_delay": "0",
    "net/ipv6/conf/{}/forwarding": "1",
    "net/ipv6/conf/{}/accept_ra": "0",
}


def _write_sysctl(path: str, value: str) -> None:
    """Forwarding is read before it is written: a forwarding write makes the kernel announce
    every interface again (RTM_NEWLINK), and 20,000 of those cost far more than reading first.
    The others are written as they are: the kernel does nothing when a value stays the same,
    and a read cost as much as the write (10,000 interfaces: 30,000 reads saved at start)."""
    full = f"/proc/sys/{path}"
    if "forward" in path:
        fd = os.open(full, os.O_RDONLY)
        try:
            if os.read(fd, 32).strip() == value.encode():
                return
        finally:
            os.close(fd)
    fd = os.open(full, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class NetlinkKernel:
    def __init__(self) -> None:
        self._ipr: Any = None  # pyroute2's IPRoute, made at the first IPv6 interface
        self._batch = RouteBatch()
        self._ioctl_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
        self._batch.close()
        self._ioctl_socket.close()

    def links(self, names: Iterable[str]) -> dict[str, int]:
        """The named interfaces that exist and are up (the kernel refuses routes on a down one).

        Two ioctls per name: a netlink dump of every link costs pyroute2 ~0.5 ms and ~30 KiB per
        interface, which on a node with 20,000 interfaces is 10 s and 600 MiB."""
        found = {}
        for name in names:
            try:
                request = struct.pack("16sH14x", name.encode(), 0)
                flags = struct.unpack_from("H", fcntl.ioctl(self._ioctl_socket, SIOCGIFFLAGS, request), 16)[0]
                if flags & IFF_UP:
                    found[name] = socket.if_nametoindex(name)
            except OSError:
                continue  # no such interface (yet)
        return found

    def workload_routes(self) -> set[KernelRoute]:
        return {route for family in (socket.AF_INET, socket.AF_INET6) for route in self._batch.dump_ours(family)}

    def add_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        refused = list(self._batch.apply(RTM_NEWROUTE, list(routes)))
        # EEXIST on a route of ours (it survived a link flap) is success: read ours back once.
        ours = self.workload_routes() if any(code == errno.EEXIST for _, code in refused) else set()
        return [
            RouteError(
                route,
                "a route to this destination that Calyx does not own exists"
                if code == errno.EEXIST
                else os.strerror(code),
            )
            for route, code in refused
            if not (code == errno.EEXIST and route in ours)
        ]

    def delete_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        return [
            RouteError(route, os.strerror(code))
            for route, code in self._batch.apply(RTM_DELROUTE, list(routes))
            if code not in (errno.ESRCH, errno.ENODEV)
        ]

    def configure_interface(self, name: str, ifindex: int, ipv4: bool, ipv6: bool) -> None:
        for path, value in _IPV4_SYSCTLS.items() if ipv4 else ():
            _write_sysctl(path.format(name), value)
        if ipv6:
            for path, value in _IPV6_SYSCTLS.items():
                _write_sysctl(path.format(name), value)
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError

            if self._ipr is None:
                self._ipr = IPRoute()
            try:
                self._ipr.neigh("add", dst=IPV6_GATEWAY, ifindex=ifindex, flags=NTF_PROXY, family=socket.AF_INET6)
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
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.rtnl import RTMGRP_LINK

        async with AsyncIPRoute() as events:
            await events.bind(groups=RTMGRP_LINK)
            subscribed.set()
            while not stop.is_set():
                try:
                    messages = await asyncio.wait_for(_one_datagram(events), timeout=0.5)
                except TimeoutError:
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


async def _one_datagram(events: "AsyncIPRoute") -> list:
    return [msg async for msg in events.get()]
