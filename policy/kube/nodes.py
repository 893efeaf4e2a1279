"""A deleted node gives its addresses back: after a grace period, and only after a fresh look
at the API server (the node still gone, no pod listed on it) and at IPAM.

The plan is pure (`plan_release`); `NodeReleaser` reads afresh, plans and writes with
compare-and-swap, step by step, so a release cut short is finished by the next attempt. An
address a live pod holds is never released; a handle is released whole or not at all."""

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from policy.datastore.ipam import IPAM, Block, Handle, IPAMError
from policy.datastore.keys import ipam_block_key, kind_prefix
from policy.datastore.kv import KV, Conflict, KVError, Write
from policy.datastore.store import MAX_TXN_OPS
from policy.kube.client import KubeSource
from policy.kube.convert import ORCHESTRATOR
from policy.model.resources import WorkloadEndpoint

log = logging.getLogger(__name__)

_TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class EndpointRef:
    """What node release and the pod index need of a stored WorkloadEndpoint (read cheaply)."""

    namespace: str
    pod: str | None
    node: str | None
    networks: tuple[str, ...]
    kubernetes: bool  # written for a pod (orchestrator k8s)

    @property
    def addresses(self) -> list[str]:
        return [n.partition("/")[0] for n in self.networks]


def endpoint_ref(value: bytes) -> EndpointRef | None:
    """None for anything that is not a WorkloadEndpoint's JSON."""
    try:
        data = json.loads(value)
        meta, spec = data["metadata"], data["spec"]
        networks = tuple(n for n in spec.get("ipNetworks") or [] if isinstance(n, str))
        pod = spec.get("pod") or spec.get("workload")
        return EndpointRef(
            str(meta["namespace"]),
            pod if isinstance(pod, str) else None,
            spec.get("node") if isinstance(spec.get("node"), str) else None,
            networks,
            spec.get("orchestrator") == ORCHESTRATOR,
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


@dataclass(frozen=True)
class LivePods:
    """Pods the API server lists that have not ended, read fresh for a release decision."""

    ips: frozenset[str]
    pods: frozenset[tuple[str, str]]
    on_node: dict[str, int]


def live_pods(items: Iterable[dict]) -> LivePods:
    """Lenient on purpose: a pod whose labels Calyx refuses still holds its addresses."""
    ips: set[str] = set()
    pods: set[tuple[str, str]] = set()
    on_node: dict[str, int] = {}
    for item in items:
        meta, spec, status = (_dict(item.get(k)) for k in ("metadata", "spec", "status"))
        if status.get("phase") in _TERMINAL_PHASES:
            continue
        namespace, name = meta.get("namespace"), meta.get("name")
        if isinstance(namespace, str) and isinstance(name, str):
            pods.add((namespace, name))
        node = spec.get("nodeName")
        if isinstance(node, str) and node:
            on_node[node] = on_node.get(node, 0) + 1
        entries = status.get("podIPs")
        for entry in [*(entries if isinstance(entries, list) else []), {"ip": status.get("podIP")}]:
            address = _address(entry.get("ip") if isinstance(entry, dict) else None)
            if address:
                ips.add(address)
    return LivePods(frozenset(ips), frozenset(pods), on_node)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _address(text) -> str | None:
    """An address in the form IPAM writes it (`fd00::1`, not `fd00:0::1`), None if not one."""
    try:
        return str(ipaddress.ip_address(text)) if isinstance(text, str) else None
    except ValueError:
        return None


@dataclass
class ReleasePlan:
    node: str
    deferred: str | None = None  # why nothing is released now
    endpoints: list[tuple[str, int]] = field(default_factory=list)  # (key, mod revision) to delete
    handles: list[str] = field(default_factory=list)  # released whole
    addresses: list[str] = field(default_factory=list)  # allocations without a handle record
    blocks: list[str] = field(default_factory=list)  # CIDRs whose affinity goes (deleted when empty)
    kept: list[str] = field(default_factory=list)  # addresses live pods hold


def plan_release(
    node: str,
    blocks: list[Block],
    handles: dict[str, Handle],
    endpoints: dict[str, tuple[EndpointRef, int]],
    live: LivePods,
) -> ReleasePlan:
    plan = ReleasePlan(node)
    if live.on_node.get(node):
        plan.deferred = f"{live.on_node[node]} pods are still listed on it"
        return plan
    held = set(live.ips)
    for ref, _ in endpoints.values():
        if not ref.kubernetes or (ref.namespace, ref.pod) in live.pods:
            held.update(ref.addresses)  # an endpoint of a live pod, or not a pod's: not ours to judge
    dead = {
        key: (ref, revision)
        for key, (ref, revision) in endpoints.items()
        if ref.kubernetes and ref.node == node and (ref.namespace, ref.pod) not in live.pods
    }
    plan.endpoints = sorted((key, revision) for key, (_, revision) in dead.items())
    dead_addresses = {a for ref, _ in dead.values() for a in ref.addresses}
    owner: dict[str, str] = {}  # allocated address -> handle, for the node's blocks and its endpoints
    for block in blocks:
        for offset, handle in block.allocations.items():
            address = block.address(offset)
            if block.affinity == node or address in dead_addresses:
                owner[address] = handle
    plan.blocks = sorted(b.cidr for b in blocks if b.affinity == node)
    candidates: dict[str, list[str]] = {}
    for address, handle in sorted(owner.items()):
        if address in held:
            plan.kept.append(address)
        elif handle in handles:
            candidates.setdefault(handle, [])
        else:
            plan.addresses.append(address)
    for handle in sorted(candidates):
        addresses = handles[handle].addresses
        if any(a in held for a in addresses):
            plan.kept += [a for a in addresses if a in owner]  # all or none per handle
        else:
            plan.handles.append(handle)
    plan.kept = sorted(set(plan.kept))
    return plan


class NodeReleaser:
    def __init__(
        self,
        source: KubeSource,
        kv: KV,
        prefix: str,
        grace: float,
        recheck: float,
        clock: Callable[[], float] = time.monotonic,
        on_released: Callable[[int], None] = lambda count: None,
    ):
        self._source, self._kv, self._prefix, self._ipam = source, kv, prefix, IPAM(kv, prefix)
        self.grace, self._recheck, self._clock, self._on_released = grace, recheck, clock, on_released
        self.pending: dict[str, float] = {}  # node -> when it was first seen gone
        self._next_check: dict[str, float] = {}

    def observe(self, gone: set[str]) -> None:
        """The nodes etcd still knows of that Kubernetes does not list (from the held state)."""
        now = self._clock()
        for node in gone - self.pending.keys():
            log.info("node %s is gone from Kubernetes: releasing its addresses in %.0fs", node, self.grace)
            self.pending[node] = now
        for node in self.pending.keys() - gone:
            del self.pending[node]
            self._next_check.pop(node, None)

    def next_due(self) -> float:
        return min((self._due(node) for node in self.pending), default=float("inf"))

    def _due(self, node: str) -> float:
        return max(self.pending[node] + self.grace, self._next_check.get(node, 0.0))

    def run_due(self) -> list[ReleasePlan]:
        now = self._clock()
        return [self.release(node) for node in sorted(self.pending) if self._due(node) <= now]

    def release(self, node: str) -> ReleasePlan:
        """Re-check and release; the node stays pending (checked again later) until all is done."""
        self._next_check[node] = self._clock() + self._recheck
        nodes, _ = self._source.list("nodes")
        if any((n.get("metadata") or {}).get("name") == node for n in nodes):
            log.info("node %s is back in Kubernetes: nothing released", node)
            self.pending.pop(node, None)
            return ReleasePlan(node, deferred="the node is listed again")
        pods, _ = self._source.list("pods")
        blocks = self._ipam.blocks()  # a corrupt block is logged and left alone
        handles = self._ipam.handles()
        plan = plan_release(node, blocks, handles, self._endpoints(), live_pods(pods))
        if plan.deferred:
            log.info("node %s: release deferred: %s", node, plan.deferred)
            return plan
        done = self._execute(node, plan)
        if done:
            self.pending.pop(node, None)
            self._next_check.pop(node, None)
        log.info(
            "node %s: released %d handles and %d addresses, removed %d endpoints, %d blocks; kept %s",
            node,
            len(plan.handles),
            len(plan.addresses),
            len(plan.endpoints),
            len(plan.blocks),
            ", ".join(plan.kept) or "nothing",
        )
        return plan

    def _endpoints(self) -> dict[str, tuple[EndpointRef, int]]:
        found = {}
        for page, _ in self._kv.pages(kind_prefix(self._prefix, WorkloadEndpoint)):
            for item in page:
                ref = endpoint_ref(item.value)
                if ref is not None:
                    found[item.key] = (ref, item.mod_revision)
        return found

    def _execute(self, node: str, plan: ReleasePlan) -> bool:
        done = True
        writes = [Write(key, None, revision) for key, revision in plan.endpoints]
        for start in range(0, len(writes), MAX_TXN_OPS):
            try:
                self._kv.commit(writes[start : start + MAX_TXN_OPS])
            except Conflict:
                done = False  # an endpoint changed meanwhile: the next attempt looks again
        released = 0
        for handle in plan.handles:
            try:
                released += len(self._ipam.release_handle(handle))
            except IPAMError as exc:
                log.warning("node %s: handle %s not released: %s", node, handle, exc)
                done = False
        for address in plan.addresses:
            try:
                self._ipam.release_address(address)
                released += 1
            except IPAMError as exc:
                log.warning("node %s: %s not released: %s", node, address, exc)
                done = False
        self._on_released(released)
        for cidr in plan.blocks:
            done = self._drop_affinity(node, cidr) and done
        return done

    def _drop_affinity(self, node: str, cidr: str) -> bool:
        key = ipam_block_key(self._prefix, cidr)
        item = self._kv.get(key)
        if item is None:
            return True
        try:
            block = Block.decode(item.value, item.mod_revision)
        except ValueError:
            return False
        if block.affinity != node:
            return True
        value = None if not block.allocations else Block(block.cidr, block.pool, None, block.allocations).encode()
        try:
            self._kv.commit([Write(key, value, item.mod_revision)])
        except (Conflict, KVError) as exc:
            log.warning("node %s: block %s not released yet: %s", node, cidr, exc)
            return False
        return True
