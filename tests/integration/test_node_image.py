"""The node image `make image` builds (`make test` builds it first: under a minute here, with
Debian's mirror). Its commands answer --help and calyx-install-cni installs into a
temporary directory standing for the host, run in the image's own root filesystem (mounted by
podman, entered with chroot, with the image's environment); and podman runs the image, where
this machine's container runtime can start containers at all."""

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

IMAGE = "localhost/calyx:0.1.0"


def image_present() -> bool:
    if not shutil.which("podman"):
        return False
    return subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, timeout=60).returncode == 0


pytestmark = [pytestmark, pytest.mark.skipif(not image_present(), reason=f"no {IMAGE}: build it with `make image`")]


@pytest.fixture(scope="module")
def image_root() -> Iterator[tuple[str, list[str]]]:
    """The image's root filesystem (read-only) and its environment, unmounted afterwards."""
    root = subprocess.run(["podman", "image", "mount", IMAGE], capture_output=True, text=True, check=True).stdout
    env = json.loads(subprocess.run(["podman", "image", "inspect", IMAGE, "--format", "{{json .Config.Env}}"],
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    try:
        yield root.strip(), env
    finally:
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True, timeout=60)


def in_image(image_root, script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a mount namespace of its own (for bind mounts); ROOT is the image's
    root, IMAGE_ENV an `env -i` with the image's environment."""
    root, env = image_root
    script = script.replace("ROOT", root).replace("IMAGE_ENV", "env -i " + " ".join(shlex.quote(e) for e in env))
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["felix", "calyx-bgp", "policyctl", "calyx-install-cni", "calyx-kube-controllers",
                                     "exabgp"])  # fmt: skip
def test_commands_answer_help(image_root, command):
    done = in_image(image_root, f"chroot ROOT IMAGE_ENV {command} --help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout or "usage" in done.stdout


def test_the_cni_plugins_nft_and_the_nftables_bindings_are_there(image_root):
    done = in_image(image_root, "chroot ROOT IMAGE_ENV sh -c 'set -e; for c in calyx-cni calyx-ipam nft ip setpriv; do command -v $c; done; "
                    "python3 -c \"import nftables\"'")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["/opt/calyx/bin/calyx-cni", "/opt/calyx/bin/calyx-ipam"]


def test_the_host_plugins_are_the_static_client_and_the_server_is_there(image_root):
    root, _ = image_root
    for plugin in ("calyx-cni", "calyx-ipam"):
        assert (Path(root) / "opt/calyx/cni-client" / plugin).read_bytes()[:4] == b"\x7fELF"
    done = in_image(image_root, "chroot ROOT IMAGE_ENV calyx-cni-server --help")
    assert done.returncode == 0 and "--socket" in done.stdout, done.stderr


def test_install_cni_into_a_temporary_host(image_root, tmp_path):
    bin_dir, net_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    net_dir.mkdir()
    template = json.dumps({"name": "k8s-pod-network", "cniVersion": "1.0.0",
                           "plugins": [{"type": "calyx-cni", "nodename": "__NODENAME__", "mtu": "__CNI_MTU__"}]})  # fmt: skip
    (tmp_path / "template.json").write_text(template)
    done = in_image(image_root, f"mount --bind {bin_dir} ROOT/mnt && mount --bind {net_dir} ROOT/srv && "
                    f"mount --bind {tmp_path / 'template.json'} ROOT/etc/hostname && chroot ROOT IMAGE_ENV "
                    "calyx-install-cni --cni-bin-dir /mnt --cni-net-dir /srv --network-config-file /etc/hostname "
                    "--node-name node-1 --service-account-dir /nonexistent")  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(p.name for p in bin_dir.iterdir()) == ["calyx-cni", "calyx-ipam"]
    # The installed plugin runs on the host, outside the image (no Python): VERSION needs no server.
    version = subprocess.run([bin_dir / "calyx-cni"], input=b'{"cniVersion": "1.0.0"}', env={"CNI_COMMAND": "VERSION"},
                             capture_output=True, timeout=20)  # fmt: skip
    assert json.loads(version.stdout)["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"], version
    conflist = net_dir / "10-calyx.conflist"
    assert json.loads(conflist.read_text())["plugins"][0] == {"type": "calyx-cni", "nodename": "node-1", "mtu": 1500}
    assert conflist.stat().st_mode & 0o777 == 0o600


# What lets podman start a container on this kind of machine: runc (crun refuses the hybrid cgroup
# layout), cgroupfs, no event journal, and rlimits within the hard limits podman would exceed.
PODMAN_RUN = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "none", "run", "--rm", "--runtime", "runc",
              "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "says"),
    [("felix", "Calyx node agent"), ("calyx-bgp", "Calyx BGP daemon"), ("policyctl", "Usage: policyctl")],
)
def test_podman_runs_the_image(command, says):
    done = subprocess.run([*PODMAN_RUN, IMAGE, command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert says in done.stdout
