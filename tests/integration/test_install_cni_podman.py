"""The conflist calyx-install-cni renders from the manifests' ConfigMap, loaded by a real CNI
loader: podman's (libcni), which checks the JSON, finds every plugin in the plugin directory
and asks each for the CNI versions it speaks (the installed C client answers VERSION without a
server). Runs inside the controller namespace the integration conftest entered; every
directory is temporary."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
CLIENT = ROOT / "build" / "cni-client"  # what install-cni copies: the static client of calyx-cni-server


def cni_template() -> str:
    (config,) = [
        d for d in yaml.safe_load_all((ROOT / "manifests" / "calyx.yaml").read_text()) if d and d["kind"] == "ConfigMap"
    ]
    return config["data"]["cni_network_config"]


def podman(state: Path, conf_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "--root", str(state / "root"), "--runroot", str(state / "run"), "--network-backend", "cni",
         "--network-config-dir", str(conf_dir), *args],
        env={**os.environ, "CONTAINERS_CONF": str(state / "containers.conf")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def podman_state():
    """podman's storage and run root: a short path of our own (podman refuses a runroot over 50 characters)."""
    state = Path(tempfile.mkdtemp(prefix="cxpod", dir="/tmp"))
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed (apt-get install -y podman)")
def test_podman_loads_the_installed_conflist(tmp_path, podman_state):
    for plugin in ("calyx-cni", "calyx-ipam"):
        assert (CLIENT / plugin).exists(), f"{CLIENT / plugin} is missing: run `make cni-client`"
    bin_dir, net_dir = tmp_path / "opt-cni-bin", tmp_path / "etc-cni-net.d"
    bin_dir.mkdir()
    net_dir.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CALYX_CNI_BIN_DIR": str(bin_dir),
        "CALYX_CNI_NET_DIR": str(net_dir),
        "CALYX_CNI_PLUGIN_SOURCE_DIR": str(CLIENT),
        "CALYX_SERVICE_ACCOUNT_DIR": str(tmp_path / "no-service-account"),
        "CALYX_CNI_NETWORK_CONFIG": cni_template(),
        "ETCD_ENDPOINTS": "http://10.0.0.5:2379",
        "CALYX_NODE_NAME": "node-1",
    }
    install = subprocess.run([BIN / "calyx-install-cni"], env=env, capture_output=True, text=True, timeout=60)
    assert install.returncode == 0, install.stderr + install.stdout
    (podman_state / "containers.conf").write_text(f'[network]\ncni_plugin_dirs = ["{bin_dir}"]\n')

    listed = podman(podman_state, net_dir, "network", "ls", "--format", "{{.Name}}")
    assert listed.returncode == 0, listed.stderr
    assert "k8s-pod-network" in listed.stdout.split(), listed.stderr
    assert "Error" not in listed.stderr, listed.stderr  # libcni's validation problems are warnings

    inspected = podman(podman_state, net_dir, "network", "inspect", "k8s-pod-network")
    assert inspected.returncode == 0, inspected.stderr

    uninstall = subprocess.run(
        [BIN / "calyx-install-cni", "--uninstall"], env=env, capture_output=True, text=True, timeout=60
    )
    assert uninstall.returncode == 0, uninstall.stderr
    assert "k8s-pod-network" not in podman(podman_state, net_dir, "network", "ls", "--format", "{{.Name}}").stdout
