"""The workload recipe of DESIGN.md: what the CNI plugin (or a bare-metal script) does before
writing a WorkloadEndpoint.  Calyx's agent never creates interfaces; this is the reference.

    host netns                          workload netns
    cx<hash> (ee:ee:ee:ee:ee:ee) <----> eth0: 198.19.1.2/32, fd00::2/128
                                        169.254.1.1 dev eth0 scope link
                                        default via 169.254.1.1 dev eth0
                                        default via fe80::1 dev eth0
The host answers for 169.254.1.1 and fe80::1 by proxy ARP/NDP, which the agent turns on.

Namespaces are entered with setns(2) by the calling thread only, for as long as it takes to
open a netlink socket there (a socket stays in the namespace it was made in) or to write a
sysctl, and never created: a namespace that is gone stays gone."""

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

HOST_MAC = "ee:ee:ee:ee:ee:ee"
IPV4_GATEWAY = "169.254.1.1"
IPV6_GATEWAY = "fe80::1"
WORKLOAD_IFNAME = "eth0"
IFA_F_NODAD = 0x02
SCOPE_LINK = 253
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()  # one thread at a time away from its namespace keeps this simple


class NamespaceGone(OSError):
    """The workload's network namespace does not exist (any more)."""


class InterfaceExists(OSError):
    """The workload already has an interface of the requested name."""


@dataclass(frozen=True)
class Attachment:
    host_interface: str
    workload_mac: str
    ip_networks: tuple[str, ...]


@dataclass(frozen=True)
class WorkloadState:
    """What a workload's interface holds, as CHECK compares it with ADD's result."""

    addresses: frozenset[str]  # "10.64.0.5/32"
    gateways: frozenset[str]  # gateways of its default routes


def netns_path(netns: str) -> str:
    """A namespace name (as `ip netns` makes them) or a path (as runtimes pass CNI_NETNS)."""
    return netns if "/" in netns else f"{NETNS_DIR}/{netns}"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def inside(netns: str | None) -> Iterator[None]:
    """Run the body with this thread in `netns` (None: where it is); it comes back either way."""
    if netns is None:
        yield
        return
    try:
        target = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceGone(errno.ENOENT, f"network namespace {netns} does not exist") from None
    try:
        with _setns_lock:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    yield
                finally:
                    _setns(home)
            finally:
                os.close(home)
    finally:
        os.close(target)


@contextlib.contextmanager
def netlink(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket inside `netns` (None: the caller's own namespace)."""
    with inside(netns):
        ipr = IPRoute()
    with ipr:
        yield ipr


def _no_dad(netns: str | None, interface: str) -> None:
    """No duplicate address detection on a workload link: the addresses are IPAM's, and DAD
    would hold link-local (so NDP, so the pod's first IPv6 packets) back for a second."""
    with inside(netns), open(f"/proc/sys/net/ipv6/conf/{interface}/accept_dad", "w") as sysctl:
        sysctl.write("0")


def attach_workload(
    workload_netns: str,
    host_interface: str,
    addresses: list[str],
    host_netns: str | None = None,
    mtu: int = 1500,
    ifname: str = WORKLOAD_IFNAME,
) -> Attachment:
    """Join an existing workload network namespace to the host by a veth and give it its addresses.

    host_netns None means the caller's own namespace (a CNI plugin on a real host). On any
    failure nothing is left behind (the veth goes, with both its ends)."""
    networks = [ipaddress.ip_interface(a).ip for a in addresses]
    peer = f"{host_interface[:12]}tmp"
    with netlink(workload_netns) as workload, netlink(host_netns) as host:
        if workload.link_lookup(ifname=ifname):
            raise InterfaceExists(errno.EEXIST, f"the workload already has an interface {ifname}")
        host.link("add", ifname=host_interface, kind="veth", peer=peer)
        try:
            (host_index,) = host.link_lookup(ifname=host_interface)
            (peer_index,) = host.link_lookup(ifname=peer)
            host.link("set", index=host_index, address=HOST_MAC, mtu=mtu)
            _no_dad(host_netns, host_interface)
            with open(netns_path(workload_netns), "rb") as target:
                host.link("set", index=peer_index, net_ns_fd=target.fileno())
            mac = _configure_workload(workload, workload_netns, peer, ifname, networks, mtu)
            host.link("set", index=host_index, state="up")
        except Exception:
            for index in host.link_lookup(ifname=host_interface):
                host.link("del", index=index)
            raise
    prefixes = tuple(str(ipaddress.ip_network(ip)) for ip in networks)
    return Attachment(host_interface, mac, prefixes)


def _configure_workload(workload: IPRoute, netns: str, peer: str, ifname: str, networks: list, mtu: int) -> str:
    (index,) = workload.link_lookup(ifname=peer)
    workload.link("set", index=index, ifname=ifname, mtu=mtu)
    _no_dad(netns, ifname)
    workload.link("set", index=index, state="up")
    lo = workload.link_lookup(ifname="lo")
    if lo:
        workload.link("set", index=lo[0], state="up")
    for ip in networks:
        if ip.version == 4:
            workload.addr("add", index=index, address=str(ip), prefixlen=32)
        else:
            workload.addr("add", index=index, address=str(ip), prefixlen=128, flags=IFA_F_NODAD)
    if any(ip.version == 4 for ip in networks):
        workload.route("add", dst=f"{IPV4_GATEWAY}/32", oif=index, scope=SCOPE_LINK)
        workload.route("add", dst="0.0.0.0/0", gateway=IPV4_GATEWAY, oif=index)
    if any(ip.version == 6 for ip in networks):
        workload.route("add", dst="::/0", gateway=IPV6_GATEWAY, oif=index, family=socket.AF_INET6)
    return workload.get_links(index)[0].get_attr("IFLA_ADDRESS")


def detach_workload(host_interface: str, host_netns: str | None = None) -> bool:
    """Remove the veth (both ends go with it); a missing interface is fine. True if one went."""
    with netlink(host_netns) as host:
        return _delete_links(host, host_interface)


def remove_workload_interface(workload_netns: str, ifname: str) -> bool:
    """Remove the workload's end (the veth goes with it); a missing namespace or interface is
    fine: the kernel removed the veth with the namespace. True if one went."""
    try:
        with netlink(workload_netns) as workload:
            return _delete_links(workload, ifname)
    except NamespaceGone:
        return False


def _delete_links(ipr: IPRoute, name: str) -> bool:
    deleted = False
    for index in ipr.link_lookup(ifname=name):
        try:
            ipr.link("del", index=index)
            deleted = True
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # gone between the lookup and the delete
                raise
    return deleted


def host_interface_exists(host_interface: str, host_netns: str | None = None) -> bool:
    with netlink(host_netns) as host:
        return bool(host.link_lookup(ifname=host_interface))


def workload_state(workload_netns: str, ifname: str) -> WorkloadState | None:
    """The addresses and default gateways of the workload's interface; None if it has none."""
    with netlink(workload_netns) as workload:
        indexes = workload.link_lookup(ifname=ifname)
        if not indexes:
            return None
        (index,) = indexes
        addresses = frozenset(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in workload.get_addr(index=index) if a["scope"] == 0
        )
        gateways = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in workload.get_routes(family=family, oif=index):
                if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY"):
                    gateways.add(route.get_attr("RTA_GATEWAY"))
        return WorkloadState(addresses, frozenset(gateways))
