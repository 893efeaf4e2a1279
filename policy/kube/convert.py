"""Kubernetes objects (the API's JSON, as dicts) to what Calyx keeps in etcd: pure functions.

Every function is total over any JSON: what cannot be converted raises BadObject, naming the
object and the field, and the caller decides what that means (logged, counted, an Event; the
last good conversion stays)."""

from dataclasses import dataclass
from typing import Any

import pydantic

from policy.model.documents import DocumentError, parse_resource
from policy.model.fields import Labels
from policy.model.kubernetes import KUBERNETES_NETWORKING_API_VERSION, NAME_PREFIX, ORDER, LabelSelector, selector_text
from policy.model.policies import NetworkPolicy, PolicySpec, Profile, ProfileSpec
from policy.model.resources import Metadata, Namespace, Node, WorkloadEndpoint
from policy.model.rules import SERVICE_ACCOUNT_LABEL_PREFIX, SERVICE_ACCOUNT_PROFILE_PREFIX

ORCHESTRATOR = "k8s"  # spec.orchestrator of the endpoints the CNI plugin writes for pods
SERVICE_ACCOUNT_NAME_LABEL = "projectcalico.org/name"  # as Calico: a service account's own name
_TERMINAL_PHASES = ("Succeeded", "Failed")
_LABELS: pydantic.TypeAdapter = pydantic.TypeAdapter(Labels)


class BadObject(ValueError):
    """A Kubernetes object Calyx cannot take; says which and why."""

    def __init__(self, kind: str, namespace: str | None, name: str, problem: str):
        self.kind, self.namespace, self.name, self.problem = kind, namespace, name, problem
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(f"{kind} {where}: {problem}")


@dataclass(frozen=True)
class ObjectRef:
    """Which Kubernetes object: what an Event names, and the key a reflector holds it under."""

    kind: str
    namespace: str | None
    name: str
    uid: str = ""

    @property
    def key(self) -> tuple[str | None, str]:
        return self.namespace, self.name


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What Calyx needs of a pod: 10,000 of these stay small where the pod objects would not."""

    labels: dict[str, str]
    service_account: str | None
    node: str | None
    ips: tuple[str, ...]
    live: bool  # not Succeeded or Failed: its addresses are still its own


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def object_ref(kind: str, obj: Any) -> ObjectRef:
    """The reference of any object with metadata.name; BadObject when it has none."""
    meta = _dict(_dict(obj).get("metadata"))
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not isinstance(name, str) or not name:
        raise BadObject(kind, None, "?", "metadata.name is missing")
    return ObjectRef(kind, namespace if isinstance(namespace, str) else None, name, uid if isinstance(uid, str) else "")


def resource_version(obj: Any) -> str:
    version = _dict(_dict(obj).get("metadata")).get("resourceVersion")
    return version if isinstance(version, str) else ""


def _labels(ref: ObjectRef, value: Any, field: str = "metadata.labels") -> dict[str, str]:
    try:
        return dict(_LABELS.validate_python(value or {}))
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"] if part != "[key]")
        message = f"{field}{'.' + where if where else ''}: {error['msg']}"
        raise BadObject(ref.kind, ref.namespace, ref.name, message) from None


def _parsed(ref: ObjectRef, doc: dict):
    try:
        return parse_resource(doc, source=f"Kubernetes {ref.kind}")
    except DocumentError as exc:
        problems = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems)
        raise BadObject(ref.kind, ref.namespace, ref.name, problems) from None


def namespace_resource(obj: Any) -> Namespace:
    """A v1 Namespace -> Calyx Namespace with its labels (and kubernetes.io/metadata.name)."""
    ref = object_ref("Namespace", obj)
    labels = _labels(ref, _dict(obj["metadata"]).get("labels"))
    return _parsed(ref, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ref.name, "labels": labels}})


def network_policy(obj: Any) -> NetworkPolicy:
    """A networking.k8s.io/v1 NetworkPolicy -> the converted Calyx NetworkPolicy (knp.default.<name>).

    Only name, namespace and labels of its metadata are kept: annotations such as kubectl's
    last-applied-configuration are the API server's business."""
    ref = object_ref("NetworkPolicy", obj)
    meta = _dict(obj["metadata"])
    doc = {
        "apiVersion": KUBERNETES_NETWORKING_API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": _labels(ref, meta.get("labels"))},
        "spec": obj.get("spec"),
    }
    return _parsed(ref, doc)


def policy_name(name: str) -> str:
    return NAME_PREFIX + name


def service_account_profile_name(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{name}"


def service_account_profile(obj: Any) -> Profile:
    """A v1 ServiceAccount -> Profile ksa.<namespace>.<name> whose labelsToApply carry its labels
    as pcsa.<key> (and its name as pcsa.projectcalico.org/name): what serviceAccounts.selector
    matches, on every endpoint that names the profile (as Calico does)."""
    ref = object_ref("ServiceAccount", obj)
    if not ref.namespace:
        raise BadObject(ref.kind, None, ref.name, "metadata.namespace is missing")
    labels = _labels(ref, _dict(obj["metadata"]).get("labels"))
    applied = {SERVICE_ACCOUNT_LABEL_PREFIX + key: value for key, value in labels.items()}
    applied[SERVICE_ACCOUNT_LABEL_PREFIX + SERVICE_ACCOUNT_NAME_LABEL] = ref.name
    applied = _labels(ref, applied, "metadata.labels (as pcsa.<key>)")
    try:
        return Profile(
            metadata=Metadata(name=service_account_profile_name(ref.namespace, ref.name)),
            spec=ProfileSpec(labelsToApply=applied),
        )
    except pydantic.ValidationError as exc:
        raise BadObject(ref.kind, ref.namespace, ref.name, str(exc.errors(include_url=False)[0]["msg"])) from None


def pod_facts(obj: Any) -> PodFacts:
    """A v1 Pod -> its labels, service account, node, addresses and whether it still runs."""
    ref = object_ref("Pod", obj)
    if not ref.namespace:
        raise BadObject(ref.kind, None, ref.name, "metadata.namespace is missing")
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    labels = _labels(ref, _dict(obj["metadata"]).get("labels"))
    account = spec.get("serviceAccountName") or None
    if account is not None and not isinstance(account, str):
        raise BadObject(ref.kind, ref.namespace, ref.name, "spec.serviceAccountName: not a string")
    node = spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None
    ips = [entry.get("ip") for entry in status.get("podIPs") or [] if isinstance(entry, dict)]
    if not ips and status.get("podIP"):
        ips = [status.get("podIP")]
    addresses = tuple(sorted({ip for ip in ips if isinstance(ip, str) and ip}))
    return PodFacts(labels, account, node or None, addresses, status.get("phase") not in _TERMINAL_PHASES)


def endpoint_for_pod(endpoint: WorkloadEndpoint, namespace: str, pod: PodFacts) -> WorkloadEndpoint:
    """The endpoint the CNI plugin wrote, with the pod's labels, service account and the
    service account's profile (replacing any other ksa. profile); everything else as it is."""
    profiles = [p for p in endpoint.spec.profiles if not p.startswith(SERVICE_ACCOUNT_PROFILE_PREFIX)]
    if pod.service_account:
        profiles.append(service_account_profile_name(namespace, pod.service_account))
    metadata = endpoint.metadata.model_copy(update={"labels": dict(pod.labels), "resourceVersion": None})
    spec = endpoint.spec.model_copy(update={"serviceAccountName": pod.service_account, "profiles": profiles})
    return endpoint.model_copy(update={"metadata": metadata, "spec": spec})


def kubernetes_node_name(node: Node) -> str | None:
    """The Kubernetes node a Calyx Node stands for: its k8s orchRef, else its own name when it
    has no orchRefs; None for a node of another orchestrator (never removed by this controller)."""
    if not node.spec.orchRefs:
        return node.name
    for ref in node.spec.orchRefs:
        if ref.orchestrator in (ORCHESTRATOR, "kubernetes"):
            return ref.nodeName or node.name
    return None


FAILED_ANNOTATION = "calyx.io/conversion-error"


def fail_closed_policy(obj: Any, problem: str) -> NetworkPolicy:
    """What stands for a NetworkPolicy that cannot be converted (and had no good version): the
    pods its podSelector picks (every pod of the namespace if that cannot be read either) get
    no traffic in either direction, rather than all of it."""
    ref = object_ref("NetworkPolicy", obj)
    try:
        selector = selector_text(LabelSelector.model_validate(_dict(obj.get("spec")).get("podSelector") or {}))
    except pydantic.ValidationError:
        selector = "all()"
    return NetworkPolicy(
        metadata=Metadata(
            name=policy_name(ref.name), namespace=ref.namespace, annotations={FAILED_ANNOTATION: problem[:1024]}
        ),
        spec=PolicySpec(order=ORDER, selector=selector, types=["Ingress", "Egress"]),
    )
