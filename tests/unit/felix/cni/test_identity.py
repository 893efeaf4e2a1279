"""Names: endpoints as Calico names them, host interfaces as DESIGN.md does, IPAM handles."""

from felix.cni.config import parse_netconf
from felix.cni.identity import Workload, ipam_handle
from felix.cni.protocol import Request
from policy.model.names import host_interface_name

CONF = parse_netconf(b'{"cniVersion": "1.0.0", "name": "net1", "namespace": "lab"}')


def workload(args="", container="0123abcd", ifname="eth0"):
    environ = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": container, "CNI_IFNAME": ifname, "CNI_ARGS": args}
    return Workload.of(Request.from_environ(environ), CONF)


def test_a_kubernetes_pod():
    pod = workload("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7f9")
    assert (pod.orchestrator, pod.namespace, pod.workload, pod.pod) == ("k8s", "shop", "web-7f9", "web-7f9")
    assert pod.endpoint_name("node-1") == "node--1-k8s-web--7f9-eth0"
    assert pod.host_interface == host_interface_name("shop", "web-7f9")


def test_a_container_of_another_runtime_uses_the_configured_namespace():
    container = workload("IgnoreUnknown=1;K8S_POD_NAME=podman-name")  # podman sets the pod name alone
    assert (container.orchestrator, container.namespace, container.workload) == ("cni", "lab", "0123abcd")
    assert container.pod == "podman-name" and container.endpoint_name("n1") == "n1-cni-0123abcd-eth0"


def test_a_second_interface_gets_its_own_host_interface():
    assert workload(ifname="eth1").host_interface == host_interface_name("lab", "0123abcd.eth1")
    assert workload(ifname="eth1").host_interface != workload().host_interface


def test_names_stay_valid_resource_names():
    assert workload(container="Ctr_ID").endpoint_name("n1") == "n1-cni-ctr.id-eth0"
    long = workload(container="a" * 300).endpoint_name("n1")
    assert len(long) == 253 and long != workload(container="a" * 299 + "b").endpoint_name("n1")


def test_handle():
    assert ipam_handle("k8s-pod-network", "abc") == "k8s-pod-network.abc"
