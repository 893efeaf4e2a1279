"""The resource kinds, with Calico v3 field names so Calico YAML converts by apiVersion alone."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from pydantic import Field, field_validator

from policy.model.base import Model
from policy.model.fields import (
    ASNumber,
    IPAddress,
    IPInterface,
    IPNetwork,
    Labels,
    MACAddress,
    PortName,
    PortNumber,
    ResourceName,
    StringMap,
    WorkloadInterfaceName,
    case_mistake,
)

API_VERSION: Final = "calyx.io/v1"
CALICO_API_VERSION = "projectcalico.org/v3"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Labels Calyx sets itself, as Calico does, for selectors to match on (never taken from input):
NAMESPACE_LABEL = "projectcalico.org/namespace"  # endpoints and network sets: their namespace
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"  # endpoints only: spec.orchestrator ("" if unset)
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"  # endpoints with spec.serviceAccountName
CALICO_NAMESPACE_NAME_LABEL = "projectcalico.org/name"  # namespaces: their name


class Metadata(Model):
    name: ResourceName
    namespace: ResourceName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None


class Resource(Model):
    """Common envelope. Subclasses set the kind's storage facts as class variables."""

    plural: ClassVar[str]
    namespaced: ClassVar[bool]
    aliases: ClassVar[tuple[str, ...]] = ()

    apiVersion: Literal["calyx.io/v1"] = API_VERSION
    metadata: Metadata
    if TYPE_CHECKING:  # every subclass declares its kind as a Literal field
        kind: str

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


class EndpointPort(Model):
    name: PortName
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: PortNumber
    hostPort: PortNumber | None = None
    hostIP: IPAddress | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _exact_protocol(cls, value):
        mistake = case_mistake(value, ("TCP", "UDP", "SCTP"))
        if mistake:
            raise ValueError(mistake)
        return value


class WorkloadEndpointSpec(Model):
    node: ResourceName
    interfaceName: WorkloadInterfaceName
    orchestrator: str | None = None
    workload: str | None = None
    pod: str | None = None
    containerID: str | None = None
    endpoint: str | None = None
    mac: MACAddress | None = None
    ipNetworks: list[IPNetwork] = Field(default_factory=list)
    profiles: list[str] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)
    serviceAccountName: str | None = None
    # Calyx's workload gateways are fixed (docs/workloads.md): accepted only as such.
    ipv4Gateway: Literal["169.254.1.1"] | None = None
    ipv6Gateway: Literal["fe80::1"] | None = None


class WorkloadEndpoint(Resource):
    plural: ClassVar[str] = "workloadendpoints"
    namespaced: ClassVar[bool] = True
    aliases: ClassVar[tuple[str, ...]] = ("wep", "weps", "workloadendpoint")

    kind: Literal["WorkloadEndpoint"] = "WorkloadEndpoint"
    spec: WorkloadEndpointSpec


class NodeBGPSpec(Model):
    asNumber: ASNumber | None = None
    ipv4Address: IPInterface | None = None
    ipv6Address: IPInterface | None = None
    routeReflectorClusterID: IPAddress | None = None


class NodeAddress(Model):
    address: str
    type: Literal["InternalIP", "ExternalIP", "CalicoNodeIP"] = "InternalIP"


class OrchRef(Model):
    orchestrator: str
    nodeName: str | None = None


class NodeSpec(Model):
    bgp: NodeBGPSpec | None = None
    addresses: list[NodeAddress] = Field(default_factory=list)
    orchRefs: list[OrchRef] = Field(default_factory=list)


class Node(Resource):
    plural: ClassVar[str] = "nodes"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("no", "node")

    kind: Literal["Node"] = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)


class NamespaceSpec(Model):
    pass


class Namespace(Resource):
    """Labels of a namespace, for namespaceSelector; carries no spec of its own."""

    plural: ClassVar[str] = "namespaces"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("ns", "namespace")

    kind: Literal["Namespace"] = "Namespace"
    spec: NamespaceSpec = Field(default_factory=NamespaceSpec)


def namespace_labels(namespace: Namespace) -> dict[str, str]:
    """What a namespaceSelector sees: the namespace's labels and its name under the keys
    Kubernetes and Calico give it (`kubernetes.io/metadata.name`, `projectcalico.org/name`)."""
    return {
        **namespace.metadata.labels,
        NAMESPACE_NAME_LABEL: namespace.name,
        CALICO_NAMESPACE_NAME_LABEL: namespace.name,
    }


def endpoint_labels(
    labels: Mapping[str, str], namespace: str, orchestrator: str | None, service_account: str | None
) -> dict[str, str]:
    """What a selector sees of a workload endpoint: its labels (over its profiles' labelsToApply,
    already in `labels`), then Calyx's own, which always win: namespace and orchestrator, and the
    service account when it has one. Every endpoint carries the orchestrator label, network sets
    never do, so `has(projectcalico.org/orchestrator)` means "a workload endpoint"."""
    effective = {**labels, NAMESPACE_LABEL: namespace, ORCHESTRATOR_LABEL: orchestrator or ""}
    if service_account:
        effective[SERVICE_ACCOUNT_LABEL] = service_account
    return effective
