"""Kubernetes networking.k8s.io/v1 NetworkPolicy, converted to the native model as Calico does.

Peers are ORed (one rule each) and the parts of one peer ANDed; each port protocol gets its own
rule; a port without protocol is TCP; `from`/`to` missing or empty means everyone; policyTypes
defaults to Ingress, plus Egress when egress rules are given. A peer's pod and namespace
selectors pick workload endpoints only, never network sets: Calico adds
`projectcalico.org/orchestrator == 'k8s'`; Calyx adds `has(projectcalico.org/orchestrator)`,
which every endpoint carries and no network set may (docs/decisions.md)."""

from typing import Literal

from pydantic import Field, model_validator

from policy.model.base import Model
from policy.model.fields import LabelKey, Labels, LabelValues, MatchNetwork, ResourceName, StringMap
from policy.model.resources import ORCHESTRATOR_LABEL
from policy.model.rules import Port

KUBERNETES_NETWORKING_API_VERSION = "networking.k8s.io/v1"
NAME_PREFIX = "knp.default."
ORDER = 1000.0
PODS_ONLY = f"has({ORCHESTRATOR_LABEL})"


class LabelSelectorRequirement(Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: LabelValues = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self):
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Model):
    matchLabels: Labels = Field(default_factory=dict)
    matchExpressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class IPBlock(Model):
    cidr: MatchNetwork  # host bits allowed (Kubernetes parses ipBlock CIDRs sloppily) and dropped
    # `except` is a Python keyword; the alias keeps the Kubernetes spelling.
    except_: list[MatchNetwork] = Field(default_factory=list, alias="except")


class Peer(Model):
    podSelector: LabelSelector | None = None
    namespaceSelector: LabelSelector | None = None
    ipBlock: IPBlock | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if self.ipBlock and (self.podSelector or self.namespaceSelector):
            raise ValueError("ipBlock cannot be combined with podSelector or namespaceSelector")
        if not (self.ipBlock or self.podSelector or self.namespaceSelector):
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self


class NetworkPolicyPort(Model):
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: Port | None = None
    endPort: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _end_port(self):
        if self.endPort is not None and not (isinstance(self.port, int) and self.port <= self.endPort):
            raise ValueError("endPort needs a numeric port no greater than it")
        return self


class IngressRule(Model):
    from_: list[Peer] = Field(default_factory=list, alias="from")
    ports: list[NetworkPolicyPort] = Field(default_factory=list)


class EgressRule(Model):
    to: list[Peer] = Field(default_factory=list)
    ports: list[NetworkPolicyPort] = Field(default_factory=list)


class KubernetesPolicySpec(Model):
    podSelector: LabelSelector
    policyTypes: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[IngressRule] = Field(default_factory=list)
    egress: list[EgressRule] = Field(default_factory=list)


class KubernetesMetadata(Model):
    model_config = {**Model.model_config, "extra": "ignore"}  # uid, generation... are the API server's
    name: ResourceName
    namespace: ResourceName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)


class KubernetesNetworkPolicy(Model):
    model_config = {**Model.model_config, "extra": "ignore"}  # status is the API server's
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: KubernetesMetadata
    spec: KubernetesPolicySpec


def selector_text(selector: LabelSelector) -> str:
    """matchLabels and matchExpressions ANDed, in Calico's selector language."""
    terms = [f"{key} == '{value}'" for key, value in sorted(selector.matchLabels.items())]
    for req in selector.matchExpressions:
        values = ", ".join(f"'{v}'" for v in sorted(set(req.values)))
        terms.append(
            {
                "In": f"{req.key} in {{{values}}}",
                "NotIn": f"{req.key} not in {{{values}}}",
                "Exists": f"has({req.key})",
                "DoesNotExist": f"!has({req.key})",
            }[req.operator]
        )
    return " && ".join(terms) or "all()"


def _peer_entity(peer: Peer | None) -> dict:
    if peer is None:
        return {}
    if peer.ipBlock:
        return {"nets": [peer.ipBlock.cidr], **({"notNets": peer.ipBlock.except_} if peer.ipBlock.except_ else {})}
    pods = selector_text(peer.podSelector) if peer.podSelector else "all()"
    entity = {"selector": PODS_ONLY if pods == "all()" else f"{PODS_ONLY} && {pods}"}
    if peer.namespaceSelector is not None:
        entity["namespaceSelector"] = selector_text(peer.namespaceSelector)
    return entity


def _port_groups(ports: list[NetworkPolicyPort]) -> list[tuple[str | None, list]]:
    """(protocol, ports) per protocol in first-seen order; an entry with no port opens the protocol."""
    if not ports:
        return [(None, [])]
    groups: dict[str, list | None] = {}
    for entry in ports:
        current = groups.setdefault(entry.protocol, [])
        if entry.port is None or current is None:
            groups[entry.protocol] = None
        elif entry.endPort is not None:
            current.append(f"{entry.port}:{entry.endPort}")
        else:
            current.append(entry.port)
    return [(protocol, ports or []) for protocol, ports in groups.items()]


def _rules(peers: list[Peer], ports: list[NetworkPolicyPort], peer_side: str) -> list[dict]:
    rules = []
    for peer in peers or [None]:  # type: ignore[list-item]  # no peers: one rule that matches any
        for protocol, numbers in _port_groups(ports):
            rule: dict = {"action": "Allow"}
            if protocol:
                rule["protocol"] = protocol
            entity = _peer_entity(peer)
            if entity:
                rule[peer_side] = entity
            if numbers:
                rule["destination"] = {**rule.get("destination", {}), "ports": numbers}
            rules.append(rule)
    return rules


def convert(policy: KubernetesNetworkPolicy, api_version: str) -> dict:
    """The native NetworkPolicy document for a validated Kubernetes one."""
    spec = policy.spec
    types = spec.policyTypes or (["Ingress"] + (["Egress"] if spec.egress else []))
    ingress = (
        [r for rule in spec.ingress for r in _rules(rule.from_, rule.ports, "source")] if "Ingress" in types else []
    )
    egress = (
        [r for rule in spec.egress for r in _rules(rule.to, rule.ports, "destination")] if "Egress" in types else []
    )
    meta = policy.metadata
    metadata = {"name": NAME_PREFIX + meta.name, "labels": meta.labels, "annotations": meta.annotations}
    if meta.namespace:
        metadata["namespace"] = meta.namespace
    return {
        "apiVersion": api_version,
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "order": ORDER,
            "selector": selector_text(spec.podSelector),
            "types": types,
            "ingress": ingress,
            "egress": egress,
        },
    }
