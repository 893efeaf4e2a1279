"""The hand-packed netlink route messages against pyroute2's encoder, byte for byte, and the
dump parser against messages shaped as the kernel sends them."""

import socket

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from felix.kernel import WORKLOAD_ROUTE_PROTO, KernelRoute
from felix.route_batch import RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE, dump_request, encode_route, parse_route


def pyroute2_message(msg_type: int, route: KernelRoute, seq: int) -> bytes:
    address, _, length = route.dst.partition("/")
    v6 = ":" in address
    msg = rtmsg()
    msg["family"] = socket.AF_INET6 if v6 else socket.AF_INET
    msg["dst_len"] = int(length)
    msg["table"] = 254
    msg["proto"] = WORKLOAD_ROUTE_PROTO
    msg["scope"] = 0 if v6 else 253
    msg["type"] = 1
    msg["attrs"] = [("RTA_DST", address), ("RTA_OIF", route.ifindex)]
    flags = NLM_F_REQUEST | NLM_F_ACK
    if msg_type == RTM_NEWROUTE:
        flags |= NLM_F_CREATE | NLM_F_EXCL
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


ROUTES = [
    KernelRoute("198.19.1.7/32", 12),
    KernelRoute("10.64.0.0/26", 70000),
    KernelRoute("fd00:1::7/128", 5),
    KernelRoute("2001:db8::/64", 2**31),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("msg_type", [RTM_NEWROUTE, RTM_DELROUTE])
def test_route_messages_are_the_bytes_pyroute2_encodes(msg_type, route):
    assert encode_route(msg_type, route, 4711) == pyroute2_message(msg_type, route, 4711)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_dump_request_is_the_bytes_pyroute2_encodes(family):
    msg = rtmsg()
    msg["family"] = family
    msg["table"] = 254
    msg["proto"] = WORKLOAD_ROUTE_PROTO
    msg["header"]["type"] = RTM_GETROUTE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    msg["header"]["sequence_number"] = 9
    msg.encode()
    assert dump_request(family, 9) == bytes(msg.data)


def kernel_message(family: int, dst: str | None, dst_len: int, oif: int | None, kind: int = 1, proto: int = 76):
    """A route as the kernel reports it: the table attribute first, then what the route has."""
    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["table"], msg["proto"], msg["type"] = family, dst_len, 254, proto, kind
    attrs = [("RTA_TABLE", 254)]
    if dst is not None:
        attrs.append(("RTA_DST", dst))
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    msg["attrs"] = attrs + [("RTA_PRIORITY", 1024)]
    msg["header"]["type"] = RTM_NEWROUTE
    msg.encode()
    return bytes(msg.data)


def test_dumped_routes_of_ours_are_parsed_in_canonical_text():
    assert parse_route(kernel_message(socket.AF_INET, "198.19.1.7", 32, 12)) == KernelRoute("198.19.1.7/32", 12)
    assert parse_route(kernel_message(socket.AF_INET6, "fd00:0:0::7", 128, 5)) == KernelRoute("fd00::7/128", 5)
    assert parse_route(kernel_message(socket.AF_INET, None, 0, 3)) == KernelRoute("0.0.0.0/0", 3)


def test_blackholes_other_protocols_and_routes_without_an_interface_are_not_ours():
    assert parse_route(kernel_message(socket.AF_INET, "10.64.0.0", 26, None, kind=6)) is None  # blackhole
    assert parse_route(kernel_message(socket.AF_INET, "10.64.0.0", 26, 4, proto=77)) is None  # BGP's
    assert parse_route(kernel_message(socket.AF_INET, "10.64.0.0", 26, None)) is None
