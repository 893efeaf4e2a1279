"""What the controller holds of both sides, and the pure desired value of every etcd key.

KubeState holds each Kubernetes object as converted (encoded once); EtcdState holds the owned
keys' stored bytes and revisions, as the etcd watch delivers them. `desired(key)` says what a
key must hold: bytes, None (must not exist) or KEEP (not this controller's to write)."""

import json
import logging
from collections import defaultdict
from collections.abc import Callable

from policy.datastore.keys import ipam_blocks_prefix, parse_key, resource_key
from policy.datastore.kv import Change
from policy.datastore.store import decode, encode
from policy.kube.convert import (
    BadObject,
    ObjectRef,
    PodFacts,
    endpoint_for_pod,
    fail_closed_policy,
    kubernetes_node_name,
    namespace_resource,
    network_policy,
    object_ref,
    pod_facts,
    policy_name,
    service_account_profile,
    service_account_profile_name,
)
from policy.kube.nodes import EndpointRef, endpoint_ref
from policy.model.documents import DocumentError
from policy.model.kubernetes import NAME_PREFIX
from policy.model.policies import NetworkPolicy, Profile
from policy.model.resources import Namespace, Node, WorkloadEndpoint
from policy.model.rules import SERVICE_ACCOUNT_PROFILE_PREFIX

log = logging.getLogger(__name__)

KEEP = object()  # desired(): this key is not the controller's to write
_BAD = object()  # held for an object that exists but never converted: its key is left alone
OWNED_KINDS = (Namespace, NetworkPolicy, Profile, WorkloadEndpoint, Node)
Key = tuple[str | None, str]
Report = Callable[[ObjectRef, BadObject | None], None]  # None: the object is fine (again) or gone


class KubeState:
    """Kubernetes as converted: each object once, a bad one keeping its last good conversion."""

    def __init__(self, prefix: str, report: Report):
        self._prefix, self._report = prefix, report
        self.namespaces: dict[str, object] = {}  # name -> encoded Namespace | _BAD
        self.policies: dict[Key, bytes] = {}  # (namespace, name) -> encoded NetworkPolicy
        self.profiles: dict[Key, object] = {}  # service account -> encoded Profile | _BAD
        self.pods: dict[Key, object] = {}  # (namespace, name) -> PodFacts | _BAD
        self.nodes: set[str] = set()

    def take(self, resource: str, key: Key, obj: dict | None) -> list[str]:
        """Take one change; returns the etcd keys whose desired value may have moved (pods:
        the caller maps them to endpoint keys)."""
        namespace, name = key
        if resource == "nodes":
            (self.nodes.add if obj is not None else self.nodes.discard)(name)
            return []
        if resource == "pods":
            self._hold(self.pods, key, obj, "Pod", pod_facts)
            return []
        if resource == "namespaces":
            self._hold(self.namespaces, name, obj, "Namespace", lambda o: encode(namespace_resource(o)))
            return [resource_key(self._prefix, Namespace, name)]
        if resource == "serviceaccounts":
            self._hold(self.profiles, key, obj, "ServiceAccount", lambda o: encode(service_account_profile(o)))
            return [resource_key(self._prefix, Profile, service_account_profile_name(namespace or "", name))]
        if resource == "networkpolicies":
            self._hold(self.policies, key, obj, "NetworkPolicy", lambda o: encode(network_policy(o)), fail_closed=True)
            return [resource_key(self._prefix, NetworkPolicy, policy_name(name), namespace)]
        raise ValueError(f"unknown resource {resource}")

    def _hold(self, held: dict, key, obj: dict | None, kind: str, convert, fail_closed: bool = False) -> None:
        if obj is None:
            held.pop(key, None)
            self._report(ObjectRef(kind, *(key if isinstance(key, tuple) else (None, key))), None)
            return
        ref = object_ref(kind, obj)
        try:
            held[key] = convert(obj)
        except BadObject as exc:
            self._report(ref, exc)
            if key in held and held[key] is not _BAD:
                log.warning("%s; its last good version stays", exc)
            elif fail_closed and ref.namespace:
                log.warning("%s; its pods get no traffic until it is fixed", exc)
                held[key] = encode(fail_closed_policy(obj, exc.problem))
            else:
                log.warning("%s; skipped", exc)
                held[key] = _BAD
            return
        self._report(ref, None)


class EtcdState:
    """The owned keys as etcd holds them (bytes and mod revision), the endpoints by pod, and
    which nodes etcd still refers to (Calyx Nodes, block affinities, endpoints)."""

    def __init__(self, prefix: str, on_bad: Callable[[str], None]):
        self._prefix, self._on_bad = prefix, on_bad
        self._blocks = ipam_blocks_prefix(prefix)
        self.values: dict[str, tuple[bytes, int]] = {}
        self.endpoints: dict[str, EndpointRef] = {}
        self.by_pod: dict[Key, set[str]] = defaultdict(set)
        self.node_names: dict[str, str | None] = {}  # Node key -> the Kubernetes node it stands for
        self.affinities: dict[str, str] = {}  # block key -> node
        self.nodes_changed = False

    def take(self, change: Change) -> bool:
        """Take one watched change; True if the key is one the controller may write."""
        if change.key.startswith(self._blocks):
            self._take_block(change)
            return False
        try:
            model, _, _ = parse_key(self._prefix, change.key)
        except ValueError:
            return False
        if model not in OWNED_KINDS:
            return False
        if change.value is None:
            self.values.pop(change.key, None)
        else:
            self.values[change.key] = (change.value, change.mod_revision)
        if model is WorkloadEndpoint:
            self._take_endpoint(change)
        elif model is Node:
            self._take_node(change)
        return True

    def _take_endpoint(self, change: Change) -> None:
        old = self.endpoints.pop(change.key, None)
        if old is not None:
            self.by_pod[(old.namespace, old.pod or "")].discard(change.key)
            if not self.by_pod[(old.namespace, old.pod or "")]:
                del self.by_pod[(old.namespace, old.pod or "")]
        ref = endpoint_ref(change.value) if change.value is not None else None
        if change.value is not None and ref is None:
            self._on_bad("WorkloadEndpoint")
        if ref is not None:
            self.endpoints[change.key] = ref
            if ref.kubernetes and ref.pod:
                self.by_pod[(ref.namespace, ref.pod)].add(change.key)
        if (old and old.node) != (ref and ref.node):
            self.nodes_changed = True

    def _take_node(self, change: Change) -> None:
        self.node_names.pop(change.key, None)
        if change.value is not None:
            try:
                node = decode(self._prefix, change.key, change.value, change.mod_revision)
                assert isinstance(node, Node)
                self.node_names[change.key] = kubernetes_node_name(node)
            except DocumentError as exc:
                log.warning("skipping bad Node at %s: %s", change.key, str(exc)[:500])
                self._on_bad("Node")
        self.nodes_changed = True

    def _take_block(self, change: Change) -> None:
        self.affinities.pop(change.key, None)
        if change.value is not None:
            try:
                affinity = json.loads(change.value).get("affinity")
            except (ValueError, AttributeError, RecursionError):
                affinity = None
                self._on_bad("IPAMBlock")
            if isinstance(affinity, str) and affinity:
                self.affinities[change.key] = affinity
        self.nodes_changed = True

    def known_nodes(self) -> set[str]:
        """Every Kubernetes node name etcd still refers to."""
        names = {name for name in self.node_names.values() if name}
        names.update(self.affinities.values())
        names.update(ref.node for ref in self.endpoints.values() if ref.kubernetes and ref.node)
        return names


def desired(prefix: str, key: str, kube: KubeState, etcd: EtcdState, on_bad: Callable[[str], None]) -> object:
    """bytes, None (must not exist) or KEEP (not ours), for one owned key; pure."""
    model, namespace, name = parse_key(prefix, key)
    if model is Namespace:
        value = kube.namespaces.get(name)
        return KEEP if value is _BAD else value
    if model is NetworkPolicy:
        if not name.startswith(NAME_PREFIX):
            return KEEP  # written by people or policyctl, not converted from Kubernetes
        return kube.policies.get((namespace, name[len(NAME_PREFIX) :]))
    if model is Profile:
        if not name.startswith(SERVICE_ACCOUNT_PROFILE_PREFIX):
            return KEEP
        account_namespace, _, account = name[len(SERVICE_ACCOUNT_PROFILE_PREFIX) :].partition(".")
        value = kube.profiles.get((account_namespace, account))
        return KEEP if value is _BAD else value
    if model is WorkloadEndpoint:
        return _desired_endpoint(prefix, key, kube, etcd, on_bad)
    if model is Node:
        kube_name = etcd.node_names.get(key)
        return KEEP if kube_name is None or kube_name in kube.nodes else None
    return KEEP


def _desired_endpoint(prefix: str, key: str, kube: KubeState, etcd: EtcdState, on_bad) -> object:
    ref, stored = etcd.endpoints.get(key), etcd.values.get(key)
    if ref is None or stored is None or not ref.kubernetes or not ref.pod:
        return KEEP  # only the CNI plugin creates (and deletes) endpoints
    pod = kube.pods.get((ref.namespace, ref.pod))
    if not isinstance(pod, PodFacts):
        return KEEP
    try:
        endpoint = decode(prefix, key, stored[0], stored[1])
    except DocumentError as exc:
        log.warning("skipping bad WorkloadEndpoint at %s: %s", key, str(exc)[:500])
        on_bad("WorkloadEndpoint")
        return KEEP
    assert isinstance(endpoint, WorkloadEndpoint)
    return encode(endpoint_for_pod(endpoint, ref.namespace, pod))


def held_keys(prefix: str, kube: KubeState) -> set[str]:
    """The keys the Kubernetes side wants to exist (a full reconcile diffs these and etcd's)."""
    keys = {resource_key(prefix, Namespace, name) for name in kube.namespaces}
    keys.update(resource_key(prefix, NetworkPolicy, policy_name(n), ns) for ns, n in kube.policies)
    keys.update(resource_key(prefix, Profile, service_account_profile_name(ns or "", n)) for ns, n in kube.profiles)
    return keys
