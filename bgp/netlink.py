"""The kernel seam of calyx-bgp, on pyroute2: learned routes (`proto 77`), IPAM block
blackholes (`proto 76`), and the host's addresses for BGP address autodetection.

Nothing else in the kernel is touched: a learned route is only ever created where no route
exists (a foreign one is reported, never replaced) and only routes of ours are changed."""

import errno
import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

LEARNED_PROTO = 77
BLOCK_PROTO = 76
MAIN_TABLE = 254
RTN_UNICAST, RTN_BLACKHOLE = 1, 6


class KernelError(Exception):
    def __init__(self, prefix: str, code: int, action: str):
        self.prefix, self.code = prefix, code
        reason = (
            "a route Calyx does not own exists there" if code == errno.EEXIST else errno.errorcode.get(code, str(code))
        )
        super().__init__(f"{action} {prefix}: {reason}")


def _prefix(msg, family: int) -> str:
    dst = msg.get_attr("RTA_DST") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    return str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}"))


def _nexthops(msg) -> frozenset[str]:
    gateway = msg.get_attr("RTA_GATEWAY")
    if gateway:
        return frozenset([gateway])
    return frozenset(
        hop.get_attr("RTA_GATEWAY") for hop in msg.get_attr("RTA_MULTIPATH") or () if hop.get_attr("RTA_GATEWAY")
    )


class NetlinkRoutes:
    def __init__(self) -> None:
        self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def read(self) -> tuple[dict[str, frozenset[str]], set[str]]:
        """(learned routes: prefix -> next hops, blackholed blocks) now in the main table."""
        learned: dict[str, frozenset[str]] = {}
        blackholes: set[str] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self._ipr.get_routes(family=family, table=MAIN_TABLE):
                if msg["proto"] == LEARNED_PROTO and msg["type"] == RTN_UNICAST:
                    learned[_prefix(msg, family)] = _nexthops(msg)
                elif msg["proto"] == BLOCK_PROTO and msg["type"] == RTN_BLACKHOLE:
                    blackholes.add(_prefix(msg, family))
        return learned, blackholes

    def set_learned(self, prefix: str, nexthops: frozenset[str], ours_already: bool) -> None:
        hops = sorted(nexthops)
        spec = {"dst": prefix, "table": MAIN_TABLE, "proto": LEARNED_PROTO, "type": "unicast"}
        if len(hops) == 1:
            spec["gateway"] = hops[0]
        else:
            spec["multipath"] = [{"gateway": hop} for hop in hops]
        self._call("replace" if ours_already else "add", prefix, spec, "install")

    def delete_learned(self, prefix: str) -> None:
        self._call(
            "del", prefix, {"dst": prefix, "table": MAIN_TABLE, "proto": LEARNED_PROTO}, "remove", missing_ok=True
        )

    def add_blackhole(self, prefix: str) -> None:
        self._call(
            "add", prefix, {"dst": prefix, "table": MAIN_TABLE, "proto": BLOCK_PROTO, "type": "blackhole"}, "blackhole"
        )

    def delete_blackhole(self, prefix: str) -> None:
        self._call(
            "del",
            prefix,
            {"dst": prefix, "table": MAIN_TABLE, "proto": BLOCK_PROTO, "type": "blackhole"},
            "remove blackhole",
            missing_ok=True,
        )

    def _call(self, command: str, prefix: str, spec: dict, action: str, missing_ok: bool = False) -> None:
        spec["family"] = socket.AF_INET6 if ":" in prefix else socket.AF_INET
        try:
            self._ipr.route(command, **spec)
        except NetlinkError as exc:
            if missing_ok and exc.code == errno.ESRCH:
                return
            raise KernelError(prefix, exc.code, action) from None

    def host_addresses(self) -> list[tuple[str, str]]:
        """(interface, address/prefix-length) of every global address on this host."""
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        found = []
        for msg in self._ipr.get_addr():
            if msg["scope"] != 0:  # link-local and host addresses cannot carry BGP
                continue
            found.append((names.get(msg["index"], "?"), f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
        return found

    @staticmethod
    def source_for(destination: str) -> str:
        """The address the kernel would send from to reach destination (no packet is sent)."""
        family = socket.AF_INET6 if ":" in destination else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 179))
            return probe.getsockname()[0]
