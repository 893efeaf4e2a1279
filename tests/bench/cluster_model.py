"""A cluster as one felix sees it: every endpoint of every node, Node resources, policies whose
selectors pick remote endpoints. Shared by the memory harness (no root) and the real benchmark.

Endpoint i lives on node i // per_node, in namespace ns<i % 50>, with labels a Deployment's pod
would carry. Policy k applies to app<k> (one local endpoint of node1 per policy for k < 100)
and admits two kinds of peers, both mostly on other nodes:
  - role in {r<k % 20>, r<(k + 1) % 20>} within its namespace (100 distinct sets, ~200 each);
  - app == 'app<(k + 1) % policies>' in every namespace (1,000 sets of ~100: every endpoint
    of the cluster is in one)."""

from dataclasses import dataclass

from policy.model.documents import parse_resource
from policy.model.names import host_interface_name
from policy.model.resources import (
    Metadata,
    Node,
    NodeBGPSpec,
    NodeSpec,
    Resource,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
)

NAMESPACES = 50
LOCAL_NODE = "node1"  # node 0 of the model: the lab's first node


@dataclass(frozen=True)
class ClusterShape:
    nodes: int = 1000
    per_node: int = 100
    policies: int = 1000

    @property
    def endpoints(self) -> int:
        return self.nodes * self.per_node


def node_name(n: int) -> str:
    return f"node{n + 1}"


def address(i: int) -> str:
    return f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def endpoint_name(i: int) -> str:
    return f"pod{i}"


def namespace_of(i: int) -> str:
    return f"ns{i % NAMESPACES}"


def interface_of(i: int) -> str:
    return host_interface_name(namespace_of(i), endpoint_name(i))


def app_labels(i: int, shape: ClusterShape, app: int | None = None) -> dict[str, str]:
    app = i % shape.policies if app is None else app
    return {
        "app": f"app{app}",
        "role": f"r{i % 20}",
        "version": f"v{i % 3}",
        "pod-template-hash": f"{(app * 7 + i % 3) * 2654435761 % 2**32:08x}",
    }


def endpoint(i: int, shape: ClusterShape, app: int | None = None) -> WorkloadEndpoint:
    name, namespace = endpoint_name(i), namespace_of(i)
    return WorkloadEndpoint(
        metadata=Metadata(name=name, namespace=namespace, labels=app_labels(i, shape, app)),
        spec=WorkloadEndpointSpec(
            node=node_name(i // shape.per_node),
            interfaceName=host_interface_name(namespace, name),
            orchestrator="k8s",
            workload=name,
            pod=name,
            ipNetworks=[f"{address(i)}/32"],
            serviceAccountName="default",
        ),
    )


def node(n: int) -> Node:
    return Node(
        metadata=Metadata(name=node_name(n)),
        spec=NodeSpec(bgp=NodeBGPSpec(ipv4Address=f"198.18.{n >> 8}.{n & 255}/16")),
    )


def policy(k: int, shape: ClusterShape) -> Resource:
    return parse_resource(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"allow-app{k}", "namespace": f"ns{k % NAMESPACES}"},
            "spec": {
                "selector": f"app == 'app{k}'",
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": f"role in {{'r{k % 20}', 'r{(k + 1) % 20}'}}"},
                        "destination": {"ports": [8080]},
                    },
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": f"app == 'app{(k + 1) % shape.policies}'", "namespaceSelector": "all()"},
                        "destination": {"ports": [80, 443]},
                    },
                ],
                "egress": [{"action": "Allow"}],
            },
        }
    )


def local_indices(shape: ClusterShape) -> range:
    return range(shape.per_node)  # node1's endpoints


def resources(shape: ClusterShape, endpoints: range | None = None) -> list[Resource]:
    """Nodes, policies, then endpoints (all of them unless `endpoints` says which)."""
    out: list[Resource] = [node(n) for n in range(shape.nodes)]
    out += [policy(k, shape) for k in range(shape.policies)]
    out += [endpoint(i, shape) for i in (endpoints if endpoints is not None else range(shape.endpoints))]
    return out
