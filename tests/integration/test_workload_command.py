"""`policyctl workload add|remove` on a lab node: run in the node's namespace (its "host") with
the lab's etcd and the node's felix, it gives a namespace an address, the veth and an endpoint
felix has programmed, and takes all of it away again; a failed ADD leaves nothing behind."""

import json
import sys

import pytest

from policy.datastore.ipam import IPAM
from policy.model.names import host_interface_name
from policy.model.resources import WorkloadEndpoint
from tests.integration.cni.conftest import POOL4, add_pools, cx_links, new_sandbox, plugin_dir, workload_addresses
from tests.lab import netns
from tests.lab.processes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def node_lab(lab_factory):
    lab = lab_factory(nodes=1)
    add_pools(lab)
    lab.start_felix("node1")
    wait_for(lambda: lab.felix_status("node1").get("inSync"), timeout=20, what="felix in sync")
    return lab


def policyctl(lab, *args: str):
    flags = ["--cni-path", str(plugin_dir(lab)), "--log-file", str(lab.dir / "node1" / "cni.log"),
             "--felix-health-url", f"http://{lab.nodes['node1'].address}:9099"]  # fmt: skip
    command = [sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), "workload", *args, "--node", "node1", *flags]
    return netns.in_ns(lab.nodes["node1"].netns, *command, check=False, timeout=120)


def endpoints(lab) -> list[WorkloadEndpoint]:
    found, _ = lab.store.list_kind(WorkloadEndpoint)
    return found


def test_add_attaches_and_remove_detaches(node_lab):
    lab = node_lab
    sandbox = new_sandbox(lab, "web1")
    done = policyctl(lab, "add", "--netns", sandbox, "--name", "default/web1", "--label", "app=web")
    assert done.returncode == 0, done.stderr + done.stdout
    (endpoint,) = endpoints(lab)
    assert endpoint.namespace == "default" and endpoint.metadata.labels.get("app") == "web"
    interface = host_interface_name("default", "web1")
    assert endpoint.spec.interfaceName == interface and cx_links(lab, "node1") == [interface]
    (address4,) = [a for a in workload_addresses(sandbox) if "." in a]
    assert address4.endswith("/32") and address4.startswith(POOL4.split(".0.0")[0])
    routes = netns.in_ns(lab.nodes["node1"].netns, "ip", "-j", "route", "show", "proto", "76").stdout
    assert any(r["dst"] == address4.split("/")[0] and r["dev"] == interface for r in json.loads(routes))
    assert f"via {interface}" in done.stdout

    done = policyctl(lab, "remove", "--netns", sandbox, "--name", "default/web1")
    assert done.returncode == 0, done.stderr + done.stdout
    assert endpoints(lab) == [] and cx_links(lab, "node1") == []
    assert IPAM(lab.kv, lab.prefix).handles() == {}


def test_a_given_address_is_used_and_released(node_lab):
    lab = node_lab
    sandbox = new_sandbox(lab, "db1")
    done = policyctl(lab, "add", "--netns", sandbox, "--name", "prod/db1", "--ip", "198.19.7.7")
    assert done.returncode == 0, done.stderr + done.stdout
    assert workload_addresses(sandbox) == {"198.19.7.7/32"}  # and no IPv6 one drawn beside it
    assert policyctl(lab, "remove", "--name", "prod/db1").returncode == 0
    assert IPAM(lab.kv, lab.prefix).handles() == {} and endpoints(lab) == []


def test_a_failed_add_leaves_nothing(node_lab):
    lab = node_lab
    sandbox = new_sandbox(lab, "late")
    # felix is told to be somewhere it is not: ADD cannot see the endpoint programmed and undoes all.
    flags = [sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), "workload", "add", "--node", "node1",
             "--netns", sandbox, "--name", "default/late", "--ip", "198.19.8.8", "--cni-path", str(plugin_dir(lab)),
             "--log-file", str(lab.dir / "node1" / "cni.log"), "--felix-health-url", "http://127.0.0.1:1",
             "--felix-timeout", "2"]  # fmt: skip
    done = netns.in_ns(lab.nodes["node1"].netns, *flags, check=False, timeout=120)
    assert done.returncode == 1 and "ADD failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert endpoints(lab) == [] and cx_links(lab, "node1") == [] and workload_addresses(sandbox) == set()
    assert IPAM(lab.kv, lab.prefix).handles() == {}
