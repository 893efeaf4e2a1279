"""calyx-ipam: handles `<network>.<container>`, both families, reuse after a killed ADD, pools by
name or CIDR, idempotent DEL, and GC limited to this node's and this network's handles."""

import json

import pytest

from felix.cni.config import parse_netconf
from felix.cni.ipam import POOL_EXHAUSTED, CalyxIpam
from felix.cni.protocol import CHECK_FAILED, INVALID_CONFIG, CniError, Request
from policy.datastore.ipam import IPAM
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata, Node
from tests.fakes import FakeKV
from tests.lab.topology import Workload
from tests.unit.felix.cni.conftest import write_pools

CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "calyx-cni", "nodename": "node1"}


@pytest.fixture
def kv():
    store = FakeKV()
    write_pools(store)
    return store


def run(kv, command, container="c1", ipam=None, **conf):
    stdin = json.dumps({**CONF, "ipam": {"type": "calyx-ipam", **(ipam or {})}, **conf}).encode()
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/x",
        "CNI_PATH": "/x",
    }
    return CalyxIpam(lambda c: kv).run(Request.from_environ(environ), parse_netconf(stdin), stdin)


def error(kv, command, **kwargs) -> CniError:
    with pytest.raises(CniError) as caught:
        run(kv, command, **kwargs)
    return caught.value


def handles(kv):
    return {name: sorted(h.addresses) for name, h in IPAM(kv, "/calyx").handles().items()}


def test_add_returns_one_address_per_family_under_the_handle(kv):
    result = run(kv, "ADD")
    assert result == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.64.0.0/32"}, {"address": "fd00:64::/128"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {},
    }
    assert handles(kv) == {"net1.c1": ["10.64.0.0", "fd00:64::"]}


def test_a_retried_add_reuses_what_the_handle_holds(kv):
    first = run(kv, "ADD")
    assert run(kv, "ADD") == first and len(handles(kv)["net1.c1"]) == 2


def test_families_follow_the_configuration(kv):
    assert [ip["address"] for ip in run(kv, "ADD", "a", ipam={"assign_ipv6": "false"})["ips"]] == ["10.64.0.0/32"]
    assert [ip["address"] for ip in run(kv, "ADD", "b", ipam={"assign_ipv4": False})["ips"]] == ["fd00:64::/128"]
    assert error(kv, "ADD", container="c", ipam={"assign_ipv4": False, "assign_ipv6": False}).code == INVALID_CONFIG


def test_ipv6_asked_for_without_a_pool_is_an_error_and_releases_the_ipv4_address():
    kv = FakeKV()
    write_pools(kv, v6=False)
    failure = error(kv, "ADD", ipam={"assign_ipv6": True})
    assert failure.code == POOL_EXHAUSTED and "no enabled IPv6 IPPool selects node node1" in failure.msg
    assert handles(kv) == {}


def test_pools_by_name_or_cidr_in_order(kv):
    ResourceStore(kv).write(
        [IPPool(metadata=Metadata(name="extra"), spec=IPPoolSpec(cidr="10.99.0.0/30", blockSize=30))], WriteMode.CREATE
    )
    ips = [
        run(kv, "ADD", f"c{i}", ipam={"ipv4_pools": ["extra", "10.64.0.0/16"], "assign_ipv6": False})["ips"]
        for i in range(5)
    ]
    assert [i[0]["address"] for i in ips] == [
        "10.99.0.0/32",
        "10.99.0.1/32",
        "10.99.0.2/32",
        "10.99.0.3/32",
        "10.64.0.0/32",
    ]
    failure = error(kv, "ADD", container="x", ipam={"ipv4_pools": ["nope"]})
    assert failure.code == INVALID_CONFIG and "ipam.ipv4_pools: no enabled IPv4 IPPool 'nope'" in failure.msg


def test_a_full_pool_is_reported(kv):
    ResourceStore(kv).write(
        [IPPool(metadata=Metadata(name="tiny"), spec=IPPoolSpec(cidr="10.99.0.0/32", blockSize=32))], WriteMode.CREATE
    )
    run(kv, "ADD", "a", ipam={"ipv4_pools": ["tiny"], "assign_ipv6": False})
    failure = error(kv, "ADD", container="b", ipam={"ipv4_pools": ["tiny"], "assign_ipv6": False})
    assert failure.code == POOL_EXHAUSTED and "no free IPv4 address for node node1" in failure.msg


def test_pools_whose_node_selector_leaves_this_node_out_are_not_used(kv):
    ResourceStore(kv).write([Node(metadata=Metadata(name="node1", labels={"rack": "b"}))], WriteMode.CREATE)
    ResourceStore(kv).write(
        [IPPool(metadata=Metadata(name="rack-a"), spec=IPPoolSpec(cidr="10.70.0.0/16", nodeSelector="rack == 'a'"))],
        WriteMode.CREATE,
    )
    assert run(kv, "ADD")["ips"][0]["address"].startswith("10.64.")


def test_del_releases_and_is_idempotent(kv):
    run(kv, "ADD")
    assert run(kv, "DEL") is None and handles(kv) == {}
    assert run(kv, "DEL") is None and run(kv, "DEL", "never") is None


def test_check(kv):
    result = run(kv, "ADD")
    assert run(kv, "CHECK", prevResult=result) is None
    other = {**result, "ips": [{"address": "10.64.5.5/32"}]}
    assert "does not hold 10.64.5.5" in error(kv, "CHECK", prevResult=other).msg
    run(kv, "DEL")
    assert error(kv, "CHECK", prevResult=result).code == CHECK_FAILED


def test_status_needs_a_pool():
    assert error(FakeKV(), "STATUS", cniVersion="1.1.0").code == 50


def test_gc_releases_only_this_networks_stale_handles_on_this_node(kv):
    for container in ("keep", "stale"):
        run(kv, "ADD", container)
    run(kv, "ADD", "other", name="net2")
    ipam = IPAM(kv, "/calyx")
    ipam.allocate("node2", "net1.remote", pool="10.64.0.0/16")  # node2's own block
    borrowed = ipam.allocate("node2", "net1.borrower", address="10.64.0.40")  # node2 borrowing from node1's block
    borrower = Workload("node2", "borrower", "", borrowed, "fd00::1", "cxborrower").endpoint(
        networks=[f"{borrowed}/32"]
    )
    ResourceStore(kv).write([borrower], WriteMode.CREATE)
    run(kv, "GC", cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert set(handles(kv)) == {"net1.keep", "net2.other", "net1.remote", "net1.borrower"}
