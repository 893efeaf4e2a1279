"""calyx-cni: ADD, DEL, CHECK, STATUS and GC for one attachment (CNI_CONTAINERID, CNI_IFNAME).

ADD allocates through the IPAM plugin, builds the veth (felix/attach.py's recipe), writes the
WorkloadEndpoint and returns only when felix has programmed it; on any failure or timeout it
undoes what it did, in reverse, and fails: a pod never starts with traffic its policy has not
seen (the runtime retries). DEL is idempotent and never guesses: etcd out of reach is an error."""

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from felix.attach import HOST_MAC, IPV4_GATEWAY, IPV6_GATEWAY, InterfaceExists, NamespaceGone
from felix.cni.config import NetConf
from felix.cni.dataplane import Dataplane
from felix.cni.delegate import Delegate
from felix.cni.identity import NETWORK_ANNOTATION, Workload
from felix.cni.node import datastore_error, node_name
from felix.cni.protocol import (
    CHECK_FAILED,
    INTERNAL,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    NOT_AVAILABLE,
    CniError,
    Interface,
    IPConfig,
    Request,
    Result,
    Route,
)
from felix.cni.readiness import Fetch, felix_status, wait_programmed
from policy.datastore.kv import KV, KVError
from policy.datastore.store import NotFound, Ref, ResourceStore, WriteMode
from policy.model.resources import EndpointPort, Metadata, WorkloadEndpoint, WorkloadEndpointSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodInfo:
    """What the orchestrator knows of a workload beyond CNI's arguments."""

    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[EndpointPort, ...] = ()
    service_account: str | None = None


def _no_pod_info(conf: NetConf, workload: Workload) -> PodInfo:
    return PodInfo(labels=conf.labels())


@dataclass
class Services:
    """Every seam the plugin talks through (real ones in felix/cni/main.py, fakes in tests)."""

    dataplane: Dataplane
    delegate: Delegate
    open_kv: Callable[[NetConf], KV]
    fetch_status: Fetch
    pod_info: Callable[[NetConf, Workload], PodInfo] = _no_pod_info


class _Phases:
    """Where an ADD's time went, for its log line (the benchmark's profile)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.spent: list[str] = []

    def mark(self, what: str) -> None:
        now = time.perf_counter()
        self.spent.append(f"{what} {(now - self.last) * 1000:.0f}")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.spent)


def _host_address(address: str) -> str:
    """What a workload holds: the single address, whatever prefix the IPAM plugin gave it."""
    ip = ipaddress.ip_interface(address).ip
    return f"{ip}/{ip.max_prefixlen}"


class CniPlugin:
    def __init__(self, services: Services):
        self.services = services

    def run(self, request: Request, conf: NetConf, stdin: bytes) -> dict | None:
        handler = {"ADD": self.add, "DEL": self.delete, "CHECK": self.check, "STATUS": self.status, "GC": self.gc}
        return handler[request.command](request, conf, stdin)

    def _ipam_type(self, conf: NetConf) -> str:
        if conf.ipam is None:
            raise CniError(
                INVALID_CONFIG, "invalid network configuration: ipam is missing", 'e.g. "ipam": {"type": "calyx-ipam"}'
            )
        return conf.ipam.type

    # -- ADD ------------------------------------------------------------------------------
    def add(self, request: Request, conf: NetConf, stdin: bytes) -> dict:
        started = time.perf_counter()
        ipam_type = self._ipam_type(conf)
        node, workload = node_name(conf), Workload.of(request, conf)
        prev = conf.prev_result()
        kv = self.services.open_kv(conf)
        undo: list[tuple[str, Callable[[], object]]] = []
        phases = _Phases()
        try:
            info = self.services.pod_info(conf, workload)
            undo.append(
                ("release the addresses", lambda: self.services.delegate(ipam_type, "DEL", request.environ, stdin))
            )
            allocated = Result.from_json(
                self.services.delegate(ipam_type, "ADD", request.environ, stdin) or {},
                what=f"the result of IPAM plugin {ipam_type}",
            )
            phases.mark("IPAM")
            addresses = sorted({_host_address(ip.address) for ip in allocated.ips}, key=lambda a: ":" in a)
            if not addresses:
                raise CniError(INTERNAL, f"IPAM plugin {ipam_type} returned no address")
            host_interface = workload.host_interface
            if self.services.dataplane.remove_host_interface(host_interface):
                log.info("removed a stale %s (an earlier sandbox of %s)", host_interface, workload.workload)
            undo.append(("remove the veth", lambda: self.services.dataplane.remove_host_interface(host_interface)))
            try:
                attachment = self.services.dataplane.attach(
                    request.netns, host_interface, addresses, conf.mtu, request.ifname
                )
            except NamespaceGone:
                raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {request.netns} does not exist") from None
            except InterfaceExists:
                raise CniError(
                    INVALID_ENVIRONMENT, f"the container already has an interface {request.ifname} (CNI_IFNAME)"
                ) from None
            phases.mark("veth")
            endpoint = self._endpoint(conf, node, workload, info, host_interface, attachment.workload_mac, addresses)
            store = ResourceStore(kv, conf.etcd_prefix)
            revision = store.write([endpoint], WriteMode.APPLY)
            phases.mark("endpoint")
            undo.append(
                ("delete the endpoint", lambda: self._delete_endpoint_if_ours(store, endpoint, request.container_id))
            )
            wait_programmed(
                conf.felix_health_url, revision, conf.policy_setup_timeout_seconds, self.services.fetch_status
            )
            phases.mark("felix")
        except KVError as exc:
            self._undo(undo)
            raise datastore_error(exc, conf, "adding the workload") from None
        except BaseException:
            self._undo(undo)
            raise
        finally:
            kv.close()
        log.info(
            "ADD %s %s/%s: %s on %s, felix programmed revision %d (ADD %.0f ms: %s)",
            request.container_id[:12],
            workload.namespace,
            workload.workload,
            ", ".join(addresses),
            host_interface,
            revision,
            (time.perf_counter() - started) * 1000,
            phases,
        )
        return self._result(conf, request, prev, allocated, host_interface, attachment.workload_mac, addresses)

    @staticmethod
    def _undo(steps: list[tuple[str, Callable[[], object]]]) -> None:
        for what, step in reversed(steps):
            try:
                step()
            except Exception as exc:  # the rest must still be tried; DEL or GC finishes the job
                log.error("ADD failed, and could not %s: %s", what, exc)

    def _endpoint(
        self,
        conf: NetConf,
        node: str,
        workload: Workload,
        info: PodInfo,
        interface: str,
        mac: str,
        addresses: list[str],
    ) -> WorkloadEndpoint:
        try:
            return WorkloadEndpoint(
                metadata=Metadata(
                    name=workload.endpoint_name(node),
                    namespace=workload.namespace,
                    labels=info.labels,
                    annotations={NETWORK_ANNOTATION: conf.name},
                ),
                spec=WorkloadEndpointSpec(
                    node=node,
                    interfaceName=interface,
                    orchestrator=workload.orchestrator,
                    workload=workload.pod or workload.workload,
                    pod=workload.pod if workload.orchestrator == "k8s" else None,
                    containerID=workload.container_id,
                    endpoint=workload.ifname,
                    mac=mac,
                    ipNetworks=addresses,
                    ports=list(info.ports),
                    serviceAccountName=info.service_account,
                ),
            )
        except ValueError as exc:  # pydantic's ValidationError: a label, a name, a namespace
            raise CniError(INVALID_CONFIG, f"cannot make a WorkloadEndpoint for {workload.workload}: {exc}") from None

    def _result(
        self,
        conf: NetConf,
        request: Request,
        prev: Result | None,
        allocated: Result,
        host_interface: str,
        mac: str,
        addresses: list[str],
    ) -> dict:
        result = prev or Result()
        first = len(result.interfaces)
        result.interfaces += [Interface(host_interface, HOST_MAC), Interface(request.ifname, mac, request.netns)]
        result.ips += [IPConfig(a, interface=first + 1) for a in addresses]
        if any(":" not in a for a in addresses):
            result.routes.append(Route("0.0.0.0/0", IPV4_GATEWAY))
        if any(":" in a for a in addresses):
            result.routes.append(Route("::/0", IPV6_GATEWAY))
        result.dns = {**allocated.dns, **result.dns, **conf.dns.result_json()}
        return result.to_json(conf.cniVersion)

    # -- DEL ------------------------------------------------------------------------------
    def delete(self, request: Request, conf: NetConf, stdin: bytes) -> None:
        node, workload = node_name(conf), Workload.of(request, conf)
        kv = self.services.open_kv(conf)
        try:
            store = ResourceStore(kv, conf.etcd_prefix)
            endpoint = self._get_endpoint(store, workload, node)
            ours = endpoint is None or endpoint.spec.containerID in (None, request.container_id)
            if endpoint is not None and ours:
                self._delete_endpoint_if_ours(store, endpoint, request.container_id)
            elif endpoint is not None:
                log.info(
                    "DEL %s: endpoint %s belongs to container %s now: kept",
                    request.container_id[:12],
                    endpoint.name,
                    endpoint.spec.containerID,
                )
            if request.netns:
                self.services.dataplane.remove_workload_interface(request.netns, request.ifname)
            if ours:
                self.services.dataplane.remove_host_interface(workload.host_interface)
            if conf.ipam is not None:
                self.services.delegate(conf.ipam.type, "DEL", request.environ, stdin)
        except KVError as exc:
            raise datastore_error(exc, conf, "deleting the workload") from None
        finally:
            kv.close()
        log.info("DEL %s %s/%s done", request.container_id[:12], workload.namespace, workload.workload)
        return None

    @staticmethod
    def _get_endpoint(store: ResourceStore, workload: Workload, node: str) -> WorkloadEndpoint | None:
        try:
            return store.get(WorkloadEndpoint, workload.endpoint_name(node), workload.namespace)
        except NotFound:
            return None

    @staticmethod
    def _delete_endpoint_if_ours(store: ResourceStore, endpoint: WorkloadEndpoint, container_id: str) -> None:
        """Delete the endpoint unless a newer sandbox has replaced it (compare-and-delete)."""
        try:
            current = store.get(WorkloadEndpoint, endpoint.name, endpoint.namespace)
        except NotFound:
            return
        if current.spec.containerID not in (None, container_id):
            return
        try:
            store.delete([Ref(WorkloadEndpoint, current.name, current.namespace, current.metadata.resourceVersion)])
        except NotFound:
            pass

    # -- CHECK ----------------------------------------------------------------------------
    def check(self, request: Request, conf: NetConf, stdin: bytes) -> None:
        prev = conf.prev_result()
        if prev is None:
            raise CniError(INVALID_CONFIG, "CHECK needs prevResult (the result of ADD)")
        node, workload = node_name(conf), Workload.of(request, conf)
        expected = {_host_address(ip.address) for ip in prev.ips if self._ours(prev, ip, request)}
        kv = self.services.open_kv(conf)
        try:
            endpoint = self._get_endpoint(ResourceStore(kv, conf.etcd_prefix), workload, node)
        except KVError as exc:
            raise datastore_error(exc, conf, "checking the workload") from None
        finally:
            kv.close()
        where = f"{workload.namespace}/{workload.endpoint_name(node)}"
        if endpoint is None or endpoint.spec.containerID != request.container_id:
            raise CniError(CHECK_FAILED, f"WorkloadEndpoint {where} is missing (or belongs to another container)")
        if missing := expected - set(endpoint.spec.ipNetworks):
            raise CniError(CHECK_FAILED, f"WorkloadEndpoint {where} lacks {', '.join(sorted(missing))}")
        if not self.services.dataplane.host_interface_exists(workload.host_interface):
            raise CniError(CHECK_FAILED, f"host interface {workload.host_interface} is missing")
        try:
            state = self.services.dataplane.workload_state(request.netns, request.ifname)
        except NamespaceGone:
            raise CniError(CHECK_FAILED, f"CNI_NETNS {request.netns} does not exist") from None
        if state is None:
            raise CniError(CHECK_FAILED, f"the container has no interface {request.ifname}")
        if missing := expected - state.addresses:
            raise CniError(CHECK_FAILED, f"{request.ifname} in the container lacks {', '.join(sorted(missing))}")
        gateways = {IPV4_GATEWAY} if any(":" not in a for a in expected) else set()
        gateways |= {IPV6_GATEWAY} if any(":" in a for a in expected) else set()
        if missing := gateways - state.gateways:
            raise CniError(CHECK_FAILED, f"the container has no default route via {', '.join(sorted(missing))}")
        revision = int(endpoint.metadata.resourceVersion or 0)
        status = felix_status(conf.felix_health_url, self.services.fetch_status)
        if status["programmedRevision"] < revision:
            raise CniError(CHECK_FAILED, f"felix has not programmed revision {revision} of {where} yet")
        if conf.ipam is not None:
            self.services.delegate(conf.ipam.type, "CHECK", request.environ, stdin)
        return None

    @staticmethod
    def _ours(prev: Result, ip: IPConfig, request: Request) -> bool:
        """IPs of our container interface in prevResult (all of them when it names no interface)."""
        if ip.interface is None or ip.interface >= len(prev.interfaces):
            return True
        interface = prev.interfaces[ip.interface]
        return interface.name == request.ifname and interface.sandbox in ("", request.netns)

    # -- STATUS and GC --------------------------------------------------------------------
    def status(self, request: Request, conf: NetConf, stdin: bytes) -> None:
        kv = self.services.open_kv(conf)
        try:
            kv.get(f"{conf.etcd_prefix.rstrip('/')}/v1/")
        except KVError as exc:
            raise CniError(NOT_AVAILABLE, datastore_error(exc, conf, "checking status").msg) from None
        finally:
            kv.close()
        status = felix_status(conf.felix_health_url, self.services.fetch_status)
        if not status.get("inSync"):
            raise CniError(NOT_AVAILABLE, f"felix at {conf.felix_health_url} is not in sync with etcd yet", str(status))
        if conf.ipam is not None:
            self.services.delegate(conf.ipam.type, "STATUS", request.environ, stdin)
        return None

    def gc(self, request: Request, conf: NetConf, stdin: bytes) -> None:
        if conf.valid_attachments is None:
            raise CniError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments (an empty list if none is valid)")
        valid = {(a.containerID, a.ifname) for a in conf.valid_attachments}
        node = node_name(conf)
        failures = []
        if conf.ipam is not None:  # first, while the endpoints still show calyx-ipam whose handles these are
            try:
                self.services.delegate(conf.ipam.type, "GC", request.environ, stdin)
            except CniError as exc:
                failures.append(exc.msg)
        kv = self.services.open_kv(conf)
        try:
            store = ResourceStore(kv, conf.etcd_prefix)
            for endpoint in store.list_kind(WorkloadEndpoint)[0]:
                if endpoint.spec.node != node or endpoint.metadata.annotations.get(NETWORK_ANNOTATION) != conf.name:
                    continue
                if (endpoint.spec.containerID, endpoint.spec.endpoint) in valid:
                    continue
                try:
                    self._delete_endpoint_if_ours(store, endpoint, endpoint.spec.containerID or "")
                    self.services.dataplane.remove_host_interface(endpoint.spec.interfaceName)
                    log.info(
                        "GC: removed endpoint %s/%s of container %s",
                        endpoint.namespace,
                        endpoint.name,
                        endpoint.spec.containerID,
                    )
                except (KVError, OSError) as exc:
                    failures.append(f"{endpoint.namespace}/{endpoint.name}: {exc}")
        except KVError as exc:
            raise datastore_error(exc, conf, "collecting stale endpoints") from None
        finally:
            kv.close()
        if failures:
            raise CniError(INTERNAL, f"GC could not remove everything: {'; '.join(failures)}")
        return None
