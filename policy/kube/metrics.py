"""calyx-kube-controllers' Prometheus metrics, in a registry of their own (tests run several)."""

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.synced = Gauge("calyx_kube_synced", "1 once every kind and etcd are listed", registry=r)
        self.objects = Gauge("calyx_kube_objects", "Kubernetes objects held, per kind", ["kind"], registry=r)
        self.watch_events = Counter(
            "calyx_kube_watch_events",
            "Kubernetes changes taken (after a list, the difference)",
            ["kind"],
            registry=r,
        )
        self.relists = Counter(
            "calyx_kube_relists", "lists after a watch expired (410) or broke", ["kind", "reason"], registry=r
        )
        self.bad_objects = Counter(
            "calyx_kube_bad_objects", "Kubernetes objects that could not be converted", ["kind"], registry=r
        )
        self.bad_resources = Counter(
            "calyx_kube_bad_resources", "invalid entries found in etcd and skipped", ["kind"], registry=r
        )
        self.writes = Counter("calyx_kube_writes", "etcd writes, per kind and operation", ["kind", "op"], registry=r)
        self.conflicts = Counter(
            "calyx_kube_write_conflicts", "writes refused by compare-and-swap (re-read and retried)", registry=r
        )
        self.full_reconciles = Counter("calyx_kube_full_reconciles", "periodic reconciles of every key", registry=r)
        self.events_posted = Counter("calyx_kube_events_posted", "Kubernetes Events reported", registry=r)
        self.events_dropped = Counter(
            "calyx_kube_events_dropped", "Kubernetes Events not reported (queue full or API refused)", registry=r
        )
        self.pending_node_releases = Gauge(
            "calyx_kube_pending_node_releases", "deleted nodes waiting for their grace period", registry=r
        )
        self.released_addresses = Counter(
            "calyx_kube_released_addresses", "IPAM addresses released after their node was deleted", registry=r
        )
        self.compactions = Counter("calyx_kube_compactions", "etcd compactions", registry=r)
        self.unexpected_errors = Counter(
            "calyx_kube_unexpected_errors", "errors caught by the loop's boundary and retried", ["stage"], registry=r
        )
