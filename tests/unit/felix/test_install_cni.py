"""calyx-install-cni against temporary host directories: what it writes, with which modes, atomically,
idempotently, and nothing at all on bad input."""

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from felix.install_cni import api_server_url, cli, render_conflist

TEMPLATE = json.dumps(
    {
        "name": "k8s-pod-network",
        "cniVersion": "1.0.0",
        "plugins": [
            {
                "type": "calyx-cni",
                "etcd_endpoints": "__ETCD_ENDPOINTS__",
                "etcd_prefix": "__ETCD_PREFIX__",
                "etcd_ca_cert_file": "__ETCD_CA_CERT_FILE__",
                "etcd_cert_file": "__ETCD_CERT_FILE__",
                "etcd_key_file": "__ETCD_KEY_FILE__",
                "nodename": "__NODENAME__",
                "mtu": "__CNI_MTU__",
                "log_level": "__LOG_LEVEL__",
                "ipam": {"type": "calyx-ipam"},
                "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"},
            }
        ],
    }
)


@pytest.fixture
def host(tmp_path: Path) -> dict:
    """A fake host (its CNI directories), the plugins in a source directory (as the image's C
    client), and a mounted service account."""
    bin_dir, net_dir, tools, account = (tmp_path / d for d in ("opt-cni-bin", "etc-cni-net.d", "tools", "sa"))
    for directory in (bin_dir, net_dir, tools, account):
        directory.mkdir()
    for name in ("calyx-cni", "calyx-ipam"):
        (tools / name).write_bytes(b"\x7fELF a static " + name.encode())
        (tools / name).chmod(0o755)
    (account / "token").write_text("the-token\n")
    (account / "ca.crt").write_bytes(b"-----CA-----\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "CALYX_CNI_PLUGIN_SOURCE_DIR": str(tools),
        "CALYX_CNI_BIN_DIR": str(bin_dir),
        "CALYX_CNI_NET_DIR": str(net_dir),
        "CALYX_SERVICE_ACCOUNT_DIR": str(account),
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "CALYX_CNI_NETWORK_CONFIG": TEMPLATE,
        "ETCD_ENDPOINTS": "https://10.0.0.5:2379,https://10.0.0.6:2379",
        "NODENAME": "node-1",
        "CALYX_CNI_MTU": "1440",
    }
    return {"bin": bin_dir, "net": net_dir, "tools": tools, "account": account, "env": env, "tmp": tmp_path}


def run(host: dict, *args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env={**host["env"], **env}, catch_exceptions=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_install_writes_plugins_conflist_and_kubeconfig(host):
    result = run(host)
    assert result.exit_code == 0, result.output
    for name in ("calyx-cni", "calyx-ipam"):
        assert (host["bin"] / name).read_bytes() == (host["tools"] / name).read_bytes()
        assert mode(host["bin"] / name) == 0o755
    conflist = host["net"] / "10-calyx.conflist"
    assert mode(conflist) == 0o600
    plugin = json.loads(conflist.read_text())["plugins"][0]
    assert plugin["etcd_endpoints"] == "https://10.0.0.5:2379,https://10.0.0.6:2379"
    assert plugin["etcd_prefix"] == "/calyx"
    assert plugin["nodename"] == "node-1"
    assert plugin["mtu"] == 1440  # a number, as the placeholder stood for one
    assert plugin["log_level"] == "info"
    assert plugin["etcd_ca_cert_file"] == plugin["etcd_cert_file"] == plugin["etcd_key_file"] == ""
    assert plugin["kubernetes"]["kubeconfig"] == "/etc/cni/net.d/calyx-kubeconfig"  # the host's own path
    kubeconfig = host["net"] / "calyx-kubeconfig"
    assert mode(kubeconfig) == 0o600
    config = json.loads(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://10.96.0.1:443"
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]) == b"-----CA-----\n"
    assert config["users"][0]["user"]["token"] == "the-token"
    assert listing(host["net"]) == ["10-calyx.conflist", "calyx-kubeconfig"]  # no temporary files left


def test_etcd_tls_files_are_copied_private_and_named_by_host_path(host):
    secrets = host["tmp"] / "secrets"
    secrets.mkdir()
    for name in ("ca", "cert", "key"):
        (secrets / name).write_text(f"{name}-data")
    result = run(
        host,
        ETCD_CA_CERT_FILE=str(secrets / "ca"),
        ETCD_CERT_FILE=str(secrets / "cert"),
        ETCD_KEY_FILE=str(secrets / "key"),
    )
    assert result.exit_code == 0, result.output
    tls = host["net"] / "calyx-tls"
    assert mode(tls) == 0o700
    assert {p.name: (p.read_text(), mode(p)) for p in tls.iterdir()} == {
        "etcd-ca": ("ca-data", 0o600),
        "etcd-cert": ("cert-data", 0o600),
        "etcd-key": ("key-data", 0o600),
    }
    plugin = json.loads((host["net"] / "10-calyx.conflist").read_text())["plugins"][0]
    assert plugin["etcd_ca_cert_file"] == "/etc/cni/net.d/calyx-tls/etcd-ca"
    assert plugin["etcd_key_file"] == "/etc/cni/net.d/calyx-tls/etcd-key"


def test_a_second_run_rewrites_nothing(host):
    assert run(host).exit_code == 0
    files = [host["bin"] / "calyx-cni", host["net"] / "10-calyx.conflist", host["net"] / "calyx-kubeconfig"]
    before = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}
    result = run(host)
    assert result.exit_code == 0
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files} == before
    assert "installed" not in result.output and result.output.count("unchanged") == 4


def test_a_wrong_mode_or_content_is_repaired(host):
    assert run(host).exit_code == 0
    (host["net"] / "10-calyx.conflist").chmod(0o644)
    (host["bin"] / "calyx-ipam").write_text("truncated")
    assert run(host).exit_code == 0
    assert mode(host["net"] / "10-calyx.conflist") == 0o600
    assert (host["bin"] / "calyx-ipam").read_bytes() == (host["tools"] / "calyx-ipam").read_bytes()


def test_a_change_replaces_the_file_whole(host):
    """A reader that opened the old conflist keeps reading all of the old one: a rename, not a rewrite."""
    assert run(host).exit_code == 0
    conflist = host["net"] / "10-calyx.conflist"
    with conflist.open() as old:
        assert run(host, CALYX_CNI_MTU="9000").exit_code == 0
        assert json.loads(old.read())["plugins"][0]["mtu"] == 1440
    assert json.loads(conflist.read_text())["plugins"][0]["mtu"] == 9000


def test_outside_a_pod_there_is_no_kubeconfig(host):
    (host["account"] / "token").unlink()
    assert run(host, KUBERNETES_SERVICE_HOST="").exit_code == 0
    assert not (host["net"] / "calyx-kubeconfig").exists()
    assert json.loads((host["net"] / "10-calyx.conflist").read_text())["plugins"][0]["kubernetes"]["kubeconfig"] == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALYX_CNI_NETWORK_CONFIG": "{not json"}, "network config: not JSON: line 1 column 2"),
        ({"CALYX_CNI_NETWORK_CONFIG": TEMPLATE.replace("__NODENAME__", "__NODE__")}, "unknown placeholder __NODE__"),
        ({"CALYX_CNI_NETWORK_CONFIG": '{"name": "x", "plugins": []}'}, "not a conflist"),
        ({"CALYX_CNI_PLUGINS": "calyx-cni,calyx-missing"}, "CNI plugin calyx-missing is not in "),
        ({"KUBERNETES_SERVICE_HOST": ""}, "KUBERNETES_SERVICE_HOST is not set"),
    ],
)
def test_bad_input_is_named_and_writes_nothing(host, env, message):
    result = run(host, **env)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert listing(host["bin"]) == listing(host["net"]) == []


def test_a_python_entry_point_is_not_copied_to_a_host_without_python(host):
    (host["tools"] / "calyx-cni").write_text("#!/opt/calyx/bin/python\nfrom felix.cni.main import cni_main\n")
    result = run(host)
    assert result.exit_code == 1 and "calyx-cni is a script: the host may not have its interpreter" in result.output
    assert listing(host["bin"]) == listing(host["net"]) == []


def test_a_missing_template_is_a_usage_error(host):
    result = run(host, CALYX_CNI_NETWORK_CONFIG="")
    assert result.exit_code == 2
    assert "--network-config" in result.output


def test_uninstall_removes_what_install_wrote_and_nothing_else(host):
    secrets = host["tmp"] / "secrets"
    secrets.mkdir()
    (secrets / "ca").write_text("ca")
    (host["net"] / "99-other.conflist").write_text("{}")
    (host["bin"] / "loopback").write_text("other plugin")
    assert run(host, ETCD_CA_CERT_FILE=str(secrets / "ca")).exit_code == 0
    result = run(host, "--uninstall")
    assert result.exit_code == 0, result.output
    assert listing(host["net"]) == ["99-other.conflist"]
    assert listing(host["bin"]) == ["loopback"]
    assert run(host, "--uninstall").exit_code == 0  # again: nothing left to remove is fine


def test_render_keeps_what_is_not_a_placeholder():
    rendered = json.loads(render_conflist('{"plugins": [{"type": "x", "a": "__X__ y", "b": 3}]}', {"X": 1}))
    assert rendered == {"plugins": [{"type": "x", "a": "__X__ y", "b": 3}]}


def test_ipv6_api_server_is_bracketed():
    assert api_server_url("fd00::1", 6443) == "https://[fd00::1]:6443"


def test_umask_does_not_widen_modes(host):
    old = os.umask(0)
    try:
        assert run(host).exit_code == 0
    finally:
        os.umask(old)
    assert mode(host["net"] / "10-calyx.conflist") == 0o600
