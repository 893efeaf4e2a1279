"""The flow log without a kernel: NFLOG messages built as the kernel sends them, parsed; the ring,
the repeat window, the pace that bounds reading, the metrics, /flows and the rule counters."""

import json
import socket
import struct
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from felix.flows import FlowLog, FlowLogSettings, TokenBucket
from felix.health import Status, serve
from felix.nflog import NFULNL_MSG_CONFIG, NFULNL_MSG_PACKET, LoggedPacket, config_message, messages, parse
from felix.rule_counters import RuleCounters


def _attr(kind: int, value: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(value), kind) + value
    return body + b"\0" * (-len(body) % 4)


def nflog_message(prefix: bytes, payload: bytes, indev: int | None = 7, outdev: int | None = 9) -> bytes:
    attrs = _attr(1, struct.pack("!HBB", 0x0800, 2, 0))  # packet header: hook forward
    if indev is not None:
        attrs += _attr(4, struct.pack("!I", indev))
    if outdev is not None:
        attrs += _attr(5, struct.pack("!I", outdev))
    attrs += _attr(9, payload) + _attr(10, prefix + b"\0")
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(20)) + attrs
    return struct.pack("=IHHII", 16 + len(body), NFULNL_MSG_PACKET, 0, 0, 0) + body


def ipv4(protocol: int, source: str, destination: str, transport: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 1, 0, 64, protocol, 0,
                         socket.inet_aton(source), socket.inet_aton(destination))  # fmt: skip
    return header + transport


def ipv6(protocol: int, source: str, destination: str, transport: bytes) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(transport), protocol, 64,
                         socket.inet_pton(socket.AF_INET6, source), socket.inet_pton(socket.AF_INET6, destination))  # fmt: skip
    return header + transport


TCP_SYN = struct.pack("!HHIIBBHHH", 40000, 5432, 1, 0, 0x50, 0x02, 65535, 0, 0)
DENY = b"calyx-rule ingress 0 networkpolicies/shop/db-only"


def test_a_tcp_packet_is_parsed_with_prefix_addresses_ports_and_interfaces():
    packet = parse(nflog_message(DENY, ipv4(6, "10.0.0.1", "10.0.0.2", TCP_SYN)))
    assert packet == LoggedPacket(DENY.decode(), 4, "TCP", "10.0.0.1", "10.0.0.2", 40000, 5432, 7, 9)


def test_ipv6_udp_and_icmp_are_parsed():
    udp = parse(nflog_message(DENY, ipv6(17, "fd00::1", "fd00::2", struct.pack("!HHHH", 53000, 53, 8, 0))))
    assert udp is not None and (udp.version, udp.protocol, udp.source, udp.destination_port) == (
        6,
        "UDP",
        "fd00::1",
        53,
    )
    icmp = parse(nflog_message(DENY, ipv4(1, "10.0.0.1", "10.0.0.2", bytes([8, 0, 0, 0])), outdev=None))
    assert icmp is not None and (icmp.protocol, icmp.source_port, icmp.destination_port) == ("ICMP", None, 8)
    assert icmp.out_interface is None


def test_messages_that_are_not_packets_or_hold_no_ip_are_none():
    assert parse(config_message(20, b"", 1)) is None
    assert parse(nflog_message(DENY, b"")) is None
    assert parse(nflog_message(DENY, b"\x45\x00")) is None  # cut short


def test_a_datagram_of_several_messages_is_split():
    one = nflog_message(DENY, ipv4(6, "10.0.0.1", "10.0.0.2", TCP_SYN))
    two = nflog_message(DENY, ipv4(17, "10.0.0.3", "10.0.0.2", struct.pack("!HHHH", 1, 2, 8, 0)))
    data = one + two
    assert [parse(data, offset).source for offset in messages(data)] == ["10.0.0.1", "10.0.0.3"]


def test_the_bind_request_names_the_group_in_network_order():
    message = config_message(20, b"", 5)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", message)
    assert (length, kind, flags & 5, seq) == (len(message), NFULNL_MSG_CONFIG, 5, 5)
    assert struct.unpack_from("!H", message, 18)[0] == 20


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _packet(source="10.0.0.1", port=5432, prefix=DENY.decode()) -> LoggedPacket:  # noqa: B008
    return LoggedPacket(prefix, 4, "TCP", source, "10.0.0.2", 40000, port, 7, 9)


def _flow_log(clock, **settings):
    registry = CollectorRegistry()
    names = {7: "eth0", 9: "cx0123456789a"}
    log = FlowLog("n1", registry, FlowLogSettings(**settings), clock, lambda: 1.7e9, names.get)
    return log, registry


def _sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0


def test_a_denied_packet_is_a_record_naming_policy_and_rule_and_counted():
    clock = Clock()
    log, registry = _flow_log(clock)
    log.packet(_packet())
    (record,) = log.since(0, 10)["flows"]
    assert record == {
        "seq": 1, "time": 1.7e9, "node": "n1", "verdict": "deny", "direction": "ingress", "reason": "rule",
        "policy": "networkpolicies/shop/db-only", "rule": 0, "protocol": "TCP", "source": "10.0.0.1",
        "sourcePort": 40000, "destination": "10.0.0.2", "destinationPort": 5432, "inInterface": "eth0",
        "outInterface": "cx0123456789a",
    }  # fmt: skip
    labels = {"direction": "ingress", "policy": "networkpolicies/shop/db-only", "rule": "0"}
    assert _sample(registry, "calyx_felix_denied_flows_total", **labels) == 1
    assert _sample(registry, "calyx_felix_denied_packets_total", **labels) == 1


def test_repeats_within_the_window_are_counted_not_recorded():
    clock = Clock()
    log, registry = _flow_log(clock, repeat_window=10.0)
    for _ in range(3):  # a SYN and its retransmissions
        log.packet(_packet())
        clock.now += 1
    clock.now += 10
    log.packet(_packet())  # the window is over: a new flow
    assert [r["seq"] for r in log.since(0, 10)["flows"]] == [1, 2]
    labels = {"direction": "ingress", "policy": "networkpolicies/shop/db-only", "rule": "0"}
    assert _sample(registry, "calyx_felix_denied_packets_total", **labels) == 4
    assert _sample(registry, "calyx_felix_denied_flows_total", **labels) == 2


def test_the_ring_and_the_recent_table_are_bounded():
    clock = Clock()
    log, _ = _flow_log(clock, capacity=5)
    for port in range(1, 21):
        log.packet(_packet(port=port))
    flows = log.since(0, 100)["flows"]
    assert [r["destinationPort"] for r in flows] == [16, 17, 18, 19, 20]
    assert len(log._recent) == 5


def test_since_pages_through_the_records_and_survives_a_restarted_felix():
    clock = Clock()
    log, _ = _flow_log(clock)
    for port in range(1, 6):
        log.packet(_packet(port=port))
    first = log.since(0, 2)
    assert [r["seq"] for r in first["flows"]] == [1, 2] and first["next"] == 2 and first["last"] == 5
    assert [r["seq"] for r in log.since(first["next"], 10)["flows"]] == [3, 4, 5]
    assert log.since(5, 10) == {"node": "n1", "started": 1.7e9, "last": 5, "next": 5, "flows": []}
    assert log.since(99, 10)["next"] == 5  # a client ahead of this felix (it restarted) goes back to its last


def test_a_prefix_that_is_not_ours_is_counted_and_not_recorded():
    clock = Clock()
    log, registry = _flow_log(clock)
    log.packet(_packet(prefix="ulogd something"))
    assert log.since(0, 10)["flows"] == []
    assert _sample(registry, "calyx_felix_flow_log_dropped_total", reason="foreign") == 1


def test_the_reader_is_paced_to_the_rate_after_its_burst():
    clock = Clock()
    bucket = TokenBucket(rate=100.0, burst=10, clock=clock)
    for _ in range(10):
        bucket.take()
    assert bucket.wait() == 0.0
    for _ in range(5):
        bucket.take()
    assert abs(bucket.wait() - 0.05) < 1e-9  # 5 packets over: 50 ms at 100 per second
    clock.now += 0.05
    bucket.take()
    assert abs(bucket.wait() - 0.01) < 1e-9
    clock.now += 100
    bucket.take()
    assert bucket.wait() == 0.0  # tokens never pile up beyond the burst


def test_flows_are_served_by_the_health_server_and_bad_queries_are_400():
    clock = Clock()
    log, registry = _flow_log(clock)
    log.packet(_packet())
    server = serve("127.0.0.1", 0, Status(), lambda: (True, {}), registry, log)
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/flows?since=0", timeout=5) as answer:
            body = json.load(answer)
        assert [r["policy"] for r in body["flows"]] == ["networkpolicies/shop/db-only"]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/flows?since=x", timeout=5)
            raise AssertionError("since=x was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"calyx_felix_denied_flows_total" in answer.read()
    finally:
        server.shutdown()
        server.server_close()


def test_rule_counters_are_summed_per_policy_rule():
    read = [
        ("calyx-rule ingress 0 networkpolicies/shop/web", 3, 180),
        ("calyx-rule ingress 0 networkpolicies/shop/web", 2, 120),  # the IPv6 half of the same rule
        ("calyx-rule egress - tier/default", 1, 60),
        ("someone else's comment", 99, 99),
    ]
    registry = CollectorRegistry()
    registry.register(RuleCounters(lambda: read))
    web = {"direction": "ingress", "policy": "networkpolicies/shop/web", "rule": "0"}
    assert _sample(registry, "calyx_felix_policy_rule_packets_total", **web) == 5
    assert _sample(registry, "calyx_felix_policy_rule_bytes_total", **web) == 300
    tier = {"direction": "egress", "policy": "tier/default", "rule": ""}
    assert _sample(registry, "calyx_felix_policy_rule_packets_total", **tier) == 1


def test_a_counter_read_that_fails_leaves_the_other_metrics():
    def broken():
        raise RuntimeError("nft is gone")

    registry = CollectorRegistry()
    registry.register(RuleCounters(broken))
    assert b"calyx_felix_policy_rule_packets" in generate_latest(registry)
