"""podman 4.3 (CNI backend) runs busybox containers on two BGP nodes with calyx-cni: they get
Calyx addresses, reach each other over BGP-learned routes, and are removed cleanly.

Each node's podman has its own --root/--runroot/--tmpdir/--network-config-dir under the lab
directory, runs in the node's namespace (nsenter --net; `ip netns exec` would remount /sys
and hide the cgroup mounts), and in a private mount namespace whose /var/lib is an overlay
into the lab directory, so libcni's result cache (/var/lib/cni) never touches the host.
node1's plugins are the static C client of a calyx-cni-server running in that mount namespace
(where podman's netns mounts are, as calyx-node mounts the host's /var/run/netns), found by
`cni_socket` in the conflist; node2's are the Python executables."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from policy.model.resources import WorkloadEndpoint
from tests.integration.cni.conftest import (
    NETWORK,
    REFERENCE_PLUGINS,
    cni_socket,
    cx_links,
    ipam_check,
    netconf,
    plugin_dir,
    start_cni_server,
)
from tests.lab.bgp_lab import BgpLab
from tests.lab.processes import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("podman") or not shutil.which("runc"), reason="podman and runc not installed"),
]

BUSYBOX = "/bin/busybox"  # busybox-static
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DISTRIBUTION_CONF = "/usr/share/containers/containers.conf"


def busybox_rootfs(lab) -> str:
    root = lab.dir / "rootfs"
    if not root.exists():
        (root / "bin").mkdir(parents=True)
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
    return str(root)


class Podman:
    """One node's podman: its own state directories, the node's network namespace."""

    def __init__(self, lab, node: str, client: bool = False):
        self.lab, self.node = lab, node
        self.dir = lab.dir / node / "podman"
        for sub in ("root", "tmp", "net", "upper", "work"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix=f"cx{node}-"))  # podman takes at most 50 characters
        # Bound over the distribution's containers.conf in the private mount namespace, so that
        # `podman container cleanup`, which conmon starts when a container ends (and which does
        # the DEL), reads it too: conmon does not pass CONTAINERS_CONF on.
        (self.dir / "containers.conf").write_text(
            f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{plugin_dir(lab, client)}", "{REFERENCE_PLUGINS}"]\n'
        )
        conf = netconf(lab, node, **({"cni_socket": str(cni_socket(lab, node))} if client else {}))
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]}
        (self.dir / "net" / f"{NETWORK}.conflist").write_text(json.dumps(conflist))

        # One private mount namespace per node, held by a sleeping process: podman bind-mounts
        # each container's netns under /run/netns there, and later podman commands (and
        # conmon's cleanup) must see those mounts.
        d = self.dir
        overlay = f"lowerdir=/var/lib,upperdir={d / 'upper'},workdir={d / 'work'}"
        script = (
            f"mount -t overlay overlay -o {overlay} /var/lib && "
            f"mount --bind {d / 'containers.conf'} {DISTRIBUTION_CONF} && touch {d / 'ready'} && exec sleep 3600"
        )
        self.holder = lab._daemon(
            f"podman-mounts-{node}", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        )
        wait_for(lambda: (d / "ready").exists(), timeout=10, what=f"{node}'s podman mount namespace")
        if client:
            start_cni_server(lab, node, mount_namespace_of=self.holder.pid)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        d = self.dir
        podman = [
            "podman", "--root", str(d / "root"), "--runroot", str(self.runroot), "--tmpdir", str(d / "tmp"),
            "--network-config-dir", str(d / "net"), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
        ]  # fmt: skip
        return subprocess.run(
            [
                "nsenter",
                f"--mount=/proc/{self.holder.pid}/ns/mnt",
                f"--net=/var/run/netns/{self.lab.nodes[self.node].netns}",
                *podman,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": PATH},
        )

    def run(self, name: str, rootfs: str) -> None:
        done = self(
            "run", "-d", "--name", name, "--network", NETWORK,
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--rootfs", rootfs, "sleep", "600",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def addresses(self, name: str) -> list[str]:
        out = self("exec", name, "ip", "-o", "addr", "show", "dev", "eth0").stdout
        return [
            line.split()[3].split("/")[0] for line in out.splitlines() if " inet" in line and "scope global" in line
        ]

    def ping(self, name: str, address: str) -> bool:
        flag = "-6" if ":" in address else "-4"
        return self("exec", name, "ping", flag, "-c", "1", "-W", "1", address, timeout=30).returncode == 0


@pytest.fixture
def bgp_pair():
    lab = BgpLab(nodes=2, reflector=True)
    try:
        lab.build()
        for node in lab.nodes:
            lab.start_bgp(node)
            lab.start_felix(node)
        wait_for(lambda: all(lab.felix_status(n).get("inSync") for n in lab.nodes), timeout=20, what="felix in sync")
        wait_for(lambda: lab.bird_established() == 4, timeout=30, what=lambda: lab.birdc("show", "protocols"))
        plugin_dir(lab)
        yield lab
    finally:
        print(lab.logs())
        for node in lab.nodes:
            for name in ("cni.log", "cni-server.log"):
                log = lab.dir / node / name
                print(f"--- {node} {name} ---\n{log.read_text() if log.exists() else '(none)'}")
        lab.destroy()


def test_podman_containers_on_two_nodes_reach_each_other_over_bgp(bgp_pair):
    lab = bgp_pair
    rootfs = busybox_rootfs(lab)
    podmen = {node: Podman(lab, node, client=node == "node1") for node in lab.nodes}
    try:
        podmen["node1"].run("one", rootfs)
        podmen["node2"].run("two", rootfs)
        one, two = podmen["node1"].addresses("one"), podmen["node2"].addresses("two")
        assert len(one) == 2 and len(two) == 2, (one, two)
        assert all(a.startswith(("198.19.", "fd00:19:")) for a in one + two), "Calyx IPAM addresses"
        endpoints = {e.spec.node: e for e in lab.store.list_kind(WorkloadEndpoint)[0]}
        assert set(endpoints) == {"node1", "node2"} and endpoints["node1"].spec.workload == "one"
        for address in two:
            wait_for(lambda: podmen["node1"].ping("one", address), timeout=30, what=f"one -> {address}")
        for address in one:
            assert podmen["node2"].ping("two", address), f"two -> {address}"
        learned = lab.learned_routes("node1")
        assert any(prefix.startswith("198.19.") for prefix in learned), "node1 learned node2's block over BGP"
    finally:
        for podman in podmen.values():
            removed = podman("rm", "-f", "-a", "-t", "0")
            assert removed.returncode == 0, removed.stderr
            shutil.rmtree(podman.runroot, ignore_errors=True)
    for node in lab.nodes:
        assert (
            cx_links(lab, node) == [] and {r for r in lab.kernel_routes(node) if r[1] != "lo"} == set()
        )  # lo: v6 blackholes
    assert lab.store.list_kind(WorkloadEndpoint)[0] == []
    code, report = ipam_check(lab)
    assert code == 0, report
    served = (lab.dir / "node1" / "cni-server.log").read_text()
    assert "calyx-cni ADD" in served and "calyx-cni DEL" in served, "node1's podman went through the server"
