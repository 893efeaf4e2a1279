"""The node image `make image` builds (not part of `make test`: building it takes minutes and
needs Debian's mirror): run with podman, without a network, its commands answer --help and
calyx-install-cni installs into a temporary directory standing for the host."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

IMAGE = "localhost/calyx:0.1.0"


def image_present() -> bool:
    if not shutil.which("podman"):
        return False
    return subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, timeout=60).returncode == 0


needs_image = pytest.mark.skipif(
    not image_present(), reason=f"no {IMAGE}: build it with `make image` (podman, mmdebstrap)"
)


def run(*args: str, volumes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = ["podman", "run", "--rm", "--network", "none", *(f"-v{v}" for v in volumes), IMAGE, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@needs_image
@pytest.mark.parametrize("command", ["felix", "calyx-bgp", "policyctl", "calyx-install-cni", "calyx-cni", "calyx-ipam",
                                     "calyx-kube-controllers", "exabgp", "nft"])  # fmt: skip
def test_commands_answer_help(command):
    done = (
        run(command, "--help")
        if command not in ("calyx-cni", "calyx-ipam")
        else run("sh", "-c", f"command -v {command}")
    )
    assert done.returncode == 0, done.stderr


@needs_image
def test_nftables_bindings_are_importable():
    assert run("python3", "-c", "import nftables; nftables.Nftables()").returncode == 0


@needs_image
def test_install_cni_into_a_temporary_host(tmp_path):
    bin_dir, net_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    net_dir.mkdir()
    template = json.dumps({"name": "k8s-pod-network", "cniVersion": "1.0.0",
                           "plugins": [{"type": "calyx-cni", "nodename": "__NODENAME__", "mtu": "__CNI_MTU__"}]})  # fmt: skip
    done = run("calyx-install-cni", "--network-config", template, "--node-name", "node-1",
               volumes=(f"{bin_dir}:/host/opt/cni/bin:Z", f"{net_dir}:/host/etc/cni/net.d:Z"))  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(p.name for p in bin_dir.iterdir()) == ["calyx-cni", "calyx-ipam"]
    conflist = net_dir / "10-calyx.conflist"
    assert json.loads(conflist.read_text())["plugins"][0] == {"type": "calyx-cni", "nodename": "node-1", "mtu": 1500}
    assert conflist.stat().st_mode & 0o777 == 0o600
