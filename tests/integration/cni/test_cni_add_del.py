"""ADD and DEL as a runtime calls them, against real etcd and felix in a lab node."""

import pytest

from tests.integration.cni.conftest import cx_links, ipam_check, netconf, new_sandbox, run_plugin, workload_addresses

pytestmark = pytest.mark.integration


def test_add_gives_the_container_its_addresses_routes_and_a_programmed_endpoint(cni_lab):
    lab = cni_lab
    sandbox = new_sandbox(lab, "c1")
    added = run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "c1", sandbox)
    assert added.ok, (added.output, added.stderr)
    result = added.output
    assert result["cniVersion"] == "1.0.0"
    ips = [ip["address"] for ip in result["ips"]]
    assert len(ips) == 2 and ips[0].endswith("/32") and ips[1].endswith("/128")
    assert workload_addresses(sandbox) == set(ips)
    host = result["interfaces"][0]["name"]
    assert host.startswith("cx") and result["interfaces"][1] == {
        "name": "eth0",
        "mac": result["interfaces"][1]["mac"],
        "sandbox": sandbox,
    }
    assert {(dst, dev) for dst, dev in lab.kernel_routes("node1")} == {(ip, host) for ip in ips}
    deleted = run_plugin(lab, "node1", "DEL", netconf(lab, "node1"), "c1", sandbox)
    assert deleted.ok and deleted.output is None, deleted.output
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    assert ipam_check(lab)[0] == 0
