"""calyx-cni as runtimes run it: the executable, its environment and stdin, inside a lab node's
namespace (the node's own "host"), with the lab's etcd and the node's felix; workloads are
namespaces the test makes. Two ways, as a host has them: the Python executables, or the static
C client (build/cni-client, `make cni-client`) talking to a calyx-cni-server that runs in the
node's namespace on a socket of its own (`start_cni_server`). Every plugin directory, socket,
log and runtime state is under the lab's temporary directory: nothing goes to /etc/cni,
/opt/cni, /run/calyx or /var/lib/calyx."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from policy.datastore.store import WriteMode
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata
from tests.lab import netns
from tests.lab.processes import Daemon, wait_for
from tests.lab.topology import Lab

REFERENCE_PLUGINS = Path("/usr/lib/cni")
CLIENT_BUILD = Path(__file__).parents[3] / "build" / "cni-client"
POOL4, POOL6 = "198.19.0.0/16", "fd00:19::/64"
NETWORK = "calyx-test"
PROGRAMS = ("calyx-cni", "calyx-ipam")

# (lab id, node) -> the socket of the calyx-cni-server started there: run_plugin goes through it
_servers: dict[tuple[str, str], Path] = {}


def plugin_dir(lab: Lab, client: bool = False) -> Path:
    """A plugin directory of our own: calyx-cni and calyx-ipam as the venv's Python entry points,
    or (client=True) copies of the static C client, as install-cni puts them on a host."""
    directory = lab.dir / ("cni-client-bin" if client else "cni-bin")
    if not directory.exists():
        directory.mkdir()
        for name in PROGRAMS:
            if client:
                if not (CLIENT_BUILD / name).exists():
                    pytest.fail(f"{CLIENT_BUILD / name} is missing: run `make cni-client`")
                shutil.copy(CLIENT_BUILD / name, directory / name)
            else:
                (directory / name).symlink_to(Path(sys.executable).with_name(name))
    return directory


def cni_path(lab: Lab, client: bool = False) -> str:
    """CNI_PATH: our plugins, then Debian's reference plugins."""
    return f"{plugin_dir(lab, client)}:{REFERENCE_PLUGINS}"


def cni_socket(lab: Lab, node: str) -> Path:
    return lab.dir / node / "cni.sock"


def start_cni_server(lab: Lab, node: str, mount_namespace_of: int | None = None, log_level: str = "debug") -> Daemon:
    """calyx-cni-server in the node's namespace on the node's own socket; from now on run_plugin
    on that node runs the C client, which reaches it (CALYX_CNI_SOCKET). mount_namespace_of: a
    pid whose mount namespace it joins, where a runtime keeps its netns mounts (as calyx-node
    mounts the host's /var/run/netns). Stopped by stop_cni_server (or with the lab's daemons)."""
    socket_path = cni_socket(lab, node)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    netns_name = lab.nodes[node].netns
    if mount_namespace_of is None:
        enter = ["ip", "netns", "exec", netns_name]
    else:
        enter = ["nsenter", f"--mount=/proc/{mount_namespace_of}/ns/mnt", f"--net=/var/run/netns/{netns_name}"]
    server = str(Path(sys.executable).with_name("calyx-cni-server"))
    log_file = str(lab.dir / node / "cni-server.log")
    cmd = [*enter, server, "--socket", str(socket_path), "--log-file", log_file, "--log-level", log_level]
    daemon = lab._daemon(f"cni-server-{node}", cmd)
    wait_for(lambda: socket_path.is_socket() or not daemon.running(), timeout=20, what=f"calyx-cni-server on {node}")
    assert daemon.running(), f"calyx-cni-server on {node} exited: {daemon.log_tail()}"
    plugin_dir(lab, client=True)
    _servers[(lab.id, node)] = socket_path
    return daemon


def stop_cni_server(lab: Lab, node: str, daemon: Daemon) -> None:
    """Stop it by its pid (SIGTERM; it removes its socket); the node goes back to the executables."""
    _servers.pop((lab.id, node), None)
    daemon.stop()
    if daemon in lab.daemons:
        lab.daemons.remove(daemon)


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
    """Run a plugin in the node's namespace as a runtime does: CNI_* environment, config on stdin;
    calyx-cni and calyx-ipam as the C client when the node has a calyx-cni-server."""
    socket_path = _servers.get((lab.id, node))
    client = socket_path is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": args,
        "CNI_PATH": cni_path(lab, client),
    }
    if socket_path is not None and "cni_socket" not in conf:
        env["CALYX_CNI_SOCKET"] = str(socket_path)  # else the client reads the configuration's
    if plugin in PROGRAMS:
        executable = str(plugin_dir(lab, client) / plugin)
    else:
        executable = str(REFERENCE_PLUGINS / plugin)
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
    wait_for(lambda: lab.felix_status("node1").get("inSync"), timeout=20, what="felix in sync")
    plugin_dir(lab)
    yield lab
    for log in ("cni.log", "cni-server.log"):
        path = lab.dir / "node1" / log
        print(f"--- {log} ---\n{path.read_text() if path.exists() else '(none)'}")


@pytest.fixture(params=["executable", "server"])
def cni_both(request, cni_lab):
    """cni_lab twice: the Python executables, then the C client of a calyx-cni-server in node1."""
    if request.param == "executable":
        yield cni_lab
        return
    server = start_cni_server(cni_lab, "node1")
    try:
        yield cni_lab
    finally:
        stop_cni_server(cni_lab, "node1", server)


def reference_plugins_missing() -> bool:
    return not (REFERENCE_PLUGINS / "portmap").exists() or not shutil.which("ip")
