"""The lab: a fabric router namespace joining the controller (this process), etcd and N nodes.

    ctl (this process) --+
    etcd --------------- fabric --- node1 (felix) --- workloads (own namespaces)
                           +------- node2 (felix) --- workloads
Addresses are lab-local: infrastructure 198.18.0.0/16, workloads 198.19.<node>.<n>/32 and
fd00:19:<node>::<n>/128, each node's workload range statically routed by the fabric."""

import json
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from felix.attach import attach_workload, detach_workload
from policy.datastore.etcd import EtcdKV, EtcdSettings
from policy.datastore.store import ResourceStore
from policy.model.kinds import DEFAULT_NAMESPACE
from policy.model.names import host_interface_name
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from tests.lab import netns
from tests.lab.certs import make_certificates
from tests.lab.processes import Daemon, wait_for

ETCD_LINK = 200
CTL_LINK = 0


def ctl_namespace() -> str:
    """The namespace this process lives in while it drives labs (made once per process)."""
    return _CTL["name"]


_CTL: dict = {}


def enter_controller_namespace(tag: str = "cxctl") -> str:
    if not _CTL:
        name = f"{tag}-{secrets.token_hex(3)}"
        netns.add(name)
        netns.enter(name)
        _CTL["name"] = name
    return _CTL["name"]


def leave_controller_namespace() -> None:
    if _CTL:
        netns.run("ip", "netns", "del", _CTL.pop("name"), check=False)


@dataclass
class Workload:
    node: str
    name: str
    netns: str
    ip: str
    ipv6: str
    interface: str
    namespace: str = DEFAULT_NAMESPACE

    def endpoint(
        self, node_name: str | None = None, networks: list[str] | None = None, labels=None
    ) -> WorkloadEndpoint:
        return WorkloadEndpoint(
            metadata=Metadata(name=self.name, namespace=self.namespace, labels=labels or {"app": self.name}),
            spec=WorkloadEndpointSpec(
                node=node_name or self.node,
                interfaceName=self.interface,
                orchestrator="lab",
                workload=self.name,
                ipNetworks=networks or [f"{self.ip}/32", f"{self.ipv6}/128"],
            ),
        )


@dataclass
class Node:
    name: str
    index: int
    netns: str
    address: str
    felix: Daemon | None = None
    workloads: list[Workload] = field(default_factory=list)


class Lab:
    def __init__(self, nodes: int = 2, felix_args: tuple[str, ...] = (), lab_id: str | None = None, tls: bool = False):
        self.id = lab_id or secrets.token_hex(3)
        self.dir = Path(tempfile.mkdtemp(prefix=f"calyx-lab-{self.id}-"))
        self.namespaces: list[str] = []
        self.daemons: list[Daemon] = []
        self.node_count, self.felix_args = nodes, felix_args
        self.nodes: dict[str, Node] = {}
        self.etcd: Daemon | None = None
        self.fabric = self._ns("fabric")
        self.etcd_ns = self._ns("etcd")
        self.tls = make_certificates(self.dir) if tls else None
        self.etcd_url = f"{'https' if tls else 'http'}://198.18.{ETCD_LINK}.2:2379"
        self.prefix = "/calyx"
        self._kv: EtcdKV | None = None

    def _ns(self, role: str) -> str:
        return f"cx{self.id}-{role}"

    # -- building -------------------------------------------------------------------------
    def build(self) -> None:
        enter_controller_namespace()
        self._add_ns(self.fabric)
        netns.in_ns(self.fabric, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self._link(ctl_namespace(), CTL_LINK, own=True)
        netns.run("ip", "route", "replace", "198.18.0.0/15", "via", f"198.18.{CTL_LINK}.1")
        self._add_ns(self.etcd_ns)
        self._link(self.etcd_ns, ETCD_LINK)
        self.start_etcd()
        for i in range(1, self.node_count + 1):
            self._add_node(i)

    def _add_node(self, i: int) -> None:
        """A node on its own link, its workload range statically routed by the fabric."""
        name = f"node{i}"
        ns = self._ns(name)
        self._add_ns(ns)
        self._link(ns, i)
        netns.in_ns(self.fabric, "ip", "route", "add", f"198.19.{i}.0/24", "via", f"198.18.{i}.2")
        netns.in_ns(self.fabric, "ip", "-6", "route", "add", f"fd00:19:{i}::/64", "via", f"fd00:18:{i}::2")
        self.nodes[name] = Node(name, i, ns, f"198.18.{i}.2")

    def add_fabric_host(self, index: int) -> str:
        """A namespace on its own fabric link, 198.18.<index>.2 and fd00:18:<index>::2: an address
        outside every workload range (a NetworkSet's range, a destination beyond the pools)."""
        ns = self._ns(f"host{index}")
        self._add_ns(ns)
        self._link(ns, index)
        return ns

    def _add_ns(self, ns: str) -> None:
        netns.add(ns)
        self.namespaces.append(ns)

    def _link(self, ns: str, index: int, own: bool = False) -> None:
        """A veth from the fabric to ns: 198.18.<index>.1/.2 and fd00:18:<index>::1/::2."""
        here, there = f"f{index}", "fabric0" if not own else f"lab{self.id}"
        netns.in_ns(self.fabric, "ip", "link", "add", "name", here, "type", "veth", "peer", "name", there, "netns", ns)
        netns.in_ns(self.fabric, "ip", "addr", "add", f"198.18.{index}.1/24", "dev", here)
        netns.in_ns(self.fabric, "ip", "-6", "addr", "add", f"fd00:18:{index}::1/64", "dev", here, "nodad")
        netns.in_ns(self.fabric, "ip", "link", "set", here, "up")
        netns.in_ns(ns, "ip", "addr", "add", f"198.18.{index}.2/24", "dev", there)
        netns.in_ns(ns, "ip", "-6", "addr", "add", f"fd00:18:{index}::2/64", "dev", there, "nodad")
        netns.in_ns(ns, "ip", "link", "set", there, "up")
        if not own:
            netns.in_ns(ns, "ip", "route", "add", "default", "via", f"198.18.{index}.1")
            netns.in_ns(ns, "ip", "-6", "route", "add", "default", "via", f"fd00:18:{index}::1")

    # -- etcd -----------------------------------------------------------------------------
    def start_etcd(self, local_only: bool = False) -> None:
        """local_only: listen on the etcd namespace's loopback alone, out of every node's reach."""
        data = self.dir / "etcd-data"
        local = "https://127.0.0.1:2379" if self.tls else "http://127.0.0.1:2379"
        cmd = [
            "ip",
            "netns",
            "exec",
            self.etcd_ns,
            shutil.which("etcd") or "etcd",
            "--name",
            "lab",
            "--data-dir",
            str(data),
            "--listen-client-urls",
            local if local_only else f"{self.etcd_url},{local}",
            "--advertise-client-urls",
            self.etcd_url,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lab=http://127.0.0.1:2380",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        if self.tls:
            cmd += [
                "--cert-file",
                self.tls["server_cert"],
                "--key-file",
                self.tls["server_key"],
                "--client-cert-auth",
                "--trusted-ca-file",
                self.tls["ca"],
            ]
        self.etcd = self._daemon("etcd", cmd)
        wait_for(
            lambda: (
                "is healthy"
                in netns.in_ns(
                    self.etcd_ns, "etcdctl", *self._etcdctl_flags(), "endpoint", "health", check=False
                ).stderr
            ),
            timeout=20,
            what="etcd to answer",
        )

    def restart_etcd(self, local_only: bool = False) -> None:
        self.etcd.kill9()
        self.daemons.remove(self.etcd)
        self.start_etcd(local_only)

    def _etcdctl_flags(self) -> list[str]:
        if not self.tls:
            return ["--endpoints", "http://127.0.0.1:2379"]
        return [
            "--endpoints",
            "https://127.0.0.1:2379",
            "--cacert",
            self.tls["ca"],
            "--cert",
            self.tls["client_cert"],
            "--key",
            self.tls["client_key"],
        ]

    def etcdctl(self, *args: str) -> str:
        return netns.in_ns(self.etcd_ns, "etcdctl", *self._etcdctl_flags(), *args).stdout

    def etcd_flags(self) -> list[str]:
        """Command-line flags that let a Calyx command reach this lab's etcd."""
        flags = ["--etcd-endpoints", self.etcd_url, "--etcd-prefix", self.prefix]
        if self.tls:
            flags += [
                "--etcd-ca-cert-file",
                self.tls["ca"],
                "--etcd-cert-file",
                self.tls["client_cert"],
                "--etcd-key-file",
                self.tls["client_key"],
            ]
        return flags

    @property
    def kv(self) -> EtcdKV:
        if self._kv is None:
            tls = self.tls or {}
            self._kv = EtcdKV(
                EtcdSettings(
                    endpoints=(self.etcd_url,),
                    timeout=3,
                    ca_cert_file=tls.get("ca"),
                    cert_file=tls.get("client_cert"),
                    key_file=tls.get("client_key"),
                )
            )
        return self._kv

    @property
    def store(self) -> ResourceStore:
        return ResourceStore(self.kv, self.prefix)

    # -- felix ----------------------------------------------------------------------------
    def start_felix(self, node: str, *extra: str) -> Daemon:
        n = self.nodes[node]
        cmd = [
            "ip",
            "netns",
            "exec",
            n.netns,
            sys.executable,
            "-m",
            "felix.main",
            "--node-name",
            node,
            *self.etcd_flags(),
            "--run-dir",
            str(self.dir / node / "felix"),  # nodes share the host's filesystem: each its own
            "--nodename-file",
            str(self.nodename_file(node)),
            *self.felix_args,
            *extra,
        ]
        n.felix = self._daemon(f"felix-{node}", cmd)
        return n.felix

    def nodename_file(self, node: str) -> Path:
        """Where the node's felix records its name (the host's /var/lib/calyx is not the lab's)."""
        return self.dir / node / "nodename"

    def stop_felix(self, node: str) -> None:
        daemon = self.nodes[node].felix
        if daemon:
            daemon.stop()
            self.daemons.remove(daemon)
            self.nodes[node].felix = None

    def felix_status(self, node: str) -> dict:
        url = f"http://{self.nodes[node].address}:9099/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def wait_programmed(self, node: str, revision: int, timeout: float = 10) -> dict:
        return wait_for(
            lambda: (s := self.felix_status(node))["programmedRevision"] >= revision and s,
            timeout=timeout,
            what=f"felix on {node} to program revision {revision}",
        )

    def _daemon(self, name: str, cmd: list[str]) -> Daemon:
        daemon = Daemon(name, cmd, self.dir / f"{name}.log").start()
        self.daemons.append(daemon)
        return daemon

    # -- workloads ------------------------------------------------------------------------
    def add_workload(
        self,
        node: str,
        name: str,
        namespace: str = DEFAULT_NAMESPACE,
        attach: bool = True,
        addresses: tuple[str, str] | None = None,
    ) -> Workload:
        """A workload namespace with the given (IPv4, IPv6) addresses or the next free ones of
        its node; attach=False plans it only."""
        n = self.nodes[node]
        k = len(n.workloads) + 1
        ns = self._ns(f"{node}-{name}" if namespace == DEFAULT_NAMESPACE else f"{node}-{namespace}-{name}")
        self._add_ns(ns)
        interface = host_interface_name(namespace, name)
        ip, ipv6 = addresses or (f"198.19.{n.index}.{k}", f"fd00:19:{n.index}::{k}")
        workload = Workload(node, name, ns, ip, ipv6, interface, namespace)
        n.workloads.append(workload)
        if attach:
            self.attach(workload)
        return workload

    def attach(self, workload: Workload) -> None:
        attach_workload(
            workload.netns, workload.interface, [workload.ip, workload.ipv6], host_netns=self.nodes[workload.node].netns
        )

    def remove_workload_interface(self, workload: Workload) -> None:
        detach_workload(workload.interface, host_netns=self.nodes[workload.node].netns)

    def workloads(self) -> list[Workload]:
        return [w for n in self.nodes.values() for w in n.workloads]

    def kernel_routes(self, node: str) -> set[tuple[str, str]]:
        """(destination, device) of every proto-76 workload route on a node (blackholes are IPAM's)."""
        routes = set()
        for family in ("-4", "-6"):
            out = netns.run("ip", "-n", self.nodes[node].netns, "-j", family, "route", "show", "proto", "76").stdout
            for r in json.loads(out or "[]"):
                if "dev" not in r:
                    continue
                dst = r["dst"] if "/" in r["dst"] else r["dst"] + ("/128" if ":" in r["dst"] else "/32")
                routes.add((dst, r.get("dev", "")))
        return routes

    # -- teardown -------------------------------------------------------------------------
    def destroy(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop(grace=3)
        self.daemons.clear()
        if self._kv is not None:
            self._kv.close()
            self._kv = None
        # Namespaces die asynchronously: drop our end of the controller link now, so the next
        # lab finds this namespace clean.
        netns.run("ip", "link", "del", f"lab{self.id}", check=False)
        for ns in reversed(self.namespaces):
            netns.remove(ns)
        self.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {d.name} ---\n{d.log_tail()}" for d in self.daemons)
