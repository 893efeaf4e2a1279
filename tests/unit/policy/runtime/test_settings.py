"""Every setting of felix, calyx-bgp and policyctl is validated where it is declared: a bad flag
or environment variable stops the command at parse time with exit code 2 and a message naming
the flag (and the variable), never a traceback or a daemon that runs and spins."""

import logging
import os

import click
import pytest
from click.testing import CliRunner

import bgp.main
import felix.main
import policy.ctl.main
from policy.runtime.settings import etcd_settings

COMMANDS = {"felix": felix.main, "calyx-bgp": bgp.main, "policyctl": policy.ctl.main}
DAEMONS = ["felix", "calyx-bgp"]
# The settings' variables, cleared so the environment the tests run in cannot leak in.
CLEAN_ENV: dict[str, str | None] = {
    name: None for name in [*os.environ, "NODENAME"] if name.startswith(("ETCD_", "CALYX_")) or name == "NODENAME"
}


class Reached(Exception):
    pass


@pytest.fixture
def reached(monkeypatch):
    """Stand in for etcd in all three commands: what reaches it is recorded and the command ends
    there (exit 0), so a setting that passes parsing never gets to the kernel."""
    seen = []

    def etcd(settings):
        seen.append(settings)
        raise click.exceptions.Exit(0)

    for module in COMMANDS.values():
        monkeypatch.setattr(module, "EtcdKV", etcd)
    return seen


def run(command: str, *args: str, env: dict[str, str] | None = None):
    argv = [*args, "get", "node"] if command == "policyctl" else ["--node-name", "n1", *args]
    if command == "calyx-bgp":
        argv = [*argv, "--ip", "10.0.0.1/24"]
    return CliRunner().invoke(COMMANDS[command].cli, argv, env={**CLEAN_ENV, **(env or {})})


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("command", DAEMONS)
@pytest.mark.parametrize("flag", ["--route-refresh-interval", "--etcd-backoff-max", "--etcd-timeout"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "soon"])
def test_daemons_refuse_a_zero_negative_or_nan_interval(reached, command, flag, value):
    assert_refused(run(command, flag, value), f"Invalid value for '{flag}'")
    assert reached == []


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_policyctl_refuses_a_bad_etcd_timeout(reached, value):
    assert_refused(run("policyctl", "--etcd-timeout", value), "Invalid value for '--etcd-timeout'")


@pytest.mark.parametrize(
    "command, variable, value, flag",
    [
        ("felix", "CALYX_ROUTE_REFRESH_INTERVAL", "0", "--route-refresh-interval"),
        ("felix", "CALYX_ETCD_BACKOFF_MAX", "nan", "--etcd-backoff-max"),
        ("felix", "CALYX_HEALTH_PORT", "70000", "--health-port"),
        ("calyx-bgp", "CALYX_BGP_ROUTE_REFRESH_INTERVAL", "-1", "--route-refresh-interval"),
        ("calyx-bgp", "CALYX_BGP_HEALTH_HOST", "999.1.1.1", "--health-host"),
        ("calyx-bgp", "CALYX_HOLD_TIME", "1", "--hold-time"),
        ("policyctl", "CALYX_ETCD_TIMEOUT", "nan", "--etcd-timeout"),
    ],
)
def test_a_bad_value_from_the_environment_names_flag_and_variable(reached, command, variable, value, flag):
    result = run(command, env={variable: value})
    assert_refused(result, f"Invalid value for '{flag}'", f"(from environment variable {variable})")


@pytest.mark.parametrize("command", DAEMONS)
@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--node-name", ""], {}, "must not be empty"),
        (["--node-name", "   "], {}, "must not be empty"),
        (["--node-name", " n1"], {}, "leading or trailing whitespace"),
        (["--node-name", "Node_1"], {}, "is not a valid name"),
        ([], {"NODENAME": "  "}, "(from environment variable NODENAME)"),
        ([], {"CALYX_NODE_NAME": " ", "NODENAME": "n1"}, "(from environment variable CALYX_NODE_NAME)"),
    ],
)
def test_daemons_refuse_an_empty_or_invalid_node_name(reached, command, args, env, message):
    argv = ["--ip", "10.0.0.1/24"] if command == "calyx-bgp" else []
    result = CliRunner().invoke(COMMANDS[command].cli, [*args, *argv], env={**CLEAN_ENV, **env})
    assert_refused(result, "Invalid value for '--node-name'", message)
    assert reached == []


@pytest.mark.parametrize("command", DAEMONS)
def test_an_empty_node_name_variable_is_not_set(reached, command):
    argv = ["--ip", "10.0.0.1/24"] if command == "calyx-bgp" else []
    result = CliRunner().invoke(COMMANDS[command].cli, argv, env={**CLEAN_ENV, "CALYX_NODE_NAME": "", "NODENAME": "n7"})
    assert result.exit_code == 0, result.output
    assert len(reached) == 1


@pytest.mark.parametrize("command", DAEMONS)
@pytest.mark.parametrize("port", ["70000", "-1", "65536", "http"])
def test_daemons_refuse_a_health_port_outside_0_to_65535(reached, command, port):
    assert_refused(run(command, "--health-port", port), "Invalid value for '--health-port'")


@pytest.mark.parametrize("command", DAEMONS)
@pytest.mark.parametrize("host", ["999.1.1.1", "localhost", "", "10.0.0.1/24"])
def test_daemons_refuse_a_health_host_that_is_not_an_ip_address(reached, command, host):
    assert_refused(run(command, "--health-host", host), "Invalid value for '--health-host'", "not an IP address")


@pytest.mark.parametrize("command", DAEMONS)
def test_good_values_pass_and_are_normalised(reached, command):
    result = run(
        command,
        "--health-host",
        "::1",
        "--health-port",
        "0",
        "--route-refresh-interval",
        "1",
        "--etcd-backoff-max",
        "0.1",
        "--etcd-timeout",
        "0.5",
        "--etcd-endpoints",
        " http://10.0.0.5:2379 ,,https://[fd00::5]:2379",
        "--etcd-ca-cert-file",
        __file__,
    )
    assert result.exit_code == 0, result.output
    assert reached[0].endpoints == ("http://10.0.0.5:2379", "https://[fd00::5]:2379") and reached[0].timeout == 0.5


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--etcd-ca-cert-file", "--etcd-cert-file", "--etcd-key-file"])
def test_every_command_refuses_a_missing_tls_file_at_parse_time(reached, tmp_path, command, flag):
    missing = tmp_path / "missing.pem"
    assert_refused(run(command, flag, str(missing)), f"Invalid value for '{flag}'", "does not exist")
    assert_refused(run(command, flag, str(tmp_path)), f"Invalid value for '{flag}'", "is a directory")
    assert reached == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_tls_file_from_the_environment_names_the_variable(reached, tmp_path, command):
    result = run(command, env={"ETCD_CA_CERT_FILE": str(tmp_path / "ca.pem")})
    assert_refused(result, "'--etcd-ca-cert-file'", "(from environment variable ETCD_CA_CERT_FILE)")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_etcd_endpoints_variable_means_the_default_for_every_command(reached, command):
    result = run(command, env={"ETCD_ENDPOINTS": ""})
    assert result.exit_code == 0, result.output
    assert reached[0].endpoints == ("http://127.0.0.1:2379",)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "args, env, message",
    [
        ([], {"ETCD_ENDPOINTS": " "}, "names no etcd endpoint"),
        ([], {"ETCD_ENDPOINTS": ","}, "(from environment variable ETCD_ENDPOINTS)"),
        (["--etcd-endpoints", ""], {}, "names no etcd endpoint"),
        (["--etcd-endpoints", "ftp://10.0.0.5"], {}, "invalid etcd endpoint 'ftp://10.0.0.5'"),
        (["--etcd-endpoints", "http://10.0.0.5:99999"], {}, "10.0.0.5:99999"),
    ],
)
def test_every_command_refuses_endpoints_that_name_no_endpoint(reached, command, args, env, message):
    assert_refused(run(command, *args, env=env), "Invalid value for '--etcd-endpoints'", message)
    assert reached == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_prefix_without_a_leading_slash(reached, command):
    assert_refused(run(command, "--etcd-prefix", "calyx"), "Invalid value for '--etcd-prefix'")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ip", "10.0.0.300/24"], "'--ip'"),
        (["--ip", "fd00::1/64"], "not an IPv4 address"),
        (["--ip6", "10.0.0.1/24"], "not an IPv6 address"),
        (["--ip-autodetection-method", "first-found"], "use interface=<regex>"),
        (["--ip-autodetection-method", "interface=eth("], "'--ip-autodetection-method'"),
        (["--ip-autodetection-method", "cidr=fd00::/64"], "not an IPv4 network"),
        (["--ip6-autodetection-method", "can-reach=10.0.0.1"], "not an IPv6 address"),
        (["--graceful-restart-time", "0"], "'--graceful-restart-time'"),
        (["--graceful-restart-time", "4096"], "'--graceful-restart-time'"),
        (["--hold-time", "2"], "'--hold-time'"),
        (["--as-number", "0"], "'--as-number'"),
        (["--as-number", "4294967296"], "'--as-number'"),
        (["--exabgp", " "], "'--exabgp'"),
        (["--run-dir", __file__], "'--run-dir'"),
    ],
)
def test_calyx_bgp_refuses_bad_bgp_settings(reached, args, message):
    result = CliRunner().invoke(bgp.main.cli, ["--node-name", "n1", *args], env=CLEAN_ENV)
    assert_refused(result, message)
    assert reached == []


def test_a_key_file_others_can_read_is_warned_about_by_name_and_mode(tmp_path, caplog):
    key = tmp_path / "client-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        etcd_settings("https://10.0.0.5:2379", None, str(tmp_path / "c.pem"), str(key), 5.0)
    assert any(str(key) in r.getMessage() and "0644" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        etcd_settings("https://10.0.0.5:2379", None, str(tmp_path / "c.pem"), str(key), 5.0)
    assert caplog.records == []


def test_policyctl_warns_about_a_group_readable_key_file(reached, tmp_path, caplog):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_text("k")
    cert.write_text("c")
    key.chmod(0o640)
    with caplog.at_level(logging.WARNING):
        result = run("policyctl", "--etcd-cert-file", str(cert), "--etcd-key-file", str(key))
    assert result.exit_code == 0, result.output
    assert f"etcd key file (--etcd-key-file) {key} has mode 0640" in caplog.text
