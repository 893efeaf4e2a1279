"""Kubernetes mode: what ADD takes from a pod (labels, named ports, service account)."""

from types import SimpleNamespace as Fake

from felix.cni.config import parse_netconf
from felix.cni.identity import Workload
from felix.cni.kube import pod_info, pod_info_of
from policy.model.resources import EndpointPort


def test_labels_named_ports_and_service_account_of_a_pod():
    pod = Fake(
        metadata=Fake(labels={"app": "web"}),
        spec=Fake(
            service_account_name="web-sa",
            containers=[
                Fake(
                    ports=[
                        Fake(name="http", protocol="TCP", container_port=8080),
                        Fake(name=None, protocol="TCP", container_port=9),
                    ]
                ),
                Fake(ports=None),
                Fake(ports=[Fake(name="dns", protocol="UDP", container_port=53)]),
            ],
        ),
    )
    info = pod_info_of(pod)
    assert info.labels == {"app": "web"} and info.service_account == "web-sa"
    assert info.ports == (EndpointPort(name="http", port=8080), EndpointPort(name="dns", protocol="UDP", port=53))


def test_without_kubernetes_mode_the_api_is_not_asked():
    conf = parse_netconf(
        b'{"cniVersion": "1.0.0", "name": "n", "args": {"cni": {"labels": [{"key": "a", "value": "b"}]}}}'
    )
    workload = Workload("k8s", "shop", "web", "c1", "eth0", "web")
    assert pod_info(conf, workload).labels == {"a": "b"}
