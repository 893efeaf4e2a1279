"""A cluster converging on a burst: N nodes (felix and calyx-bgp each, a BIRD reflector, one
etcd) in network namespaces; a burst of endpoints written as a CNI plugin per node would write
them (IPAM addresses, then the WorkloadEndpoint), as fast as etcd takes them; then the time
until every node has programmed the burst (felix: routes and the policy's set, up to the last
write's revision) and learned every other node's blocks (calyx-bgp: proto-77 routes).

Shared by tests/bench/bench_cluster_converge.py (20 nodes) and the 5-node integration test.
Blocks are /27 and /123 (32 addresses), so that every burst of 50 per node claims new blocks
and gives BGP new routes to carry."""

import concurrent.futures
import contextlib
import ipaddress
import json
import threading
import time
from dataclasses import dataclass

from policy.datastore.ipam import IPAM, IPAMError
from policy.datastore.keys import ipam_block_key, ipam_handle_key
from policy.datastore.kv import Unavailable, Write
from policy.datastore.store import MAX_TXN_OPS, Ref, WriteMode
from policy.datastore.watch import Change
from policy.model.documents import parse_resource
from policy.model.names import host_interface_name
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from tests.lab import netns
from tests.lab.bgp_lab import POOL4, POOL6, BgpLab
from tests.lab.interfaces import add_interfaces, remove_interfaces
from tests.lab.metrics import metric
from tests.lab.processes import rss_kib, wait_for, with_descendants

BURST_LABEL = "burst"
POLICY = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "GlobalNetworkPolicy",
    "metadata": {"name": "burst-peers"},
    "spec": {
        "selector": f"has({BURST_LABEL})",
        "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": f"has({BURST_LABEL})"}}],
    },
}


@dataclass
class Burst:
    """One burst's figures: seconds from the last write until the last node converged."""

    endpoints: int
    write_seconds: float
    converge_seconds: float
    etcd_seconds: float  # the same last write seen by a bare etcd watch: the pipeline's floor
    node_seconds: dict[str, float]
    felix_changes: dict[str, int]  # keys each felix received from etcd during the burst
    watch_changes: int  # keys the bare watch received


class ConvergeCluster:
    def __init__(self, nodes: int, per_node: int, timeout: float = 120):
        self.lab = BgpLab(nodes=nodes, reflector=True, pool_block_sizes=(27, 123))
        self.per_node, self.timeout = per_node, timeout
        self.bursts = 0
        self.clear_writes_seconds = 0.0  # the last clear's deletes, before its convergence

    # -- building ---------------------------------------------------------------------------
    def build(self) -> None:
        lab = self.lab
        lab.build()
        lab.store.write([parse_resource(POLICY)], WriteMode.CREATE)
        for node in lab.nodes:
            lab.start_bgp(node)
            lab.start_felix(node)
        sessions = 2 * len(lab.nodes)
        wait_for(
            lambda: lab.bird_established() == sessions,
            timeout=self.timeout,
            what=lambda: lab.birdc("show", "protocols"),
        )
        wait_for(
            lambda: all(lab.felix_status(n).get("inSync") for n in lab.nodes) and all(map(lab.bgp_ready, lab.nodes)),
            timeout=self.timeout,
            what="felix and calyx-bgp ready on every node",
        )

    def destroy(self) -> None:
        """Every daemon told to stop at once (one by one, 41 of them took a minute), the nodes'
        interfaces removed meanwhile, then the lab's own teardown (each daemon waited for)."""
        for daemon in self.lab.daemons:
            daemon.terminate()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(remove_interfaces, [node.netns for node in self.lab.nodes.values()]))
        self.lab.destroy()

    # -- one burst ----------------------------------------------------------------------------
    def burst(self) -> Burst:
        """Interfaces first (a runtime makes the veth before the endpoint), then the writes."""
        lab, k = self.lab, self.bursts
        self.bursts += 1
        names = {node: [f"b{k}-{node}-{j}" for j in range(self.per_node)] for node in lab.nodes}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            jobs = [
                (lab.nodes[n].netns, [host_interface_name("burst", pod) for pod in pods]) for n, pods in names.items()
            ]
            list(pool.map(lambda job: add_interfaces(*job), jobs))
        before = {node: self.felix_changes(node) for node in lab.nodes}
        watcher = _LastRevisionWatch(lab)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            revisions = list(pool.map(lambda item: self._write_node(*item), names.items()))
        written = time.perf_counter()
        last = max(revisions)
        blocks = IPAM(lab.kv, lab.prefix).blocks()
        node_seconds = self._wait_converged(last, blocks, written)
        etcd_seconds = watcher.seen_at(last, self.timeout) - written
        return Burst(
            endpoints=sum(map(len, names.values())),
            write_seconds=written - started,
            converge_seconds=max(node_seconds.values()),
            etcd_seconds=etcd_seconds,
            node_seconds=node_seconds,
            felix_changes={node: self.felix_changes(node) - before[node] for node in lab.nodes},
            watch_changes=watcher.stop(),
        )

    def clear(self) -> float:
        """Remove the burst (endpoints, their addresses, and the blocks left empty, as IPAM's
        garbage collection of empty blocks would), so that every burst lands on the same cluster
        and claims blocks BGP must carry anew; seconds until every node converged on it.

        Not measured, so done in few transactions: a release per endpoint made every daemon
        handle a thousand more etcd events, half a minute per burst on this machine."""
        lab, started = self.lab, time.perf_counter()
        endpoints = [ep for ep in lab.store.list_kind(WorkloadEndpoint)[0] if ep.namespace == "burst"]
        refs = [Ref(WorkloadEndpoint, ep.name, ep.namespace) for ep in endpoints]
        for start in range(0, len(refs), MAX_TXN_OPS):
            lab.store.delete(refs[start : start + MAX_TXN_OPS])
        handles = {f"burst.{ep.name}" for ep in endpoints}
        writes = [Write(ipam_handle_key(lab.prefix, handle), None) for handle in sorted(handles)]
        ipam = IPAM(lab.kv, lab.prefix)
        for block in ipam.blocks():
            kept = {offset: h for offset, h in block.allocations.items() if h not in handles}
            if len(kept) < len(block.allocations):
                block.allocations = kept
                value = block.encode() if kept else None
                writes.append(Write(ipam_block_key(lab.prefix, block.cidr), value, block.revision))
        revision = lab.kv.prefix_state(lab.prefix + "/")[1]
        for start in range(0, len(writes), MAX_TXN_OPS):
            revision = lab.kv.commit(writes[start : start + MAX_TXN_OPS])
        since = time.perf_counter()
        self.clear_writes_seconds = since - started
        return max(self._wait_converged(revision, ipam.blocks(), since).values())

    def _write_node(self, node: str, pods: list[str]) -> int:
        revision = 0
        for pod in pods:
            revision = self._write_pod(node, pod)
        return revision

    def _write_pod(self, node: str, pod: str, attempts: int = 5) -> int:
        """As a runtime does with a CNI plugin's "try again later": a pod whose writes etcd did not
        answer in time (a saturated machine) is released and written again, a few times."""
        ipam, handle = IPAM(self.lab.kv, self.lab.prefix), f"burst.{pod}"
        for _ in range(attempts - 1):
            try:
                return self._try_write_pod(ipam, node, pod, handle)
            except Unavailable:
                time.sleep(1)
                with contextlib.suppress(IPAMError, Unavailable):
                    ipam.release_handle(handle)
        return self._try_write_pod(ipam, node, pod, handle)

    def _try_write_pod(self, ipam: IPAM, node: str, pod: str, handle: str) -> int:
        addresses = [ipam.allocate(node, handle, pool=POOL4), ipam.allocate(node, handle, pool=POOL6)]
        endpoint = WorkloadEndpoint(
            metadata=Metadata(name=pod, namespace="burst", labels={BURST_LABEL: str(self.bursts)}),
            spec=WorkloadEndpointSpec(
                node=node,
                interfaceName=host_interface_name("burst", pod),
                orchestrator="k8s",
                workload=pod,
                ipNetworks=[f"{addresses[0]}/32", f"{addresses[1]}/128"],
            ),
        )
        return self.lab.store.write([endpoint], WriteMode.APPLY)  # APPLY: a retry may find it written

    def _wait_converged(self, revision: int, blocks, since: float) -> dict[str, float]:
        """Seconds after `since` at which each node had programmed `revision` and held a learned
        route for every block another node has."""
        remote = {node: sum(1 for b in blocks if b.affinity and b.affinity != node) for node in self.lab.nodes}
        done: dict[str, float] = {}
        deadline = time.monotonic() + self.timeout
        with concurrent.futures.ThreadPoolExecutor(min(32, 2 * len(remote))) as pool:
            while len(done) < len(remote) and time.monotonic() < deadline:
                waiting = [node for node in remote if node not in done]
                checks = pool.map(lambda node: self._converged(node, revision, remote[node]), waiting)
                now = time.perf_counter()
                done.update({node: now - since for node, ok in zip(waiting, checks, strict=True) if ok})
                time.sleep(0.02)
        if len(done) < len(remote):
            missing = sorted(set(remote) - set(done))
            raise TimeoutError(f"not converged after {self.timeout}s: {', '.join(missing)}")
        return done

    def _converged(self, node: str, revision: int, remote_blocks: int) -> bool:
        try:
            programmed = self.lab.felix_status(node).get("programmedRevision", 0) >= revision
            return programmed and self.bgp_routes(node) >= remote_blocks
        except OSError:
            return False

    # -- what the daemons report ----------------------------------------------------------------
    def _metric(self, node: str, port: int, name: str) -> float:
        return metric(f"http://{self.lab.nodes[node].address}:{port}/metrics", name)

    def bgp_routes(self, node: str) -> int:
        return int(self._metric(node, 9098, "calyx_bgp_routes_installed"))

    def felix_changes(self, node: str) -> int:
        return int(self._metric(node, 9099, "calyx_felix_etcd_changes_total"))

    def check_routes(self) -> list[str]:
        """Every endpoint's addresses routed on every other node by a learned route (proto 77):
        the kernel's own answer, not the daemons' reports. Returns what is missing."""
        endpoints = self.lab.store.list_kind(WorkloadEndpoint)[0]
        networks = [(ep.spec.node, ipaddress.ip_network(n)) for ep in endpoints for n in ep.spec.ipNetworks]
        missing = []
        for node in self.lab.nodes:
            learned = {ipaddress.ip_network(prefix) for prefix in self.lab.learned_routes(node)}
            lengths = {(p.version, p.prefixlen) for p in learned}
            for owner, network in networks:
                if owner != node and not _covered(network, learned, lengths):
                    missing.append(f"{node}: {network}")
        return missing

    def check_sets(self) -> list[str]:
        """Every node's nftables holds a selector set with every burst endpoint's address of each
        family (the policy's source set). Returns the nodes and families where none does."""
        endpoints = self.lab.store.list_kind(WorkloadEndpoint)[0]
        wanted = {4: set(), 6: set()}
        for ep in endpoints:
            for network in ep.spec.ipNetworks:
                address = ipaddress.ip_network(network).network_address
                wanted[address.version].add(str(address))

        def listed(ns: str) -> str:
            return netns.in_ns(ns, "nft", "-j", "list", "table", "inet", "calyx", timeout=60).stdout

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            tables = dict(
                zip(self.lab.nodes, pool.map(listed, [n.netns for n in self.lab.nodes.values()]), strict=True)
            )
        missing = []
        for name, out in tables.items():
            sets = [item["set"] for item in json.loads(out)["nftables"] if "set" in item]
            held = [_hosts(found) for found in sets if found["name"].startswith("sel")]
            for family, addresses in wanted.items():
                if not any(addresses <= elements for elements in held):
                    missing.append(f"{name}: IPv{family}")
        return missing

    def memory_kib(self) -> dict[str, int]:
        """RSS of every process of the cluster (daemons and their children: ExaBGP), by role."""
        totals: dict[str, int] = {}
        for daemon in self.lab.daemons:
            role = daemon.name.split("-node")[0]  # felix-node3 -> felix, calyx-bgp-node3 -> calyx-bgp
            for pid in with_descendants(daemon.pid):
                with contextlib.suppress(OSError, RuntimeError):  # gone, or a zombie
                    totals[role] = totals.get(role, 0) + rss_kib(pid)
        return totals


def _hosts(found: dict) -> set[str]:
    """The host addresses of an nft -j set (ranges and prefixes are dicts)."""
    return {element for element in found.get("elem", []) if isinstance(element, str)}


def _covered(network, learned: set, lengths: set[tuple[int, int]]) -> bool:
    """Whether a prefix of `learned` (whose (version, length) pairs are `lengths`) holds network:
    one set lookup per prefix length, not a comparison with every learned route."""
    return any(
        network.supernet(new_prefix=length) in learned
        for version, length in lengths
        if version == network.version and length <= network.prefixlen
    )


class _LastRevisionWatch:
    """A bare etcd watch on the lab's prefix in this process: when etcd delivered each revision."""

    def __init__(self, lab: BgpLab):
        self._stop, self._seen, self._changes = threading.Event(), {}, 0
        self._cond = threading.Condition()
        start = lab.kv.prefix_state(lab.prefix + "/")[1] + 1
        self._thread = threading.Thread(target=self._run, args=(lab, start), daemon=True)
        self._thread.start()

    def _run(self, lab: BgpLab, start: int) -> None:
        """Resumed from the last revision seen when a loaded etcd breaks the stream (bounded)."""
        changes: list[Change]
        for _ in range(20):
            try:
                for changes, revision in lab.kv.watch(lab.prefix + "/", start, self._stop):
                    with self._cond:
                        self._changes += len(changes)
                        self._seen[revision] = time.perf_counter()
                        start = revision + 1
                        self._cond.notify_all()
                return
            except Unavailable:
                self._stop.wait(0.5)

    def seen_at(self, revision: int, timeout: float) -> float:
        with self._cond:
            self._cond.wait_for(lambda: any(r >= revision for r in self._seen), timeout)
            return min((t for r, t in self._seen.items() if r >= revision), default=float("nan"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self._changes
