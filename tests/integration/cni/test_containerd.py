"""containerd 1.6 (Debian 12's) runs a busybox container with `ctr run --cni --rootfs` in a lab
node: calyx-cni (the C client of a calyx-cni-server in the node) gives it Calyx addresses, the
container's first ping reaches another pod, and the exit (`--rm`) removes everything.

ctr reads the CNI configuration from /etc/cni/net.d and the plugins from /opt/cni/bin, with no
flag to move them: containerd and ctr run in a private mount namespace, held by a sleeping
process, where a tmpfs covers /opt (the plugins copied in), the lab's directory is bound over
/etc/cni/net.d and a tmpfs covers /run (containerd's shim sockets are under /run/containerd).
containerd has its own --root, --state and socket under the lab directory and its CRI plugin
disabled; ctr hands the plugin /proc/<pid>/ns/net as CNI_NETNS, which the server opens from
its own mount namespace."""

import json
import shutil
import subprocess

import pytest

from policy.model.resources import WorkloadEndpoint
from tests.integration.cni.conftest import (
    NETWORK,
    REFERENCE_PLUGINS,
    cni_socket,
    cx_links,
    ipam_check,
    netconf,
    new_sandbox,
    plugin_dir,
    run_plugin,
    start_cni_server,
    stop_cni_server,
)
from tests.integration.cni.test_podman import busybox_rootfs
from tests.lab.processes import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("ctr"), reason="containerd not installed"),
]

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class Containerd:
    """One node's containerd and ctr, in their mount namespace and the node's network namespace."""

    def __init__(self, lab, node: str):
        self.lab, self.node = lab, node
        d = self.dir = lab.dir / node / "containerd"
        (d / "net").mkdir(parents=True)
        conf = netconf(lab, node, cni_socket=str(cni_socket(lab, node)))
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]}
        (d / "net" / "10-calyx.conflist").write_text(json.dumps(conflist))
        (d / "config.toml").write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
        client = plugin_dir(lab, client=True)
        script = (
            f"mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && cp {client}/* {REFERENCE_PLUGINS}/* /opt/cni/bin && "
            f"mount --bind {d / 'net'} /etc/cni/net.d && mount -t tmpfs tmpfs /run && "
            f"touch {d / 'ready'} && exec sleep 3600"
        )
        self.holder = lab._daemon(
            f"containerd-mounts-{node}", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        )
        wait_for(lambda: (d / "ready").exists(), timeout=10, what=f"{node}'s containerd mount namespace")
        self.socket = d / "containerd.sock"
        self.daemon = lab._daemon(
            f"containerd-{node}",
            [
                *self._enter(),
                "containerd",
                "--config", str(d / "config.toml"),
                "--root", str(d / "root"),
                "--state", str(d / "state"),
                "--address", str(self.socket),
            ],
        )  # fmt: skip
        wait_for(lambda: self.socket.is_socket() or not self.daemon.running(), timeout=30, what="containerd")
        assert self.daemon.running(), self.daemon.log_tail()

    def _enter(self) -> list[str]:
        netns = self.lab.nodes[self.node].netns
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net=/var/run/netns/{netns}"]

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._enter(), "ctr", "--address", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": PATH},
        )


def test_ctr_run_cni_gives_a_container_a_calyx_address_and_removes_it(cni_lab):
    lab = cni_lab
    server = start_cni_server(lab, "node1")
    try:
        containerd = Containerd(lab, "node1")
        peer_sandbox = new_sandbox(lab, "peer")
        peer = run_plugin(lab, "node1", "ADD", netconf(lab, "node1"), "peer", peer_sandbox)
        assert peer.ok, peer.output
        peer_address = peer.output["ips"][0]["address"].split("/")[0]
        script = f"ip -o addr show dev eth0; ip route; ping -c 1 -W 2 {peer_address} >/dev/null && echo reached"
        done = containerd.ctr(
            "run", "--cni", "--rm", "--env", "PATH=/bin", "--rootfs", busybox_rootfs(lab), "c1", "/bin/sh", "-c", script
        )
        assert done.returncode == 0, done.stdout + done.stderr + containerd.daemon.log_tail()
        addresses = [line.split()[3] for line in done.stdout.splitlines() if " inet" in line and "scope global" in line]
        assert len(addresses) == 2 and all(a.startswith(("198.19.", "fd00:19:")) for a in addresses), done.stdout
        assert "default via 169.254.1.1 dev eth0" in done.stdout and "reached" in done.stdout, done.stdout
        assert run_plugin(lab, "node1", "DEL", netconf(lab, "node1"), "peer", peer_sandbox).ok
    finally:
        stop_cni_server(lab, "node1", server)
    served = (lab.dir / "node1" / "cni-server.log").read_text()
    assert "calyx-cni ADD" in served and "calyx-cni DEL" in served, "ctr went through the server"
    assert cx_links(lab, "node1") == [] and lab.kernel_routes("node1") == set()
    assert lab.store.list_kind(WorkloadEndpoint)[0] == []
    code, report = ipam_check(lab)
    assert code == 0, report
