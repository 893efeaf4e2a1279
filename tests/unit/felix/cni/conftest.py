"""calyx-cni and calyx-ipam wired to fakes: FakeKV for etcd, FakeDataplane for the kernel,
calyx-ipam run in-process as the delegated plugin, and a felix whose programmed revision the
test controls (by default it keeps up with etcd at once)."""

import json
from dataclasses import dataclass, field

import pytest

from felix.cni.config import parse_netconf
from felix.cni.ipam import CalyxIpam
from felix.cni.plugin import CniPlugin, Services
from felix.cni.protocol import CniError, Request
from policy.datastore.ipam import IPAM
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata, WorkloadEndpoint
from tests.fakes import FakeDataplane, FakeKV

NETWORK = "net1"
NODE = "node1"


@dataclass
class Harness:
    kv: FakeKV = field(default_factory=FakeKV)
    dataplane: FakeDataplane = field(default_factory=FakeDataplane)
    felix_lag: int = 0  # how many revisions felix is behind etcd
    felix_down: bool = False
    felix_in_sync: bool = True
    delegated: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.plugin = CniPlugin(Services(self.dataplane, self.delegate, lambda conf: self.kv, self.fetch))

    # -- the seams --------------------------------------------------------------------------
    def fetch(self, url: str) -> dict:
        if self.felix_down:
            raise ConnectionRefusedError(111, "Connection refused")
        return {"inSync": self.felix_in_sync, "programmedRevision": max(0, self.kv.revision - self.felix_lag)}

    def delegate(self, plugin_type: str, command: str, environ, stdin: bytes) -> dict | None:
        self.delegated.append(command)
        request = Request.from_environ({**environ, "CNI_COMMAND": command})
        return CalyxIpam(lambda conf: self.kv).run(request, parse_netconf(stdin), stdin)

    # -- invoking -------------------------------------------------------------------------
    def conf(self, **extra) -> dict:
        conf = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "calyx-cni",
            "nodename": NODE,
            "policy_setup_timeout_seconds": 0.05,
            "ipam": {"type": "calyx-ipam"},
        }
        conf.update(extra)
        return conf

    def environ(self, command: str, container: str, netns: str = "", ifname: str = "eth0", args: str = "") -> dict:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns or f"/run/netns/{container}",
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": "/opt/cni/bin",
        }

    def run(self, command: str, container: str, conf: dict | None = None, **env) -> dict | None:
        stdin = json.dumps(conf or self.conf()).encode()
        request = Request.from_environ(self.environ(command, container, **env))
        return self.plugin.run(request, parse_netconf(stdin), stdin)

    def error(self, command: str, container: str, conf: dict | None = None, **env) -> CniError:
        with pytest.raises(CniError) as caught:
            self.run(command, container, conf, **env)
        return caught.value

    def sandbox(self, container: str) -> str:
        path = f"/run/netns/{container}"
        self.dataplane.namespaces.add(path)
        return path

    # -- looking ----------------------------------------------------------------------------
    def endpoints(self) -> list[WorkloadEndpoint]:
        return ResourceStore(self.kv).list_kind(WorkloadEndpoint)[0]

    def handles(self) -> dict:
        return {name: sorted(h.addresses) for name, h in IPAM(self.kv, "/calyx").handles().items()}

    def allocated(self) -> set[str]:
        return {b.address(o) for b in IPAM(self.kv, "/calyx").blocks() for o in b.allocations}


def write_pools(kv: FakeKV, v6: bool = True) -> None:
    pools = [IPPool(metadata=Metadata(name="pool4"), spec=IPPoolSpec(cidr="10.64.0.0/16", blockSize=26))]
    if v6:
        pools.append(IPPool(metadata=Metadata(name="pool6"), spec=IPPoolSpec(cidr="fd00:64::/64", blockSize=122)))
    ResourceStore(kv).write(pools, WriteMode.CREATE)


@pytest.fixture
def cni() -> Harness:
    harness = Harness()
    write_pools(harness.kv)
    return harness
