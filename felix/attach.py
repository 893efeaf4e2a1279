"""The workload recipe of DESIGN.md: what the CNI plugin (or a bare-metal script) does before
writing a WorkloadEndpoint.  Calyx's agent never creates interfaces; this is the reference.

    host netns                          workload netns
    cx<hash> (ee:ee:ee:ee:ee:ee) <----> eth0: 198.19.1.2/32, fd00::2/128
                                        169.254.1.1 dev eth0 scope link
                                        default via 169.254.1.1 dev eth0
                                        default via fe80::1 dev eth0
The host answers for 169.254.1.1 and fe80::1 by proxy ARP/NDP, which the agent turns on."""

import ipaddress
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute

HOST_MAC = "ee:ee:ee:ee:ee:ee"
IPV4_GATEWAY = "169.254.1.1"
IPV6_GATEWAY = "fe80::1"
WORKLOAD_IFNAME = "eth0"
IFA_F_NODAD = 0x02
SCOPE_LINK = 253


@dataclass(frozen=True)
class Attachment:
    host_interface: str
    workload_mac: str
    ip_networks: tuple[str, ...]


def _ipr(netns: str | None) -> IPRoute:
    return IPRoute(netns=netns) if netns else IPRoute()


def attach_workload(
    workload_netns: str, host_interface: str, addresses: list[str], host_netns: str | None = None, mtu: int = 1500
) -> Attachment:
    """Join an existing workload network namespace to the host by a veth and give it its addresses.

    host_netns None means the caller's own namespace (a CNI plugin on a real host)."""
    networks = [ipaddress.ip_interface(a).ip for a in addresses]
    peer = f"{host_interface[:12]}tmp"
    with _ipr(host_netns) as host:
        host.link("add", ifname=host_interface, kind="veth", peer=peer)
        try:
            (host_index,) = host.link_lookup(ifname=host_interface)
            (peer_index,) = host.link_lookup(ifname=peer)
            host.link("set", index=host_index, address=HOST_MAC, mtu=mtu)
            host.link("set", index=peer_index, net_ns_fd=workload_netns)
            with _ipr(workload_netns) as workload:
                mac = _configure_workload(workload, peer, networks, mtu)
            host.link("set", index=host_index, state="up")
        except Exception:
            host.link("del", index=host.link_lookup(ifname=host_interface)[0])
            raise
    prefixes = tuple(str(ipaddress.ip_network(ip)) for ip in networks)
    return Attachment(host_interface, mac, prefixes)


def _configure_workload(workload: IPRoute, peer: str, networks: list, mtu: int) -> str:
    (index,) = workload.link_lookup(ifname=peer)
    workload.link("set", index=index, ifname=WORKLOAD_IFNAME, mtu=mtu, state="up")
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


def detach_workload(host_interface: str, host_netns: str | None = None) -> None:
    """Remove the veth (both ends go with it); a missing interface is fine."""
    with _ipr(host_netns) as host:
        for index in host.link_lookup(ifname=host_interface):
            host.link("del", index=index)
