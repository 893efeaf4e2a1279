"""calyx-cni's logic without root: ADD (and its undo), DEL idempotency, CHECK, STATUS and GC."""

import pytest

from felix.cni.identity import NETWORK_ANNOTATION
from felix.cni.protocol import CHECK_FAILED, INVALID_CONFIG, INVALID_ENVIRONMENT, NOT_AVAILABLE, TRY_AGAIN_LATER
from policy.datastore.ipam import IPAM
from policy.datastore.store import ResourceStore, WriteMode
from tests.unit.felix.cni.conftest import NETWORK, NODE, Harness, write_pools


def added(cni, container="c1", **env):
    cni.sandbox(container)
    return cni.run("ADD", container, **env)


# -- ADD --------------------------------------------------------------------------------------
def test_add_writes_the_endpoint_and_returns_both_families(cni):
    result = added(cni)
    assert [ip["address"] for ip in result["ips"]] == ["10.64.0.0/32", "fd00:64::/128"]
    assert all(ip["interface"] == 1 for ip in result["ips"])
    host, container = result["interfaces"]
    assert host["name"].startswith("cx") and host["mac"] == "ee:ee:ee:ee:ee:ee" and "sandbox" not in host
    assert container == {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/c1"}
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::1"}]
    (endpoint,) = cni.endpoints()
    assert endpoint.name == "node1-cni-c1-eth0" and endpoint.namespace == "default"
    assert endpoint.metadata.annotations == {NETWORK_ANNOTATION: NETWORK}
    spec = endpoint.spec
    assert (spec.node, spec.interfaceName, spec.orchestrator, spec.containerID, spec.endpoint) == (
        NODE,
        host["name"],
        "cni",
        "c1",
        "eth0",
    )
    assert spec.ipNetworks == ["10.64.0.0/32", "fd00:64::/128"] and spec.mac == "02:00:00:00:00:01"
    assert cni.handles() == {f"{NETWORK}.c1": ["10.64.0.0", "fd00:64::"]}


def test_a_kubernetes_pod_is_named_by_its_namespace_and_pod(cni):
    added(
        cni,
        "abc123",
        args="IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abc123",
    )
    (endpoint,) = cni.endpoints()
    assert endpoint.namespace == "shop" and endpoint.name == "node1-k8s-web--1-eth0"
    assert (endpoint.spec.orchestrator, endpoint.spec.pod, endpoint.spec.workload) == ("k8s", "web-1", "web-1")


def test_labels_come_from_the_cni_args_convention(cni):
    cni.sandbox("c1")
    cni.run("ADD", "c1", cni.conf(args={"cni": {"labels": [{"key": "app", "value": "db"}]}}, namespace="lab"))
    (endpoint,) = cni.endpoints()
    assert endpoint.metadata.labels == {"app": "db"} and endpoint.namespace == "lab"


def test_only_ipv4_without_an_ipv6_pool():
    cni = Harness()
    write_pools(cni.kv, v6=False)
    result = added(cni)
    assert [ip["address"] for ip in result["ips"]] == ["10.64.0.0/32"]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]


def test_add_waits_for_felix_to_program_the_endpoint(cni, monkeypatch):
    calls = []

    def felix(url):
        calls.append(url)
        behind = 1 if len(calls) < 3 else 0  # felix catches up on the third look
        return {"inSync": True, "programmedRevision": cni.kv.revision - behind}

    cni.plugin.services.fetch_status = felix
    added(cni)
    assert len(calls) == 3 and calls[0] == "http://127.0.0.1:9099"


@pytest.mark.parametrize("felix", ["lagging", "down"])
def test_add_fails_closed_when_felix_does_not_program_in_time(cni, felix):
    cni.felix_lag, cni.felix_down = (1, False) if felix == "lagging" else (0, True)
    cni.sandbox("c1")
    error = cni.error("ADD", "c1")
    assert error.code == TRY_AGAIN_LATER
    assert "felix did not program the endpoint" in error.msg and "is calyx-node (felix) running" in error.details
    assert cni.endpoints() == [] and cni.dataplane.host == {} and cni.handles() == {} and cni.allocated() == set()


def test_a_failing_veth_undoes_the_allocation(cni):
    cni.dataplane.fail_attach = OSError(1, "Operation not permitted")
    cni.sandbox("c1")
    with pytest.raises(OSError):
        cni.run("ADD", "c1")
    assert cni.handles() == {} and cni.allocated() == set() and cni.endpoints() == []


def test_a_missing_netns_is_an_environment_error_and_undone(cni):
    error = cni.error("ADD", "c1", netns="/run/netns/gone")
    assert error.code == INVALID_ENVIRONMENT and "CNI_NETNS /run/netns/gone does not exist" in error.msg
    assert cni.handles() == {} and cni.allocated() == set()


def test_an_existing_container_interface_is_refused(cni):
    added(cni)
    error = cni.error("ADD", "c2", netns="/run/netns/c1")
    assert error.code == INVALID_ENVIRONMENT and "already has an interface eth0" in error.msg
    assert set(cni.handles()) == {f"{NETWORK}.c1"}


def test_etcd_out_of_reach_is_try_again_later(cni):
    cni.sandbox("c1")
    cni.kv.set_down(True)
    error = cni.error("ADD", "c1")
    assert error.code == TRY_AGAIN_LATER and "cannot reach etcd" in error.msg


def test_no_pool_is_reported_and_nothing_is_left():
    cni = Harness()
    cni.sandbox("c1")
    error = cni.error("ADD", "c1")
    assert error.code == 101 and "no enabled IPv4 IPPool selects node node1" in error.msg
    assert cni.handles() == {} and cni.dataplane.host == {}


def test_missing_ipam_is_a_config_error(cni):
    conf = cni.conf()
    del conf["ipam"]
    cni.sandbox("c1")
    error = cni.error("ADD", "c1", conf)
    assert error.code == INVALID_CONFIG and "ipam is missing" in error.msg


def test_prev_result_is_passed_through_and_extended(cni):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}], "ips": [], "dns": {"nameservers": ["10.0.0.10"]}}
    cni.sandbox("c1")
    result = cni.run("ADD", "c1", cni.conf(prevResult=prev))
    assert [i["name"] for i in result["interfaces"]][0] == "lo0"
    assert all(ip["interface"] == 2 for ip in result["ips"]) and result["dns"] == {"nameservers": ["10.0.0.10"]}


def test_a_stale_host_interface_of_the_same_pod_is_replaced(cni):
    args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web"
    added(cni, "old", args=args)
    result = added(cni, "new", args=args)
    (endpoint,) = cni.endpoints()
    assert endpoint.spec.containerID == "new" and cni.dataplane.host == {
        result["interfaces"][0]["name"]: "/run/netns/new"
    }


# -- DEL --------------------------------------------------------------------------------------
def test_del_removes_everything_and_is_idempotent(cni):
    added(cni)
    assert cni.run("DEL", "c1") is None
    assert cni.endpoints() == [] and cni.dataplane.host == {} and cni.handles() == {} and cni.allocated() == set()
    assert cni.run("DEL", "c1") is None  # twice
    assert cni.run("DEL", "never-added") is None  # a container never added
    assert cni.run("DEL", "c1", netns="") is None  # without a netns


def test_del_after_the_netns_is_gone(cni):
    added(cni)
    cni.dataplane.namespaces.discard("/run/netns/c1")
    cni.dataplane.workloads.clear()  # the kernel took the veth with the namespace
    cni.dataplane.host.clear()
    assert cni.run("DEL", "c1") is None
    assert cni.endpoints() == [] and cni.handles() == {}


def test_del_of_an_old_sandbox_keeps_the_newer_endpoint_but_releases_the_old_handle(cni):
    args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web"
    added(cni, "old", args=args)
    added(cni, "new", args=args)
    assert set(cni.handles()) == {f"{NETWORK}.old", f"{NETWORK}.new"}
    assert cni.run("DEL", "old", args=args) is None
    (endpoint,) = cni.endpoints()
    assert endpoint.spec.containerID == "new" and len(cni.dataplane.host) == 1
    assert set(cni.handles()) == {f"{NETWORK}.new"}


def test_del_refuses_to_guess_when_etcd_is_out_of_reach(cni):
    added(cni)
    cni.kv.set_down(True)
    error = cni.error("DEL", "c1")
    assert error.code == TRY_AGAIN_LATER and "cannot reach etcd" in error.msg
    cni.kv.set_down(False)
    assert len(cni.endpoints()) == 1 and len(cni.dataplane.host) == 1  # nothing was half-done


# -- CHECK ------------------------------------------------------------------------------------
def checked(cni, result, container="c1", **conf):
    return cni.run("CHECK", container, cni.conf(prevResult=result, **conf))


def test_check_passes_after_add(cni):
    result = added(cni)
    assert checked(cni, result) is None
    assert cni.delegated[-1] == "CHECK"


def test_check_reports_each_missing_piece(cni):
    result = added(cni)
    host = result["interfaces"][0]["name"]
    workload = cni.dataplane.workloads[("/run/netns/c1", "eth0")]
    workload["gateways"].discard("fe80::1")
    assert "no default route via fe80::1" in cni.error("CHECK", "c1", cni.conf(prevResult=result)).msg
    workload["addresses"].discard("10.64.0.0/32")
    assert "eth0 in the container lacks 10.64.0.0/32" in cni.error("CHECK", "c1", cni.conf(prevResult=result)).msg
    cni.dataplane.host.pop(host)
    assert f"host interface {host} is missing" in cni.error("CHECK", "c1", cni.conf(prevResult=result)).msg
    cni.kv.delete("/calyx/v1/workloadendpoints/default/node1-cni-c1-eth0")
    error = cni.error("CHECK", "c1", cni.conf(prevResult=result))
    assert error.code == CHECK_FAILED and "WorkloadEndpoint default/node1-cni-c1-eth0 is missing" in error.msg


def test_check_reports_a_released_address_and_felix_behind(cni):
    result = added(cni)
    cni.felix_lag = 1
    assert "felix has not programmed revision" in cni.error("CHECK", "c1", cni.conf(prevResult=result)).msg
    cni.felix_lag = 0
    cni.kv.delete(f"/calyx/v1/ipam/handles/{NETWORK}.c1")
    assert "IPAM handle net1.c1 holds no address" in cni.error("CHECK", "c1", cni.conf(prevResult=result)).msg


def test_check_needs_prev_result(cni):
    added(cni)
    error = cni.error("CHECK", "c1")
    assert error.code == INVALID_CONFIG and "prevResult" in error.msg


# -- STATUS and GC ----------------------------------------------------------------------------
def test_status(cni):
    assert cni.run("STATUS", "", cni.conf(cniVersion="1.1.0")) is None
    cni.felix_in_sync = False
    assert cni.error("STATUS", "", cni.conf(cniVersion="1.1.0")).code == NOT_AVAILABLE
    cni.felix_in_sync, cni.felix_down = True, True
    error = cni.error("STATUS", "", cni.conf(cniVersion="1.1.0"))
    assert error.code == NOT_AVAILABLE and "felix does not answer" in error.msg
    cni.felix_down = False
    cni.kv.set_down(True)
    assert "cannot reach etcd" in cni.error("STATUS", "", cni.conf(cniVersion="1.1.0")).msg


def test_gc_removes_what_is_not_a_valid_attachment_of_this_node_and_network(cni):
    for container in ("keep", "stale"):
        added(cni, container)
    cni.sandbox("other-net")
    cni.run("ADD", "other-net", cni.conf(name="net2"))
    other_node = cni.endpoints()[0].model_copy(deep=True)
    foreign = other_node.model_copy(
        update={
            "metadata": other_node.metadata.model_copy(update={"name": "node2-cni-x-eth0"}),
            "spec": other_node.spec.model_copy(
                update={"node": "node2", "containerID": "x", "ipNetworks": ["10.64.9.9/32"]}
            ),
        }
    )
    ResourceStore(cni.kv).write([foreign], WriteMode.CREATE)
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    assert cni.run("GC", "", cni.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})) is None
    names = sorted(e.name for e in cni.endpoints())
    assert names == ["node1-cni-keep-eth0", "node1-cni-other--net-eth0", "node2-cni-x-eth0"]
    assert set(cni.handles()) == {f"{NETWORK}.keep", "net2.other-net"}
    assert len(cni.dataplane.host) == 2


def test_gc_releases_the_addresses_of_an_add_that_died_before_its_endpoint(cni):
    added(cni, "keep")
    IPAM(cni.kv, "/calyx").allocate(NODE, f"{NETWORK}.killed", pool="10.64.0.0/16")
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    cni.run("GC", "", cni.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid}))
    assert set(cni.handles()) == {f"{NETWORK}.keep"}


def test_gc_without_valid_attachments_is_refused(cni):
    added(cni)
    error = cni.error("GC", "", cni.conf(cniVersion="1.1.0"))
    assert error.code == INVALID_CONFIG and "cni.dev/valid-attachments" in error.msg
    assert len(cni.endpoints()) == 1
