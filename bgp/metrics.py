"""calyx-bgp's Prometheus metrics, in a registry of their own (tests run several daemons)."""

from prometheus_client import CollectorRegistry, Counter, Gauge


class BgpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.session_up = Gauge(
            "calyx_bgp_session_up", "1 while the session is established", ["peer", "name"], registry=r
        )
        self.prefixes_received = Gauge("calyx_bgp_prefixes_received", "prefixes held from a peer", ["peer"], registry=r)
        self.prefixes_announced = Gauge("calyx_bgp_prefixes_announced", "prefixes this node announces", registry=r)
        self.routes_installed = Gauge(
            "calyx_bgp_routes_installed", "learned routes in the kernel (proto 77)", registry=r
        )
        self.stale_routes = Gauge("calyx_bgp_stale_routes", "routes kept through a peer's graceful restart", registry=r)
        self.blackholes = Gauge(
            "calyx_bgp_block_blackholes", "IPAM blocks of this node blackholed (proto 76)", registry=r
        )
        self.exabgp_running = Gauge(
            "calyx_bgp_exabgp_running", "1 while ExaBGP runs and its API is connected", registry=r
        )
        self.exabgp_restarts = Counter(
            "calyx_bgp_exabgp_restarts", "ExaBGP processes started after the first", registry=r
        )
        self.exabgp_reloads = Counter(
            "calyx_bgp_exabgp_reloads", "configuration reloads for peers added or removed", registry=r
        )
        self.command_errors = Counter(
            "calyx_bgp_command_errors", "ExaBGP API commands refused or unanswered", registry=r
        )
        self.route_errors = Counter("calyx_bgp_route_errors", "kernel route writes refused", registry=r)
        self.bad_resources = Counter(
            "calyx_bgp_bad_resources", "invalid entries found in etcd and skipped", ["kind"], registry=r
        )
        self.unexpected_errors = Counter(
            "calyx_bgp_unexpected_errors", "errors caught by the loop's boundary and retried", ["stage"], registry=r
        )
        self.resyncs = Counter("calyx_bgp_etcd_resyncs", "re-lists of etcd", ["reason"], registry=r)
