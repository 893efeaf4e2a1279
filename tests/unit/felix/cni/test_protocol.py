"""The CNI protocol: environment checks (code 4 naming the variables), version negotiation
(code 1), and result shapes per cniVersion."""

import json

import pytest

from felix.cni.protocol import (
    INCOMPATIBLE_VERSION,
    INVALID_ENVIRONMENT,
    CniError,
    Interface,
    IPConfig,
    Request,
    Result,
    Route,
    check_version,
    parse_cni_args,
)

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/c1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def env_error(environ) -> CniError:
    with pytest.raises(CniError) as caught:
        Request.from_environ(environ)
    return caught.value


def test_a_full_add_environment_parses():
    request = Request.from_environ(
        {**ADD_ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web", "CNI_PATH": "/a:/b"}
    )
    assert (request.command, request.container_id, request.netns, request.ifname) == (
        "ADD",
        "c1",
        "/run/netns/c1",
        "eth0",
    )
    assert request.args == {"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "web"} and request.path == ("/a", "/b")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CNI_COMMAND": None}, "CNI_COMMAND is not set"),
        ({"CNI_COMMAND": "ATTACH"}, "CNI_COMMAND 'ATTACH' is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
        ({"CNI_NETNS": None, "CNI_IFNAME": ""}, "required environment variables missing: CNI_NETNS, CNI_IFNAME"),
        ({"CNI_CONTAINERID": "-bad/id"}, "CNI_CONTAINERID '-bad/id' has invalid characters"),
        ({"CNI_IFNAME": "an-interface-name-too-long"}, "is not a Linux interface name"),
        ({"CNI_IFNAME": "eth:0"}, "is not a Linux interface name"),
        ({"CNI_ARGS": "K8S_POD_NAME"}, "CNI_ARGS: 'K8S_POD_NAME' is not KEY=VALUE"),
    ],
)
def test_a_bad_environment_is_code_4_naming_what_is_wrong(change, message):
    environ = {k: v for k, v in {**ADD_ENV, **change}.items() if v is not None}
    error = env_error(environ)
    assert error.code == INVALID_ENVIRONMENT and message in error.msg


def test_del_needs_neither_netns_nor_path():
    request = Request.from_environ({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"})
    assert request.netns == "" and request.path == ()
    assert Request.from_environ({"CNI_COMMAND": "VERSION"}).command == "VERSION"


def test_cni_args_keep_values_with_equals_signs():
    assert parse_cni_args("A=1;;B=x=y") == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_supported_versions_pass_for_add(version):
    check_version("ADD", version)


@pytest.mark.parametrize(
    ("command", "version", "message"),
    [
        ("ADD", "0.2.0", "cniVersion 0.2.0 is not supported"),
        ("ADD", "2.0.0", "cniVersion 2.0.0 is not supported"),
        ("CHECK", "0.3.1", "config version 0.3.1 does not allow CHECK (needs 0.4.0+)"),
        ("GC", "1.0.0", "does not allow GC (needs 1.1.0+)"),
        ("STATUS", "1.0.0", "does not allow STATUS (needs 1.1.0+)"),
    ],
)
def test_unsupported_versions_are_code_1(command, version, message):
    with pytest.raises(CniError) as caught:
        check_version(command, version)
    assert caught.value.code == INCOMPATIBLE_VERSION and message in caught.value.msg


def test_a_version_that_is_not_one_is_a_decoding_error():
    with pytest.raises(CniError) as caught:
        check_version("ADD", "one")
    assert caught.value.code == 6


RESULT = Result(
    [Interface("cxabc", "ee:ee:ee:ee:ee:ee"), Interface("eth0", "02:00:00:00:00:01", "/run/netns/c1")],
    [IPConfig("10.64.0.5/32", interface=1), IPConfig("fd00::5/128", interface=1)],
    [Route("0.0.0.0/0", "169.254.1.1"), Route("::/0", "fe80::1")],
)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_legacy_results_carry_the_ip_version(version):
    body = RESULT.to_json(version)
    assert body["cniVersion"] == version
    assert body["ips"] == [
        {"version": "4", "address": "10.64.0.5/32", "interface": 1},
        {"version": "6", "address": "fd00::5/128", "interface": 1},
    ]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_results_from_1_0_0_have_no_ip_version(version):
    body = RESULT.to_json(version)
    assert body == {
        "cniVersion": version,
        "interfaces": [
            {"name": "cxabc", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/c1"},
        ],
        "ips": [{"address": "10.64.0.5/32", "interface": 1}, {"address": "fd00::5/128", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::1"}],
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_a_result_reads_back_from_each_version(version):
    assert Result.from_json(json.loads(json.dumps(RESULT.to_json(version)))) == RESULT


@pytest.mark.parametrize(
    "bad", [[], {"ips": [{"address": "not-an-ip"}]}, {"ips": [{}]}, {"interfaces": [{"mac": "x"}]}, {"routes": "x"}]
)
def test_a_malformed_result_is_a_decoding_error(bad):
    with pytest.raises(CniError) as caught:
        Result.from_json(bad)
    assert caught.value.code == 6 and "prevResult" in caught.value.msg


def test_errors_render_as_the_spec_says():
    assert CniError(11, "try later", "why").to_json("1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 11,
        "msg": "try later",
        "details": "why",
    }
    assert "details" not in CniError(7, "bad").to_json("1.0.0")
