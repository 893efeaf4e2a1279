"""The BGP lab: nodes share one rack segment with a BIRD top-of-rack; nothing is statically
routed to workloads, every route comes from BGP.

    ctl, etcd --- fabric (router, BIRD, bridge "rack" 198.18.100.1/24, fd00:18:100::1/64)
                     +-- node1 198.18.100.11   node2 .12   node3 .13 (felix + calyx-bgp each)
Workload addresses come from IPAM: pool 198.19.0.0/16 (/26 blocks), fd00:19::/64 (/122 blocks)."""

import json
import sys
import urllib.request
from pathlib import Path

from policy.datastore.ipam import IPAM
from policy.datastore.store import WriteMode
from policy.model.bgp import BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata
from tests.lab import netns
from tests.lab.processes import Daemon, wait_for
from tests.lab.topology import Lab, Node, Workload

RACK, RACK6 = "198.18.100", "fd00:18:100:"
TOR, TOR6 = f"{RACK}.1", f"{RACK6}:1"
AS_NUMBER = 64512
POOL4, POOL6 = "198.19.0.0/16", "fd00:19::/64"


def node_address(index: int) -> tuple[str, str]:
    return f"{RACK}.{10 + index}", f"{RACK6}:{10 + index:x}"


def bird_config(nodes: list[Node], reflector: bool, restart_time: int, log: Path, extra: str = "") -> str:
    """BIRD as the top-of-rack: iBGP with every node (a route reflector if asked), routes
    exported into the fabric's kernel so the fabric itself reaches workloads."""
    lines = [
        f"router id {TOR};",
        f'log "{log}" all;',
        "protocol device {}",
        'protocol kernel k4 { ipv4 { import none; export where proto ~ "node*"; }; merge paths on; }',
        'protocol kernel k6 { ipv6 { import none; export where proto ~ "node*"; }; merge paths on; }',
        extra,
    ]
    for node in nodes:
        v4, v6 = node_address(node.index)
        for suffix, mine, peer, family in (("", TOR, v4, "ipv4"), ("v6", TOR6, v6, "ipv6")):
            lines.append(
                f"protocol bgp {node.name}{suffix} {{ local {mine} as {AS_NUMBER}; neighbor {peer} as {AS_NUMBER}; "
                f"direct; {'rr client; ' if reflector else ''}graceful restart on; graceful restart time {restart_time}; "
                f"connect retry time 1; error wait time 1, 4; "
                f"{family} {{ import all; export {'all' if reflector else 'none'}; gateway direct; }}; }}"
            )
    return "\n".join(lines) + "\n"


class BgpLab(Lab):
    def __init__(
        self,
        nodes: int = 3,
        reflector: bool = True,
        restart_time: int = 4,
        bird_restart_time: int = 20,
        bird_speakers: tuple[str, ...] = (),
        pool_block_sizes: tuple[int | None, int | None] = (None, None),
        **kwargs,
    ):
        """bird_speakers: names of extra rack members that run BIRD instead of Calyx (baselines);
        pool_block_sizes: the IPv4 and IPv6 pools' blockSize (None: IPAM's default, /26 and /122)."""
        super().__init__(nodes=nodes, **kwargs)
        self.pool_block_sizes = pool_block_sizes
        self.reflector, self.restart_time, self.bird_restart_time = reflector, restart_time, bird_restart_time
        self.bird: Daemon | None = None
        self.speakers: dict[str, Daemon] = {}
        self.bird_speaker_names = bird_speakers
        self.bird_speakers: dict[str, Node] = {}

    def build(self) -> None:
        super().build()
        self.store.write(
            [
                IPPool(
                    metadata=Metadata(name="pool4"), spec=IPPoolSpec(cidr=POOL4, blockSize=self.pool_block_sizes[0])
                ),
                IPPool(
                    metadata=Metadata(name="pool6"), spec=IPPoolSpec(cidr=POOL6, blockSize=self.pool_block_sizes[1])
                ),
            ],
            WriteMode.CREATE,
        )
        spec = BGPConfigurationSpec(asNumber=AS_NUMBER, nodeToNodeMeshEnabled=not self.reflector)
        peers = [
            BGPPeer(metadata=Metadata(name="tor"), spec=BGPPeerSpec(peerIP=TOR, asNumber=AS_NUMBER)),
            BGPPeer(metadata=Metadata(name="tor6"), spec=BGPPeerSpec(peerIP=TOR6, asNumber=AS_NUMBER)),
        ]
        self.store.write([BGPConfiguration(metadata=Metadata(name="default"), spec=spec), *peers], WriteMode.CREATE)
        for offset, name in enumerate(self.bird_speaker_names, start=self.node_count + 1):
            self._add_node(offset, name)
            self.bird_speakers[name] = self.nodes.pop(name)
        self.start_bird()

    def _add_node(self, i: int, name: str | None = None) -> None:
        if i == 1:
            self._add_rack()
        name = name or f"node{i}"
        ns = self._ns(name)
        self._add_ns(ns)
        v4, v6 = node_address(i)
        netns.in_ns(
            self.fabric, "ip", "link", "add", "name", f"r{i}", "type", "veth", "peer", "name", "rack0", "netns", ns
        )
        netns.in_ns(self.fabric, "ip", "link", "set", f"r{i}", "master", "rack", "up")
        netns.in_ns(ns, "ip", "addr", "add", f"{v4}/24", "dev", "rack0")
        netns.in_ns(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", "rack0", "nodad")
        netns.in_ns(ns, "ip", "link", "set", "rack0", "up")
        netns.in_ns(ns, "ip", "route", "add", "default", "via", TOR)
        netns.in_ns(ns, "ip", "-6", "route", "add", "default", "via", TOR6)
        self.nodes[name] = Node(name, i, ns, v4)

    def _add_rack(self) -> None:
        """The rack segment: a bridge in the fabric namespace, the top-of-rack's addresses on it."""
        netns.in_ns(self.fabric, "ip", "link", "add", "rack", "type", "bridge")
        netns.in_ns(self.fabric, "ip", "addr", "add", f"{TOR}/24", "dev", "rack")
        netns.in_ns(self.fabric, "ip", "-6", "addr", "add", f"{TOR6}/64", "dev", "rack", "nodad")
        netns.in_ns(self.fabric, "ip", "link", "set", "rack", "up")

    def join_node(self, name: str) -> None:
        """A node joining the rack after the build: its namespace and link, and a session for it
        on the top-of-rack by a soft reconfiguration (BIRD keeps its other sessions up)."""
        self._add_node(1 + max(n.index for n in [*self.nodes.values(), *self.bird_speakers.values()]), name)
        self._write_bird_config()
        answer = self.birdc("configure")
        assert "Reconfigured" in answer, answer

    # -- BIRD -----------------------------------------------------------------------------
    def _write_bird_config(self) -> Path:
        path = self.dir / "bird.conf"
        members = [*self.nodes.values(), *self.bird_speakers.values()]
        path.write_text(bird_config(members, self.reflector, self.bird_restart_time, self.dir / "bird.log"))
        return path

    def bird_sessions(self) -> dict[str, str]:
        """Each established BGP protocol of the top-of-rack by name, with the time it last changed state."""
        sessions = {}
        for line in self.birdc("show", "protocols").splitlines():
            words = line.split()
            if len(words) >= 6 and words[1] == "BGP" and words[-1] == "Established":
                sessions[words[0]] = " ".join(words[4:-1])
        return sessions

    def start_bird(self, recovering: bool = False) -> Daemon:
        """recovering: BIRD's graceful-restart recovery (-R), as after a crash of a live router."""
        path = self._write_bird_config()
        self.bird = self._daemon(
            "bird",
            [
                "ip",
                "netns",
                "exec",
                self.fabric,
                "bird",
                "-f",
                "-c",
                str(path),
                "-s",
                str(self.dir / "bird.ctl"),
                *(["-R"] if recovering else []),
            ],
        )
        wait_for(lambda: "ready" in self.birdc("show", "status"), timeout=10, what="BIRD to answer")
        return self.bird

    def start_bird_speaker(self, name: str, config: str) -> None:
        """BIRD on a rack member, peering with the top-of-rack; its control socket is <dir>/<name>.ctl."""
        path = self.dir / f"{name}.conf"
        path.write_text(config)
        self._daemon(
            f"bird-{name}",
            [
                "ip",
                "netns",
                "exec",
                self.bird_speakers[name].netns,
                "bird",
                "-f",
                "-c",
                str(path),
                "-s",
                str(self.dir / f"{name}.ctl"),
            ],
        )
        wait_for(lambda: "ready" in self.birdc("show", "status", socket=name), timeout=10, what=f"BIRD on {name}")

    def kill_bird(self) -> None:
        self.bird.kill9()
        self.daemons.remove(self.bird)

    def birdc(self, *args: str, socket: str = "bird") -> str:
        return netns.run("birdc", "-s", str(self.dir / f"{socket}.ctl"), *args, check=False).stdout

    def bird_routes(self) -> set[str]:
        """Prefixes in BIRD's tables (all learned over BGP: it has no other route source)."""
        found = set()
        for line in self.birdc("show", "route").splitlines():
            first = line.split(" ")[0]
            if "/" in first:
                found.add(first)
        return found

    def bird_established(self) -> int:
        return sum(1 for line in self.birdc("show", "protocols").splitlines() if "Established" in line)

    # -- calyx-bgp ------------------------------------------------------------------------
    def start_bgp(self, node: str, *extra: str) -> Daemon:
        n = self.nodes[node]
        v4, v6 = node_address(n.index)
        cmd = [
            "ip",
            "netns",
            "exec",
            n.netns,
            sys.executable,
            "-m",
            "bgp.main",
            "--node-name",
            node,
            "--ip",
            f"{v4}/24",
            "--ip6",
            f"{v6}/64",
            "--graceful-restart-time",
            str(self.restart_time),
            "--run-dir",
            str(self.dir / f"bgp-{node}"),
            *self.etcd_flags(),
            *extra,
        ]
        self.speakers[node] = self._daemon(f"calyx-bgp-{node}", cmd)
        return self.speakers[node]

    def kill_bgp(self, node: str) -> None:
        daemon = self.speakers.pop(node)
        daemon.kill9()
        self.daemons.remove(daemon)

    def bgp_ready(self, node: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.nodes[node].address}:9098/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def learned_routes(self, node: str) -> dict[str, set[str]]:
        """prefix -> next hops of every proto-77 route on a node."""
        routes = {}
        for family in ("-4", "-6"):
            out = netns.run("ip", "-n", self.nodes[node].netns, "-j", family, "route", "show", "proto", "77").stdout
            for r in json.loads(out or "[]"):
                hops = {r["gateway"]} if "gateway" in r else {h["gateway"] for h in r.get("nexthops", [])}
                dst = r["dst"] if "/" in r["dst"] else r["dst"] + ("/128" if ":" in r["dst"] else "/32")
                routes[dst] = hops
        return routes

    def blackholes(self, node: str) -> set[str]:
        found = set()
        for family in ("-4", "-6"):
            out = netns.run(
                "ip", "-n", self.nodes[node].netns, "-j", family, "route", "show", "proto", "76", "type", "blackhole"
            ).stdout
            found |= {r["dst"] for r in json.loads(out or "[]")}
        return found

    # -- workloads from IPAM ----------------------------------------------------------------
    def add_ipam_workload(self, node: str, name: str, borrow_from: str | None = None, attach: bool = True) -> Workload:
        """A workload whose addresses IPAM allocates for its node (or, with borrow_from, taken
        by hand from inside another node's block, as a bare-metal script would)."""
        ipam = IPAM(self.kv, self.prefix)
        handle = f"{node}.{name}"
        if borrow_from:
            owner = [b for b in ipam.blocks() if b.affinity == borrow_from]
            v4 = next(b for b in owner if ":" not in b.cidr)
            v6 = next(b for b in owner if ":" in b.cidr)
            ip = ipam.allocate(node, handle, address=v4.address(v4.network.num_addresses - 2))
            ipv6 = ipam.allocate(node, handle, address=v6.address(v6.network.num_addresses - 2))
        else:
            ip = ipam.allocate(node, handle, pool=POOL4)
            ipv6 = ipam.allocate(node, handle, pool=POOL6)
        return self.add_workload(node, name, addresses=(ip, ipv6), attach=attach)

    def policyctl_text(self, *args: str) -> str:
        return netns.run(sys.executable, "-m", "policy.ctl.main", *self.etcd_flags(), *args).stdout

    def policyctl(self, *args: str):
        return json.loads(self.policyctl_text(*args))

    def destroy(self) -> None:
        self.speakers.clear()
        super().destroy()
