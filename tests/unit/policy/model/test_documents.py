import pytest

from policy.model.documents import DocumentError, load_documents
from policy.model.names import host_interface_name
from policy.model.resources import Namespace, Node, WorkloadEndpoint

WEP = """
apiVersion: {api}
kind: WorkloadEndpoint
metadata:
  name: web-1
  namespace: prod
  labels: {{app: web}}
spec:
  node: node1
  orchestrator: k8s
  workload: web-1
  endpoint: eth0
  interfaceName: cx0123456789a
  mac: EE:EE:EE:EE:EE:01
  ipNetworks: [198.19.1.1, "fd00:19:1::1/128"]
  profiles: [kns.prod]
  ports: [{{name: http, port: 80, protocol: TCP}}]
  serviceAccountName: web
"""


@pytest.mark.parametrize("api", ["calyx.io/v1", "projectcalico.org/v3"])
def test_workload_endpoint_parses_in_native_and_calico_api(api):
    (wep,) = load_documents(WEP.format(api=api), "wep.yaml")
    assert isinstance(wep, WorkloadEndpoint)
    assert wep.apiVersion == "calyx.io/v1"
    assert wep.spec.ipNetworks == ["198.19.1.1/32", "fd00:19:1::1/128"]
    assert wep.spec.mac == "ee:ee:ee:ee:ee:01"
    assert wep.spec.ports[0].protocol == "TCP"


def test_kubernetes_namespace_is_converted_and_gets_the_name_label():
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, uid: x, labels: {team: a}}\nspec: {finalizers: [kubernetes]}\n"
    (ns,) = load_documents(text, "ns.yaml")
    assert isinstance(ns, Namespace)
    assert ns.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": "prod"}


def test_namespaced_kind_defaults_to_default_namespace_and_nodes_are_global():
    docs = load_documents(
        "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: a}\nspec: {node: n, interfaceName: cxa}\n"
        "---\napiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: n}\n",
        "f.yaml",
    )
    assert docs[0].namespace == "default"
    assert isinstance(docs[1], Node) and docs[1].namespace is None


def _error(text: str, **kwargs) -> str:
    with pytest.raises(DocumentError) as info:
        load_documents(text, "bad.yaml", **kwargs)
    return str(info.value)


GOOD = "apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: n1}\n---\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD + "kind: [", "bad.yaml: document 2: invalid YAML at line"),
        (
            GOOD + "apiVersion: calyx.io/v1\nkind: Gadget\nmetadata: {name: g}\n",
            "document 2 (Gadget g): kind: unknown kind 'Gadget'",
        ),
        (
            GOOD + "apiVersion: calyx.io/v9\nkind: Node\nmetadata: {name: g}\n",
            "document 2 (Node g): apiVersion: unsupported apiVersion",
        ),
        (
            GOOD + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {interfaceName: cxa}\n",
            "document 2 (WorkloadEndpoint w): spec.node: Field required",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: cxa, ipNetworks: 5}\n",
            "spec.ipNetworks: Input should be a valid list",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: cxa, ipNetworks: [10.0.0.1/33]}\n",
            "spec.ipNetworks[0]: '10.0.0.1/33' is not a valid CIDR",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: cxa, ipNetworks: [10.0.0.1/24]}\n",
            "has host bits set",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: cxa, nodee: x}\n",
            "spec.nodee: unknown field",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: a-very-long-interface}\n",
            "spec.interfaceName: 'a-very-long-interface' is not a valid Linux interface name",
        ),
        (
            GOOD
            + "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n, interfaceName: eth0}\n",
            "spec.interfaceName: 'eth0' is not a workload interface",
        ),
        (
            GOOD + "apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: Bad_Name}\n",
            "metadata.name: 'Bad_Name' is not a valid name",
        ),
        (
            GOOD + "apiVersion: calyx.io/v1\nkind: Node\nmetadata: {name: n2}\nspec: {bgp: {asNumber: 0}}\n",
            "spec.bgp.asNumber: Input should be greater than or equal to 1",
        ),
        (GOOD + "just a string\n", "document 2: expected a mapping"),
        (GOOD + "- just a list\n", "document 2, item 1: expected a mapping"),
    ],
)
def test_bad_documents_name_file_document_and_field(text, expected):
    assert expected in _error(text)


def test_namespace_flag_conflict_is_an_error():
    text = "apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: a}\nspec: {node: n, interfaceName: cxa}\n"
    assert "metadata.namespace: 'a' does not match" in _error(text, namespace="b")


def test_host_interface_name_follows_design():
    name = host_interface_name("default", "web-1")
    assert name.startswith("cx") and len(name) == 13
    assert name == host_interface_name("default", "web-1") != host_interface_name("other", "web-1")
