"""The network configuration: Calico's field names and value forms, defaults, and a bad value
reported by field (code 7) or input that is not JSON (code 6)."""

import json

import pytest

from felix.cni.config import (
    DEFAULT_FELIX_HEALTH_URL,
    DEFAULT_NODENAME_FILE,
    DEFAULT_SOCKET,
    parse_netconf,
    read_version,
)
from felix.cni.protocol import DECODING_FAILURE, INVALID_CONFIG, CniError

BASE = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calyx-cni", "ipam": {"type": "calyx-ipam"}}


def parse(**fields):
    return parse_netconf(json.dumps({**BASE, **fields}).encode())


def config_error(**fields) -> CniError:
    with pytest.raises(CniError) as caught:
        parse(**fields)
    return caught.value


def test_defaults():
    conf = parse()
    assert conf.endpoints == ("http://127.0.0.1:2379",) and conf.etcd_prefix == "/calyx"
    assert conf.nodename is None and conf.nodename_file == DEFAULT_NODENAME_FILE
    assert conf.mtu == 1500 and conf.log_level == "INFO" and conf.felix_health_url == DEFAULT_FELIX_HEALTH_URL
    assert conf.policy_setup_timeout_seconds == 30 and conf.namespace == "default" and not conf.kubernetes_mode
    assert conf.ipam.assign_ipv4 is None and conf.ipam.assign_ipv6 is None
    assert conf.cni_socket == DEFAULT_SOCKET == "/run/calyx/cni.sock"
    assert parse(cni_socket="/var/run/calyx/node1.sock").cni_socket == "/var/run/calyx/node1.sock"


def test_a_calico_conflist_entry_converts_by_changing_its_type():
    calico = {
        "type": "calyx-cni",
        "log_level": "warning",
        "log_file_path": "/var/log/calico/cni/cni.log",
        "datastore_type": "etcdv3",
        "etcd_endpoints": "https://10.0.0.5:2379,https://10.0.0.6:2379",
        "etcd_key_file": "/etc/cni/net.d/calico-tls/etcd-key",
        "etcd_cert_file": "/etc/cni/net.d/calico-tls/etcd-cert",
        "etcd_ca_cert_file": "/etc/cni/net.d/calico-tls/etcd-ca",
        "mtu": 0,
        "ipam": {
            "type": "calyx-ipam",
            "assign_ipv4": "true",
            "assign_ipv6": "false",
            "ipv4_pools": ["default-ipv4-ippool"],
        },
        "policy": {"type": "k8s"},
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
        "container_settings": {"allow_ip_forwarding": False},
    }
    conf = parse(**calico)
    assert conf.endpoints == ("https://10.0.0.5:2379", "https://10.0.0.6:2379")
    assert conf.etcd_ca_cert_file == "/etc/cni/net.d/calico-tls/etcd-ca" and conf.log_level == "WARNING"
    assert conf.mtu == 1500 and conf.kubernetes_mode and conf.kubernetes.kubeconfig.endswith("calico-kubeconfig")
    assert (
        conf.ipam.assign_ipv4 is True
        and conf.ipam.assign_ipv6 is False
        and conf.ipam.ipv4_pools == ["default-ipv4-ippool"]
    )


def test_empty_strings_mean_unset():
    conf = parse(etcd_cert_file="", etcd_key_file="", etcd_ca_cert_file="", nodename="")
    assert (conf.etcd_cert_file, conf.etcd_key_file, conf.etcd_ca_cert_file, conf.nodename) == (None, None, None, None)


def test_runtime_fields_are_read():
    conf = parse(
        prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/32"}]},
        runtimeConfig={"portMappings": []},
        **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]},
        args={"cni": {"labels": [{"key": "app", "value": "web"}]}},
    )
    assert conf.prev_result().ips[0].address == "10.0.0.1/32"
    assert [(a.containerID, a.ifname) for a in conf.valid_attachments] == [("c1", "eth0")]
    assert conf.labels() == {"app": "web"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mtu": "big"}, "mtu: Input should be a valid integer"),
        ({"mtu": 70000}, "mtu: Input should be less than or equal to 65535"),
        ({"name": "-net"}, "name: a network name starts with a letter or digit"),
        ({"log_level": "loud"}, "log_level: must be one of debug, error, info, warning"),
        ({"etcd_prefix": "calyx"}, "etcd_prefix: must start with '/'"),
        ({"etcd_endpoints": " , "}, "etcd_endpoints: names no etcd endpoint"),
        ({"ipam": {"type": "../calyx-ipam"}}, "ipam.type: must name an IPAM plugin executable"),
        ({"ipam": {"type": "calyx-ipam", "assign_ipv6": "maybe"}}, "ipam.assign_ipv6: must be true or false"),
        ({"dns": {"nameservers": ["dns.example"]}}, "dns: "),
        ({"policy_setup_timeout_seconds": 0}, "policy_setup_timeout_seconds: Input should be greater than 0"),
        ({"name": None}, "name: Input should be a valid string"),
        ({"cni_socket": "run/cni.sock"}, "cni_socket: must be an absolute path"),
        ({"cni_socket": "/" + "x" * 107}, "cni_socket: is 108 bytes; a unix socket path holds at most 107"),
        ({"cni_socket": '/run/"cni".sock'}, "cni_socket: must not contain quotes or backslashes"),
        ({"cni_socket": 5}, "cni_socket: Input should be a valid string"),
    ],
)
def test_a_bad_field_is_code_7_naming_it(fields, message):
    error = config_error(**fields)
    assert error.code == INVALID_CONFIG and error.msg.startswith("invalid network configuration: ")
    assert message in error.msg


def test_a_missing_required_field_is_named():
    with pytest.raises(CniError) as caught:
        parse_netconf(b'{"cniVersion": "1.0.0"}')
    assert caught.value.code == INVALID_CONFIG and "name: Field required" in caught.value.msg


@pytest.mark.parametrize("stdin", [b"", b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_input_that_is_not_a_json_object_is_code_6(stdin):
    with pytest.raises(CniError) as caught:
        parse_netconf(stdin)
    assert caught.value.code == DECODING_FAILURE and "network configuration on stdin" in caught.value.msg


def test_read_version_defaults_as_the_spec_does():
    assert read_version(b"{}") == "0.1.0" and read_version(b'{"cniVersion": "1.1.0"}') == "1.1.0"
