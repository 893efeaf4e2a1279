"""The flow log of denied flows: packets from the nflog group (felix/nflog.py) become flow records
naming the policy and rule that dropped them, counted per policy and rule in Prometheus and kept
in a bounded ring that /flows serves.

Bounded in both ways a flood could hurt. Time: the reader takes at most `rate` packets a second
(burst `burst`) and then waits (`pace`), so the kernel drops what overflows its socket buffer
(counted as lost) and felix's CPU stays bounded. Memory: a packet of a flow recorded in the last
`repeat_window` seconds (a retransmitted SYN) is counted, not recorded again; the ring keeps the
last `capacity` records, the table of recent flows at most as many keys."""

import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from felix.nflog import LoggedPacket
from policy.compiler.observe import parse_origin

FlowKey = tuple  # (origin, direction, protocol, source, destination, destination port)


@dataclass(frozen=True)
class FlowLogSettings:
    capacity: int = 10_000
    rate: float = 1000.0  # packets read per second, sustained
    burst: int = 1000
    repeat_window: float = 10.0


class TokenBucket:
    """`take` always succeeds and may run into debt; `wait` says how long until it is paid."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]):
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate) - 1
        self._at = now

    def wait(self) -> float:
        return max(0.0, -self._tokens / self._rate)


class FlowMetrics:
    def __init__(self, registry: CollectorRegistry):
        labels = ["direction", "policy", "rule"]
        self.flows = Counter(
            "calyx_felix_denied_flows", "denied flows (new in their repeat window), per policy and rule", labels,
            registry=registry,
        )  # fmt: skip
        self.packets = Counter(
            "calyx_felix_denied_packets", "denied packets logged, per policy and rule", labels, registry=registry
        )
        self.dropped = Counter(
            "calyx_felix_flow_log_dropped",
            "logged packets not read: the kernel's buffer was full (lost, once per overrun), not ours (foreign)",
            ["reason"],
            registry=registry,
        )


class FlowLog:
    """Written by the nflog reader thread, read by HTTP threads: one lock around small work."""

    def __init__(
        self,
        node: str,
        registry: CollectorRegistry,
        settings: FlowLogSettings = FlowLogSettings(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        interface_name: Callable[[int], str | None] = lambda index: _if_name(index),
    ):
        self.node, self.settings = node, settings
        self._clock, self._wall, self._interface_name = clock, wall, interface_name
        self._metrics = FlowMetrics(registry)
        self._bucket = TokenBucket(settings.rate, settings.burst, clock)
        self._ring: deque[dict] = deque(maxlen=settings.capacity)
        self._recent: OrderedDict[FlowKey, float] = OrderedDict()
        self._seq = 0
        self._started = round(wall(), 3)  # a restarted felix numbers from 1 again: a reader sees this change
        self._lock = threading.Lock()

    def packet(self, packet: LoggedPacket) -> None:
        self._bucket.take()
        origin = parse_origin(packet.prefix)
        if origin is None:
            self._metrics.dropped.labels("foreign").inc()
            return
        rule = "" if origin.rule is None else str(origin.rule)
        self._metrics.packets.labels(origin.direction, origin.origin, rule).inc()
        key = (origin, packet.protocol, packet.source, packet.destination, packet.destination_port)
        now = self._clock()
        with self._lock:
            seen = self._recent.get(key)
            if seen is not None and now - seen < self.settings.repeat_window:
                return
            self._recent[key] = now
            self._recent.move_to_end(key)
            while len(self._recent) > self.settings.capacity:
                self._recent.popitem(last=False)
            self._metrics.flows.labels(origin.direction, origin.origin, rule).inc()
            self._seq += 1
            self._ring.append(
                {
                    "seq": self._seq,
                    "time": round(self._wall(), 3),
                    "node": self.node,
                    "verdict": "deny",
                    "direction": origin.direction,
                    "reason": origin.reason,
                    "policy": origin.origin,
                    "rule": origin.rule,
                    "protocol": packet.protocol,
                    "source": packet.source,
                    "sourcePort": packet.source_port,
                    "destination": packet.destination,
                    "destinationPort": packet.destination_port,
                    "inInterface": self._name(packet.in_interface),
                    "outInterface": self._name(packet.out_interface),
                }
            )

    def lost(self) -> None:
        self._metrics.dropped.labels("lost").inc()

    def pace(self) -> float:
        """Seconds the reader waits before its next packet: over the rate, the kernel drops."""
        return self._bucket.wait()

    def since(self, seq: int, limit: int) -> dict:
        """The records after seq (oldest first, at most limit), and where to ask from next."""
        with self._lock:
            records = [r for r in self._ring if r["seq"] > seq][:limit]
            last = self._seq
        following = records[-1]["seq"] if records else min(max(seq, 0), last)  # a restarted felix: from its last
        return {"node": self.node, "started": self._started, "last": last, "next": following, "flows": records}

    def _name(self, index: int | None) -> str | None:
        return None if index is None else self._interface_name(index) or str(index)


def _if_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None
