"""Who a CNI invocation is about: a Kubernetes pod (K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)
or, for other runtimes, a container in the namespace the network configuration names.

    endpoint name   <node>-<orchestrator>-<workload>-<ifname>, '-' inside a part doubled (Calico's)
    host interface  cx + sha1("<namespace>.<workload>")[:11], workload + ".<ifname>" beyond eth0
    IPAM handle     <network name>.<container id>"""

import hashlib
from dataclasses import dataclass

from felix.cni.config import NetConf
from felix.cni.protocol import Request
from policy.model.names import host_interface_name

K8S = "k8s"
CNI = "cni"
MAX_NAME = 253
DEFAULT_IFNAME = "eth0"
NETWORK_ANNOTATION = "calyx.io/cni-network"  # which network (conflist) made an endpoint: GC's scope


def _part(text: str) -> str:
    """A name part as a resource name allows it (lowercase, no '_'), '-' doubled to stay unambiguous."""
    return text.lower().replace("_", ".").replace("-", "--")


@dataclass(frozen=True)
class Workload:
    orchestrator: str
    namespace: str
    workload: str  # the pod's name, or the container's id
    container_id: str
    ifname: str
    pod: str | None = None  # Kubernetes' pod name; podman's container name (it sets K8S_POD_NAME alone)

    @classmethod
    def of(cls, request: Request, conf: NetConf) -> "Workload":
        namespace, pod = request.args.get("K8S_POD_NAMESPACE"), request.args.get("K8S_POD_NAME")
        if namespace and pod:
            return cls(K8S, namespace, pod, request.container_id, request.ifname, pod)
        return cls(CNI, conf.namespace, request.container_id, request.container_id, request.ifname, pod)

    def endpoint_name(self, node: str) -> str:
        name = "-".join(_part(p) for p in (node, self.orchestrator, self.workload, self.ifname))
        if len(name) > MAX_NAME:
            name = f"{name[: MAX_NAME - 17]}-{hashlib.sha1(name.encode()).hexdigest()[:16]}"
        return name.strip(".-") or "workload"

    @property
    def host_interface(self) -> str:
        key = self.workload if self.ifname == DEFAULT_IFNAME else f"{self.workload}.{self.ifname}"
        return host_interface_name(self.namespace, key)


def ipam_handle(network: str, container_id: str) -> str:
    return f"{network}.{container_id}"
