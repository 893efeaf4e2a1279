"""The agent's Prometheus metrics, in a registry of their own (tests make several agents)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.in_sync = Gauge("calyx_felix_in_sync", "1 once the first full list from etcd is programmed", registry=r)
        self.programmed_revision = Gauge(
            "calyx_felix_programmed_revision", "etcd revision fully programmed", registry=r
        )
        self.endpoints = Gauge("calyx_felix_local_endpoints", "workload endpoints on this node", registry=r)
        self.routes = Gauge("calyx_felix_routes", "workload routes programmed", registry=r)
        self.route_writes = Counter("calyx_felix_route_writes", "route adds and deletes", ["op"], registry=r)
        self.route_errors = Counter("calyx_felix_route_errors", "route writes the kernel refused", registry=r)
        self.bad_resources = Counter(
            "calyx_felix_bad_resources", "invalid entries found in etcd and skipped", ["kind"], registry=r
        )
        self.unexpected_errors = Counter(
            "calyx_felix_unexpected_errors", "errors caught by the loop's boundary and retried", ["stage"], registry=r
        )
        self.resyncs = Counter("calyx_felix_etcd_resyncs", "re-lists of etcd", ["reason"], registry=r)
        self.etcd_changes = Counter(
            "calyx_felix_etcd_changes", "keys received from etcd's lists and watch (the watch traffic)", registry=r
        )
        self.ip_conflicts = Gauge(
            "calyx_felix_ip_conflicts", "networks claimed by more than one local endpoint", registry=r
        )
        self.apply_seconds = Histogram(
            "calyx_felix_apply_seconds",
            "time to program one batch of changes",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.policy_errors = Counter("calyx_felix_policy_errors", "nftables transactions that failed", registry=r)
        self.broken_policies = Gauge(
            "calyx_felix_broken_policies", "policies compiled as drop-all (fail closed)", registry=r
        )
        self.policy_commands = Counter("calyx_felix_nft_commands", "nftables commands sent", registry=r)
        self.policy_apply_seconds = Histogram(
            "calyx_felix_policy_apply_seconds",
            "time to program one nftables transaction",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
