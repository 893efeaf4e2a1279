"""Policy kinds as in Calico v3: tiers, (global) network policies, (global) network sets, profiles."""

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from policy.model.base import Model
from policy.model.fields import Labels, MatchNetwork, ResourceName
from policy.model.resources import NAMESPACE_LABEL, ORCHESTRATOR_LABEL, Resource
from policy.model.rules import SERVICE_ACCOUNT_LABEL_PREFIX, Rule, SelectorText
from policy.model.selector import parse_selector, with_key_prefix

DEFAULT_TIER = "default"
PolicyType = Literal["Ingress", "Egress"]


def _default_types(spec):
    """Calico's default: Ingress, plus Egress when there are egress rules (Egress alone if only those)."""
    if isinstance(spec, dict) and spec.get("types") is None:
        has_egress = bool(spec.get("egress"))
        has_ingress = bool(spec.get("ingress"))
        spec = {
            **spec,
            "types": (["Ingress"] if has_ingress or not has_egress else []) + (["Egress"] if has_egress else []),
        }
    return spec


class PolicySpec(Model):
    tier: ResourceName = DEFAULT_TIER
    order: float | None = None
    selector: SelectorText = "all()"
    types: list[PolicyType]
    ingress: list[Rule] = Field(default_factory=list)
    egress: list[Rule] = Field(default_factory=list)
    # The endpoints of the service accounts it selects (their labels, as pcsa.<key>), ANDed with selector.
    serviceAccountSelector: SelectorText | None = None
    # A hint to Calico's dataplane about where the policy is needed; Calyx's sets need none.
    performanceHints: list[Literal["AssumeNeededOnEveryNode"]] | None = None

    _types_default = model_validator(mode="before")(_default_types)

    @model_validator(mode="after")
    def _rules_match_types(self):
        if len(set(self.types)) != len(self.types):
            raise ValueError("types lists a direction twice")
        for direction, rules in (("Ingress", self.ingress), ("Egress", self.egress)):
            if rules and direction not in self.types:
                raise ValueError(f"has {direction.lower()} rules but types does not include {direction}")
        return self

    def endpoint_selector(self) -> str:
        """What the policy applies to: selector, and serviceAccountSelector over the labels a
        service account's profile gives its endpoints."""
        if self.serviceAccountSelector is None:
            return self.selector
        accounts = with_key_prefix(parse_selector(self.serviceAccountSelector), SERVICE_ACCOUNT_LABEL_PREFIX)
        return f"({self.selector}) && ({accounts})"


def _host_endpoints_only(value):
    if value is not False:
        raise ValueError("true is not supported by Calyx: it applies to host endpoints, which Calyx does not have")
    return value


HostEndpointFlag = Annotated[bool, AfterValidator(_host_endpoints_only)]


class GlobalPolicySpec(PolicySpec):
    namespaceSelector: SelectorText | None = None
    doNotTrack: HostEndpointFlag | None = None  # unset stays out of what is stored
    preDNAT: HostEndpointFlag | None = None
    applyOnForward: HostEndpointFlag | None = None


class NetworkPolicy(Resource):
    plural: ClassVar[str] = "networkpolicies"
    namespaced: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("netpol", "np", "networkpolicy", "policy", "policies")

    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: PolicySpec


class GlobalNetworkPolicy(Resource):
    plural: ClassVar[str] = "globalnetworkpolicies"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("gnp", "globalnetworkpolicy")

    kind: Literal["GlobalNetworkPolicy"] = "GlobalNetworkPolicy"
    spec: GlobalPolicySpec


class TierSpec(Model):
    order: float | None = None
    defaultAction: Literal["Deny", "Pass"] = "Deny"


class Tier(Resource):
    plural: ClassVar[str] = "tiers"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("tier",)

    kind: Literal["Tier"] = "Tier"
    spec: TierSpec = Field(default_factory=TierSpec)


class NetworkSetSpec(Model):
    nets: list[MatchNetwork] = Field(default_factory=list)


def _no_calyx_labels(resource):
    """A network set with Calyx's own labels could pass for another namespace's members or, with
    the orchestrator label, for pods (Kubernetes peers select `has(projectcalico.org/orchestrator)`)."""
    for label in (NAMESPACE_LABEL, ORCHESTRATOR_LABEL):
        if label in resource.metadata.labels:
            raise ValueError(f"metadata.labels: {label} is set by Calyx on workload endpoints, not a network set label")
    return resource


class NetworkSet(Resource):
    plural: ClassVar[str] = "networksets"
    namespaced: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("netset", "netsets", "networkset")

    kind: Literal["NetworkSet"] = "NetworkSet"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)

    _labels_ours = model_validator(mode="after")(_no_calyx_labels)


class GlobalNetworkSet(Resource):
    plural: ClassVar[str] = "globalnetworksets"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("gns", "globalnetworkset")

    kind: Literal["GlobalNetworkSet"] = "GlobalNetworkSet"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)

    _labels_ours = model_validator(mode="after")(_no_calyx_labels)


class ProfileSpec(Model):
    ingress: list[Rule] = Field(default_factory=list)
    egress: list[Rule] = Field(default_factory=list)
    labelsToApply: Labels = Field(default_factory=dict)


class Profile(Resource):
    plural: ClassVar[str] = "profiles"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("pro", "profile")

    kind: Literal["Profile"] = "Profile"
    spec: ProfileSpec = Field(default_factory=ProfileSpec)


Policy = NetworkPolicy | GlobalNetworkPolicy
