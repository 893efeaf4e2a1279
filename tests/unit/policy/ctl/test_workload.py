"""policyctl workload: the network configuration it hands calyx-cni, and bad flags refused before
anything runs."""

import pytest
from click.testing import CliRunner

from policy.ctl.main import cli
from policy.ctl.workload import netconf

ETCD = {
    "etcd_endpoints": "https://10.0.0.5:2379",
    "etcd_prefix": "/calyx",
    "etcd_timeout": 5.0,
    "etcd_ca_cert_file": "/etc/calyx/ca.pem",
    "etcd_cert_file": None,
    "etcd_key_file": None,
}
OPTIONS = {"mtu": 1500, "log_file": "/tmp/cni.log", "felix_health_url": "http://127.0.0.1:9099", "felix_timeout": 30.0}


def test_the_configuration_carries_node_namespace_labels_and_datastore():
    conf = netconf(ETCD, "calyx", "node1", "prod", {"app": "web", "tier": "1"}, **OPTIONS)
    assert conf["type"] == "calyx-cni" and conf["ipam"] == {"type": "calyx-ipam"}
    assert conf["nodename"] == "node1" and conf["namespace"] == "prod"
    assert conf["args"]["cni"]["labels"] == [{"key": "app", "value": "web"}, {"key": "tier", "value": "1"}]
    assert conf["etcd_ca_cert_file"] == "/etc/calyx/ca.pem" and "etcd_key_file" not in conf


@pytest.mark.parametrize(("address", "off"), [("10.65.0.7", "assign_ipv6"), ("fd00::7", "assign_ipv4")])
def test_a_given_address_draws_no_address_of_the_other_family(address, off):
    conf = netconf(ETCD, "calyx", "node1", "prod", {}, address=address, **OPTIONS)
    assert conf["ipam"] == {"type": "calyx-ipam", off: False}


def test_the_configuration_is_accepted_by_calyx_cni():
    import json

    config = pytest.importorskip("felix.cni.config")
    parsed = config.parse_netconf(json.dumps(netconf(ETCD, "calyx", "node1", "prod", {"a": "b"}, **OPTIONS)).encode())
    assert parsed.labels() == {"a": "b"} and parsed.namespace == "prod" and parsed.nodename == "node1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "web1"], "is not NAMESPACE/NAME"),
        (["--name", "default/web1", "--label", "app"], "'app' is not key=value"),
        (["--name", "default/web1", "--ip", "10.0.0.300"], "is not an IP address"),
    ],
)
def test_bad_flags_are_refused_before_anything_runs(tmp_path, args, message):
    netns = tmp_path / "netns"
    netns.write_text("")
    result = CliRunner().invoke(cli, ["workload", "add", "--node", "node1", "--netns", str(netns), *args])
    assert result.exit_code == 2 and message in result.output
