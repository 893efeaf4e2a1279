"""The daemon against fakes: nothing before in-sync; blocks, borrowed addresses and peers from
etcd; learned routes into the kernel (ECMP, never over our own prefixes, never over a foreign
route); bad data in etcd skipped and counted, never rendered; status for `policyctl node status`."""

import json

import pytest
from click.testing import CliRunner

import policy.ctl.main
from bgp.address import AddressError, HostView, choose, detect, register
from bgp.config import BgpConfig
from bgp.daemon import BgpDaemon
from bgp.metrics import BgpMetrics
from bgp.speaker import SpeakerControl
from policy.datastore.etcd import EtcdSettings
from policy.datastore.kv import Change
from policy.datastore.store import ResourceStore
from policy.datastore.watch import SyncBatch
from policy.runtime.status import bgp_status_key
from tests.fakes import FakeBgpKernel, FakeKV, FakeSpeakerProcess

P = "/calyx/v1"


def node_json(name, v4):
    return json.dumps(
        {"apiVersion": "calyx.io/v1", "kind": "Node", "metadata": {"name": name}, "spec": {"bgp": {"ipv4Address": v4}}}
    ).encode()


def peer_json(name, spec):
    return json.dumps(
        {"apiVersion": "calyx.io/v1", "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}
    ).encode()


def block_json(cidr, node):
    return json.dumps({"cidr": cidr, "pool": "10.244.0.0/16", "affinity": node, "allocations": {}}).encode()


def wep_json(name, node, nets):
    return json.dumps(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": node, "interfaceName": f"cx{name}", "ipNetworks": nets},
        }
    ).encode()


class Rig:
    def __init__(self):
        self.kv, self.kernel, self.process, self.metrics = FakeKV(), FakeBgpKernel(), FakeSpeakerProcess(), BgpMetrics()
        self.now = 100.0
        config = BgpConfig(
            node_name="n1", etcd=EtcdSettings(("http://x",)), etcd_prefix="/calyx", graceful_restart_time=60
        )
        self.speaker = SpeakerControl(self.process, 60, 90, self.metrics, {})
        self.daemon = BgpDaemon(
            config,
            self.kv,
            self.kernel,
            self.speaker,
            self.metrics,
            clock=lambda: self.now,
            wall=lambda: 5000.0 + self.now,
        )
        self.daemon.start()
        self.revision = 0

    def etcd(self, *changes, complete=True):
        self.revision += 1
        self.daemon.on_batch(SyncBatch([Change(k, v, self.revision) for k, v in changes], self.revision, complete))
        self.daemon.loop.turn(self.daemon, 0)

    def exabgp(self, message):
        self.daemon.on_exabgp_message(message)
        self.daemon.loop.turn(self.daemon, 0)


def learned(peer, *prefixes, hop=None):
    return {
        "type": "update",
        "neighbor": {
            "address": {"peer": peer},
            "direction": "receive",
            "message": {"update": {"announce": {"ipv4 unicast": {hop or peer: [{"nlri": p} for p in prefixes]}}}},
        },
    }


@pytest.fixture
def rig():
    return Rig()


BASE = [
    (f"{P}/nodes/n1", node_json("n1", "10.0.0.1/24")),
    (f"{P}/nodes/n2", node_json("n2", "10.0.0.2/24")),
    (f"{P}/nodes/n3", node_json("n3", "10.0.0.3/24")),
    (f"{P}/ipam/blocks/10.244.0.0-26", block_json("10.244.0.0/26", "n1")),
    (f"{P}/workloadendpoints/default/borrowed", wep_json("borrowed", "n1", ["10.244.0.70/32"])),
    (f"{P}/workloadendpoints/default/elsewhere", wep_json("elsewhere", "n2", ["10.244.0.71/32"])),
]


def test_nothing_happens_before_the_first_complete_list(rig):
    rig.etcd(*BASE, complete=False)
    assert not rig.process.alive and not rig.kernel.blackholes and rig.kv.get(bgp_status_key("/calyx", "n1")) is None
    rig.etcd()
    assert rig.process.alive and rig.kernel.blackholes == {"10.244.0.0/26"}
    assert rig.speaker.announced == {"10.244.0.0/26": (), "10.244.0.70/32": ()}
    assert [s for s in rig.speaker.sessions] == ["10.0.0.2", "10.0.0.3"]


def test_learned_routes_are_installed_with_ecmp_but_never_over_our_own_prefixes(rig):
    rig.etcd(*BASE)
    rig.exabgp(learned("10.0.0.2", "10.244.1.0/26", "10.244.9.0/26", "10.244.0.0/26"))
    rig.exabgp(learned("10.0.0.3", "10.244.9.0/26", "10.244.5.5/32"))
    rig.exabgp(learned("10.0.0.3", "10.244.0.70/32", "10.244.7.0/26", hop="10.0.0.1"))  # ours, and via ourselves
    assert rig.kernel.learned == {
        "10.244.1.0/26": {"10.0.0.2"},
        "10.244.9.0/26": {"10.0.0.2", "10.0.0.3"},
        "10.244.5.5/32": {"10.0.0.3"},
    }
    rig.kernel.foreign.add("10.244.6.0/26")
    rig.exabgp(learned("10.0.0.2", "10.244.6.0/26"))
    assert "10.244.6.0/26" not in rig.kernel.learned and rig.metrics.route_errors._value.get() == 1
    rig.now += 2  # status is published at most once a second
    rig.daemon.loop.turn(rig.daemon, 0)
    status = json.loads(rig.kv.get(bgp_status_key("/calyx", "n1")).value)
    assert status["installed"] == 3 and status["announced"] == 2
    assert {s["peer"]: s["received"] for s in status["sessions"]} == {"10.0.0.2": 4, "10.0.0.3": 4}


def test_bad_peers_in_etcd_are_skipped_counted_and_never_rendered(rig):
    good = (f"{P}/bgppeers/tor", peer_json("tor", {"peerIP": "10.0.0.254", "asNumber": 65001}))
    rig.etcd(*BASE, good)
    rig.etcd(
        (f"{P}/bgppeers/tor", peer_json("tor", {"peerIP": "10.0.0.254", "asNumber": 99999999999})),
        (f"{P}/bgppeers/typo", peer_json("typo", {"peerIP": "10.0.0.253", "asNumber": 65001, "holdTme": 3})),
        (f"{P}/bgppeers/junk", b"{not json"),
    )
    assert rig.metrics.bad_resources.labels("BGPPeer")._value.get() == 3
    config = rig.process.configs[-1]
    assert "neighbor 10.0.0.254" in config and "peer-as 65001;" in config  # the last good version stays
    assert "10.0.0.253" not in config and "99999999999" not in config


def test_withdrawn_when_the_endpoint_goes_and_kernel_routes_of_a_previous_run_are_held(rig):
    rig.kernel.learned = {"10.244.3.0/26": frozenset({"10.0.0.3"})}
    rig.daemon.start()  # as after a restart: the kernel's routes are adopted
    rig.etcd(*BASE)
    rig.etcd((f"{P}/workloadendpoints/default/borrowed", None))
    assert (
        rig.process.commands[-1]
        == "neighbor 10.0.0.2 , neighbor 10.0.0.3 withdraw attributes next-hop self nlri 10.244.0.70/32"
    )
    assert rig.kernel.learned == {"10.244.3.0/26": {"10.0.0.3"}}
    rig.now += 61
    rig.daemon.loop.turn(rig.daemon, 0)
    assert rig.kernel.learned == {}


def test_policyctl_node_status_prints_sessions(rig, monkeypatch):
    rig.etcd(*BASE)
    rig.exabgp({"type": "state", "neighbor": {"address": {"peer": "10.0.0.2"}, "state": "up"}})
    rig.exabgp(learned("10.0.0.2", "10.244.1.0/26"))
    rig.now += 2
    rig.daemon.loop.turn(rig.daemon, 0)
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: rig.kv)
    monkeypatch.setattr("policy.ctl.node.time.time", lambda: 5000.0 + rig.now + 30)
    out = CliRunner().invoke(policy.ctl.main.cli, ["node", "status", "n1"], catch_exceptions=False).output
    lines = out.splitlines()
    assert "AS 64512" in lines[0] and "2 prefixes announced, 1 routes installed" in lines[0]
    assert lines[1].split() == ["PEER", "NAME", "AS", "STATE", "SINCE", "RECEIVED", "SENT"]
    assert lines[2].split() == ["10.0.0.2", "mesh:n2", "64512", "up", "32s", "1", "2"]
    missing = CliRunner().invoke(policy.ctl.main.cli, ["node", "status", "n9"])
    assert missing.exit_code == 1 and "no BGP status for node 'n9'" in missing.output


HOST = HostView(
    lambda: [("lo", "127.0.0.1/8"), ("eth0", "192.0.2.10/24"), ("eth1", "198.51.100.7/24"), ("eth1", "2001:db8::7/64")],
    lambda dest: "198.51.100.7",
)


def test_address_autodetection_is_explicit():
    assert detect("interface=eth0", 4, HOST) == "192.0.2.10/24"
    assert detect("cidr=198.51.100.0/24", 4, HOST) == "198.51.100.7/24"
    assert detect("can-reach=198.51.100.1", 4, HOST) == "198.51.100.7/24"
    assert detect("interface=eth.*", 6, HOST) == "2001:db8::7/64"
    for method, message in [
        ("first-found", "unknown autodetection method"),
        ("interface=wlan0", "found no IPv4 address"),
        ("cidr=nope", "autodetection method 'cidr=nope'"),
    ]:
        with pytest.raises(AddressError, match=message):
            detect(method, 4, HOST)
    assert choose("10.1.1.1/24", "10.9.9.9/24", "interface=eth0", 4, HOST) == "10.1.1.1/24"
    assert choose(None, "10.9.9.9/24", "interface=eth0", 4, HOST) == "10.9.9.9/24"
    assert choose(None, None, None, 4, HOST) is None
    with pytest.raises(AddressError, match="not an IPv4 address"):
        choose("2001:db8::1", None, None, 4, HOST)


def test_registration_writes_the_node_and_refuses_without_any_address():
    store = ResourceStore(FakeKV(), "/calyx")
    with pytest.raises(AddressError, match="no BGP address for node n1"):
        register(store, "n1", None, None, None, None, None, HOST)
    node = register(store, "n1", None, None, "interface=eth1", "interface=eth1", 65010, HOST)
    assert (node.spec.bgp.ipv4Address, node.spec.bgp.ipv6Address, node.spec.bgp.asNumber) == (
        "198.51.100.7/24",
        "2001:db8::7/64",
        65010,
    )
    again = register(store, "n1", None, None, None, None, None, HOST)  # the recorded address is kept
    assert (
        again.spec.bgp.ipv4Address == "198.51.100.7/24"
        and again.metadata.resourceVersion == node.metadata.resourceVersion
    )


MALFORMED_EXABGP = [
    {
        "type": "open",
        "neighbor": {
            "address": {"peer": "10.0.0.2"},
            "direction": "receive",
            "open": {"capabilities": {"64": {"time": "soon"}}},
        },
    },  # int() of a word
    {
        "type": "update",
        "neighbor": {
            "address": {"peer": "10.0.0.2"},
            "message": {"update": {"announce": {"ipv4 unicast": {"10.0.0.2": [{"no-nlri": "10.244.1.0/26"}]}}}},
        },
    },  # no nlri key
    {
        "type": "update",
        "neighbor": {
            "address": {"peer": "10.0.0.2"},
            "message": {"update": {"announce": {"ipv4 unicast": {"10.0.0.2": [{"nlri": "not-a-prefix"}]}}}},
        },
    },
    {"type": "state", "neighbor": ["not", "a", "mapping"]},
    {"type": "update", "neighbor": {"address": {"peer": "10.0.0.2"}, "message": {"update": {"announce": 7}}}},
]


@pytest.mark.parametrize("message", MALFORMED_EXABGP)
def test_no_message_from_exabgp_stops_the_daemon(rig, message):
    rig.etcd(*BASE)
    rig.exabgp(message)
    rig.exabgp(learned("10.0.0.2", "10.244.1.0/26"))
    assert rig.kernel.learned == {"10.244.1.0/26": {"10.0.0.2"}}  # nothing of the bad one; the next good one applies
    assert rig.daemon.loop.liveness()[0]
