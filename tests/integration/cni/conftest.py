"""calyx-cni as runtimes run it: the executable, its environment and stdin, inside a lab node's
namespace (the node's own "host"), with the lab's etcd and the node's felix; workloads are
namespaces the test makes. Every plugin directory, log and runtime state is under the lab's
temporary directory: nothing goes to /etc/cni, /opt/cni or /var/lib/calyx."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from policy.datastore.store import WriteMode
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata
from tests.lab import netns
from tests.lab.topology import Lab

REFERENCE_PLUGINS = Path("/usr/lib/cni")
POOL4, POOL6 = "198.19.0.0/16", "fd00:19::/64"
NETWORK = "calyx-test"


def plugin_dir(lab: Lab) -> Path:
    """A CNI_PATH of our own: calyx-cni and calyx-ipam from the venv, then Debian's reference plugins."""
    directory = lab.dir / "cni-bin"
    if not directory.exists():
        directory.mkdir()
        for name in ("calyx-cni", "calyx-ipam"):
            (directory / name).symlink_to(Path(sys.executable).with_name(name))
    return directory


def cni_path(lab: Lab) -> str:
    return f"{plugin_dir(lab)}:{REFERENCE_PLUGINS}"


def netconf(lab: Lab, node: str, **extra) -> dict:
    """One plugin's configuration, as a runtime hands it over (name and cniVersion included)."""
    conf = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "calyx-cni",
        "etcd_endpoints": lab.etcd_url,
        "etcd_prefix": lab.prefix,
        "nodename_file": str(lab.nodename_file(node)),
        "log_file_path": str(lab.dir / node / "cni.log"),
        "log_level": "debug",
        "policy_setup_timeout_seconds": 10,
        "ipam": {"type": "calyx-ipam"},
    }
    conf.update(extra)
    return conf


@dataclass
class Invocation:
    code: int
    output: dict | None
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == 0


def run_plugin(
    lab: Lab,
    node: str,
    command: str,
    conf: dict,
    container_id: str = "",
    netns_path: str = "",
    ifname: str = "eth0",
    args: str = "",
    plugin: str = "calyx-cni",
    timeout: float = 60,
) -> Invocation:
    """Run a plugin in the node's namespace as a runtime does: CNI_* environment, config on stdin."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": args,
        "CNI_PATH": cni_path(lab),
    }
    executable = str(plugin_dir(lab) / plugin) if plugin.startswith("calyx") else str(REFERENCE_PLUGINS / plugin)
    import time

    started = time.perf_counter()
    done = subprocess.run(
        ["ip", "netns", "exec", lab.nodes[node].netns, executable],
        input=json.dumps(conf).encode(),
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    text = done.stdout.decode().strip()
    return Invocation(done.returncode, json.loads(text) if text else None, done.stderr.decode(), seconds)


def add_pools(lab: Lab, block4: int = 26, block6: int = 122) -> None:
    lab.store.write(
        [
            IPPool(metadata=Metadata(name="pool4"), spec=IPPoolSpec(cidr=POOL4, blockSize=block4)),
            IPPool(metadata=Metadata(name="pool6"), spec=IPPoolSpec(cidr=POOL6, blockSize=block6)),
        ],
        WriteMode.APPLY,
    )


def new_sandbox(lab: Lab, name: str) -> str:
    """A container's network namespace, as a runtime makes it before calling ADD; its path."""
    ns = f"cx{lab.id}-{name}"
    lab._add_ns(ns)
    return f"/run/netns/{ns}"


def workload_addresses(netns_path: str, ifname: str = "eth0") -> set[str]:
    out = netns.in_ns(Path(netns_path).name, "ip", "-j", "addr", "show", "dev", ifname, check=False).stdout
    return {
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(out or "[]")
        for a in link.get("addr_info", [])
        if a.get("scope") == "global"
    }


def cx_links(lab: Lab, node: str) -> list[str]:
    out = netns.in_ns(lab.nodes[node].netns, "ip", "-j", "link", "show").stdout
    return sorted(link["ifname"] for link in json.loads(out) if link["ifname"].startswith("cx"))


def ipam_check(lab: Lab) -> tuple[int, str]:
    done = netns.run(sys.executable, "-m", "policy.ctl.main", *lab.etcd_flags(), "ipam", "check", check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def cni_lab(lab_factory):
    """One node with felix, IPv4 and IPv6 pools, and calyx-cni ready to be run there."""
    lab = lab_factory(nodes=1)
    add_pools(lab)
    lab.start_felix("node1")
    from tests.lab.processes import wait_for

    wait_for(lambda: lab.felix_status("node1").get("inSync"), timeout=20, what="felix in sync")
    plugin_dir(lab)
    yield lab
    print((lab.dir / "node1" / "cni.log").read_text() if (lab.dir / "node1" / "cni.log").exists() else "(no cni log)")


def reference_plugins_missing() -> bool:
    return not (REFERENCE_PLUGINS / "portmap").exists() or not shutil.which("ip")
