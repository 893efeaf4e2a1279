"""Per-rule packet counters as Prometheus metrics (felix --policy-counters): read from the kernel
on each scrape of /metrics, summed per policy rule (one policy rule can be several nft rules)."""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from policy.compiler.observe import parse_origin

log = logging.getLogger(__name__)

ReadCounters = Callable[[], list[tuple[str, int, int]]]  # -> (comment, packets, bytes)


class RuleCounters(Collector):
    def __init__(self, read: ReadCounters):
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["direction", "policy", "rule"]
        packets = CounterMetricFamily("calyx_felix_policy_rule_packets", "packets a policy rule decided", labels=labels)
        octets = CounterMetricFamily("calyx_felix_policy_rule_bytes", "bytes of those packets", labels=labels)
        sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        try:
            found = self._read()
        except Exception as exc:  # a scrape must answer: without these, but with everything else
            log.warning("cannot read rule counters: %s", exc)
            found = []
        for comment, count, size in found:
            origin = parse_origin(comment)
            if origin is None:
                continue
            total = sums[(origin.direction, origin.origin, "" if origin.rule is None else str(origin.rule))]
            total[0] += count
            total[1] += size
        for key, (count, size) in sorted(sums.items()):
            packets.add_metric(list(key), count)
            octets.add_metric(list(key), size)
        yield packets
        yield octets
