"""The only module that talks NFLOG: the packets nftables' `log group N` hands to user space,
read from a NETLINK_NETFILTER socket in the nfnetlink_log protocol (pyroute2 has no NFLOG).

The kernel copies the first COPY_RANGE bytes of each logged packet with its log prefix and
interfaces; `parse` turns one netlink message into a `LoggedPacket`. A full socket buffer makes
the kernel drop messages (ENOBUFS here): counted as lost, never waited for, so a flood of denied
packets costs felix at most one bounded buffer of reading."""

import errno
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = NFNL_SUBSYS_ULOG << 8
NFULNL_MSG_CONFIG = NFNL_SUBSYS_ULOG << 8 | 1
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH = 1, 2, 4, 5
NFULNL_CFG_CMD_BIND, NFULNL_COPY_PACKET = 1, 2
NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV, NFULA_PAYLOAD, NFULA_PREFIX = 4, 5, 9, 10
COPY_RANGE = 96  # IPv6 header (40) and more than any transport header we read
RECEIVE_BUFFER = 256 * 1024
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_ATTR = struct.Struct("=HH")
_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PORTED = {6, 17, 132}


@dataclass(frozen=True)
class LoggedPacket:
    prefix: str
    version: int
    protocol: str  # TCP, UDP, SCTP, ICMP, ICMPv6, or the number
    source: str
    destination: str
    source_port: int | None
    destination_port: int | None  # for ICMP: the type
    in_interface: int | None  # ifindex
    out_interface: int | None


def _attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found = {}
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > end:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _packet(payload: bytes) -> tuple[int, int, str, str, bytes] | None:
    """(version, protocol number, source, destination, transport bytes) of an IP packet."""
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        start = (payload[0] & 0xF) * 4
        src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
        return 4, payload[9], src, dst, payload[start:]
    if version == 6 and len(payload) >= 40:
        src, dst = str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
        return 6, payload[6], src, dst, payload[40:]  # extension headers: their number is shown
    return None


def parse(data: bytes, offset: int = 0) -> LoggedPacket | None:
    """One NFULNL_MSG_PACKET message at offset; None for another message or an unreadable packet."""
    length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
    if kind != NFULNL_MSG_PACKET or length < _HEADER.size + 4:
        return None
    attrs = _attributes(data, offset + _HEADER.size + 4, offset + length)  # past nfgenmsg
    ip = _packet(attrs.get(NFULA_PAYLOAD, b""))
    if ip is None:
        return None
    version, number, source, destination, transport = ip
    sport = dport = None
    if number in _PORTED and len(transport) >= 4:
        sport, dport = struct.unpack_from("!HH", transport)
    elif number in (1, 58) and transport:
        dport = transport[0]

    def ifindex(kind: int) -> int | None:
        value = attrs.get(kind)
        return struct.unpack("!I", value)[0] if value and len(value) == 4 else None

    return LoggedPacket(
        attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace"),
        version,
        _PROTOCOLS.get(number, str(number)),
        source,
        destination,
        sport,
        dport,
        ifindex(NFULA_IFINDEX_INDEV),
        ifindex(NFULA_IFINDEX_OUTDEV),
    )


def messages(data: bytes) -> Iterator[int]:
    """The offsets of the netlink messages in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length = _HEADER.unpack_from(data, offset)[0]
        if length < _HEADER.size:
            return
        yield offset
        offset += (length + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    body = _ATTR.pack(_ATTR.size + len(value), kind) + value
    return body + b"\0" * (-len(body) % 4)


def config_message(group: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    return _HEADER.pack(_HEADER.size + len(body), NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


class NflogSocket:
    """A socket bound to one nflog group, copying packets, each message sent at once."""

    def __init__(self, group: int):
        self.group = group
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind((0, 0))
            self._request(_attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1)
            mode = struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)
            self._request(
                _attr(NFULA_CFG_MODE, mode)
                + _attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
                + _attr(NFULA_CFG_TIMEOUT, struct.pack("!I", 1)),
                2,
            )
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(0.5)

    def _request(self, attrs: bytes, seq: int) -> None:
        self._sock.send(config_message(self.group, attrs, seq))
        reply = self._sock.recv(4096)
        length, kind, _, _, _ = _HEADER.unpack_from(reply)
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", reply, _HEADER.size)[0]
            if code:
                raise OSError(code, f"nflog group {self.group}: {errno.errorcode.get(code, code)}")

    def receive(self) -> bytes | None:
        """One datagram; None after the timeout. OSError(ENOBUFS) when the kernel dropped some."""
        try:
            return self._sock.recv(65536)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._sock.close()


def read_group(
    group: int,
    on_packet: Callable[[LoggedPacket], None],
    on_lost: Callable[[], None],
    stop: threading.Event,
    pace: Callable[[], float] = lambda: 0.0,
    retry: float = 5.0,
) -> None:
    """Hand every logged packet of the group to on_packet until stop, waiting as long as pace
    says after each datagram; a group felix cannot bind (another reader holds it) is logged and
    tried again, the flow log is lost meanwhile, felix runs."""
    while not stop.is_set():
        try:
            sock = NflogSocket(group)
        except OSError as exc:
            log.error("cannot read nflog group %d, no flow log until it can: %s", group, exc)
            stop.wait(retry)
            continue
        try:
            while not stop.is_set():
                try:
                    data = sock.receive()
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    on_lost()
                    continue
                for offset in messages(data or b""):
                    packet = parse(data or b"", offset)
                    if packet is not None:
                        on_packet(packet)
                wait = pace()
                if wait:
                    stop.wait(wait)
        except OSError as exc:
            log.error("reading nflog group %d failed, reopening: %s", group, exc)
        finally:
            sock.close()
