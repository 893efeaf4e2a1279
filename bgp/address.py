"""Which address this node speaks BGP from, and recording it in the node's Node resource.

In order: the flag, the address already recorded in the Node resource, then the explicit
autodetection method (`interface=<regex>`, `cidr=<cidr>`, `can-reach=<address>`). There is
no fallback to "the first interface found": without one of these, calyx-bgp refuses to start."""

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from policy.datastore.kv import Conflict
from policy.datastore.store import NotFound, ResourceStore, WriteMode
from policy.model.resources import Metadata, Node, NodeBGPSpec

log = logging.getLogger(__name__)
REGISTER_ATTEMPTS = 10


class AddressError(ValueError):
    pass


@dataclass(frozen=True)
class HostView:
    """What autodetection may look at: the host's addresses and the kernel's source choice."""

    addresses: Callable[[], list[tuple[str, str]]]  # (interface, address/prefix-length)
    source_for: Callable[[str], str]


def detect(method: str, version: int, host: HostView) -> str:
    kind, _, argument = method.partition("=")
    candidates = [
        (name, ipaddress.ip_interface(a))
        for name, a in host.addresses()
        if ipaddress.ip_interface(a).version == version
    ]
    if kind == "interface" and argument:
        try:
            pattern = re.compile(argument)
        except re.error as exc:
            raise AddressError(f"autodetection method {method!r}: bad regular expression ({exc})") from None
        found = sorted((name, str(a)) for name, a in candidates if pattern.fullmatch(name))
    elif kind == "cidr" and argument:
        try:
            network = ipaddress.ip_network(argument, strict=False)
        except ValueError as exc:
            raise AddressError(f"autodetection method {method!r}: {exc}") from None
        found = sorted((name, str(a)) for name, a in candidates if a.ip in network)
    elif kind == "can-reach" and argument:
        try:
            source = ipaddress.ip_address(host.source_for(str(ipaddress.ip_address(argument))))
        except (OSError, ValueError) as exc:
            raise AddressError(f"autodetection method {method!r}: {exc}") from None
        found = sorted((name, str(a)) for name, a in candidates if a.ip == source)
    else:
        raise AddressError(
            f"unknown autodetection method {method!r} (use interface=<regex>, cidr=<cidr> or can-reach=<address>)"
        )
    if not found:
        raise AddressError(f"autodetection method {method!r} found no IPv{version} address")
    if len(found) > 1:
        log.info(
            "autodetection %r matched %s; using %s (interface %s)",
            method,
            [a for _, a in found],
            found[0][1],
            found[0][0],
        )
    return found[0][1]


def choose(flag: str | None, recorded: str | None, method: str | None, version: int, host: HostView) -> str | None:
    """The address/prefix-length to register for one family, or None (no BGP in that family)."""
    if flag:
        try:
            chosen = ipaddress.ip_interface(flag)
        except ValueError:
            raise AddressError(f"{flag!r} is not an IPv{version} address") from None
        if chosen.version != version:
            raise AddressError(f"{flag!r} is not an IPv{version} address")
        return str(chosen)
    if recorded:
        return recorded
    if method:
        return detect(method, version, host)
    return None


def register(
    store: ResourceStore,
    node_name: str,
    ipv4_flag: str | None,
    ipv6_flag: str | None,
    ipv4_method: str | None,
    ipv6_method: str | None,
    as_number: int | None,
    host: HostView,
) -> Node:
    """Write this node's BGP addresses (and AS, if given) into its Node resource, by CAS."""
    for _ in range(REGISTER_ATTEMPTS):
        try:
            node = store.get(Node, node_name)
            mode = WriteMode.REPLACE
        except NotFound:
            node, mode = Node(metadata=Metadata(name=node_name)), WriteMode.CREATE
        bgp = node.spec.bgp or NodeBGPSpec()
        ipv4 = choose(ipv4_flag, bgp.ipv4Address, ipv4_method, 4, host)
        ipv6 = choose(ipv6_flag, bgp.ipv6Address, ipv6_method, 6, host)
        if not (ipv4 or ipv6):
            raise AddressError(
                f"no BGP address for node {node_name}: give --ip/--ip6, record one in the Node "
                "resource (spec.bgp.ipv4Address), or choose --ip-autodetection-method"
            )
        wanted = bgp.model_copy(
            update={"ipv4Address": ipv4, "ipv6Address": ipv6, "asNumber": as_number or bgp.asNumber}
        )
        if wanted == node.spec.bgp:
            return node
        updated = node.model_copy(update={"spec": node.spec.model_copy(update={"bgp": wanted})})
        try:
            store.write([updated], mode)
        except Conflict:
            continue  # someone else wrote the Node meanwhile: read it again
        log.info(
            "registered node %s: BGP address %s %s, AS %s",
            node_name,
            ipv4 or "-",
            ipv6 or "-",
            wanted.asNumber or "default",
        )
        return store.get(Node, node_name)
    raise AddressError(f"could not register node {node_name}: the Node resource kept changing")
