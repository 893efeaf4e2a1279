"""The pure plan: sessions (mesh with a deterministic passive side, BGPPeers), announcements
(blocks, borrowed and hand-assigned addresses, export switches, communities) and blackholes."""

import pytest

from bgp.plan import BgpState, BlockFacts, PlanError, compute_plan, router_id
from policy.model.bgp import (
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPPeer,
    BGPPeerSpec,
    Community,
    PrefixAdvertisement,
)
from policy.model.pools import IPPool, IPPoolSpec
from policy.model.resources import Metadata, Node, NodeBGPSpec, NodeSpec


def node(name: str, v4: str | None, v6: str | None = None, labels=None, asn=None) -> Node:
    return Node(
        metadata=Metadata(name=name, labels=labels or {}),
        spec=NodeSpec(bgp=NodeBGPSpec(ipv4Address=v4, ipv6Address=v6, asNumber=asn)),
    )


def state(**kwargs) -> BgpState:
    s = BgpState()
    s.nodes = {
        n.name: n
        for n in kwargs.pop("nodes", [node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24"), node("n3", "10.0.0.3/24")])
    }
    for key, value in kwargs.items():
        setattr(s, key, value)
    return s


def test_mesh_peers_every_other_node_and_the_higher_address_waits():
    plan1, plan3 = compute_plan(state(), "n1"), compute_plan(state(), "n3")
    assert [(p.address, p.name, p.passive) for p in plan1.speaker.peers] == [
        ("10.0.0.2", "mesh:n2", False),
        ("10.0.0.3", "mesh:n3", False),
    ]
    assert [(p.address, p.passive) for p in plan3.speaker.peers] == [("10.0.0.1", True), ("10.0.0.2", True)]
    assert plan1.speaker.as_number == 64512 and plan1.speaker.router_id == "10.0.0.1"


def test_no_mesh_and_bgp_peers_by_node_selector_and_peer_selector():
    config = {
        "default": BGPConfiguration(
            metadata=Metadata(name="default"), spec=BGPConfigurationSpec(asNumber=65000, nodeToNodeMeshEnabled=False)
        )
    }
    peers = {
        "tor": BGPPeer(
            metadata=Metadata(name="tor"), spec=BGPPeerSpec(peerIP="10.0.0.254", asNumber=65001, password="s3cret")
        ),
        "rack-a": BGPPeer(
            metadata=Metadata(name="rack-a"),
            spec=BGPPeerSpec(nodeSelector="rack == 'a'", peerIP="10.0.1.1", asNumber=65002, sourceAddress="None"),
        ),
        "to-rr": BGPPeer(metadata=Metadata(name="to-rr"), spec=BGPPeerSpec(peerSelector="has(rr)")),
        "other": BGPPeer(
            metadata=Metadata(name="other"), spec=BGPPeerSpec(node="n2", peerIP="10.0.2.1", asNumber=65003)
        ),
    }
    nodes = [
        node("n1", "10.0.0.1/24", labels={"rack": "a"}),
        node("n2", "10.0.0.2/24"),
        node("n3", "10.0.0.3/24", labels={"rr": ""}, asn=65009),
    ]
    plan = compute_plan(state(nodes=nodes, configurations=config, peers=peers), "n1")
    got = {p.address: (p.name, p.as_number, p.local_address, p.password, p.passive) for p in plan.speaker.peers}
    assert got == {
        "10.0.0.254": ("tor", 65001, "10.0.0.1", "s3cret", False),
        "10.0.1.1": ("rack-a", 65002, None, None, False),
        "10.0.0.3": ("to-rr", 65009, "10.0.0.1", None, False),
    }
    assert plan.speaker.as_number == 65000


def test_sessions_only_in_families_both_sides_have():
    nodes = [node("n1", "10.0.0.1/24", "fd00::1/64"), node("n2", "10.0.0.2/24"), node("n3", None, "fd00::3/64")]
    plan = compute_plan(state(nodes=nodes), "n1")
    assert {p.address for p in plan.speaker.peers} == {"10.0.0.2", "fd00::3"}
    assert plan.speaker.addresses == ("10.0.0.1", "fd00::1")
    v6_only = compute_plan(state(nodes=nodes), "n3").speaker
    assert v6_only.router_id == router_id("n3", None) != "0.0.0.0"


def test_announces_own_blocks_and_local_addresses_outside_them_with_blackholes_for_blocks():
    pools = {
        "p4": IPPool(metadata=Metadata(name="p4"), spec=IPPoolSpec(cidr="10.244.0.0/16")),
        "quiet": IPPool(metadata=Metadata(name="quiet"), spec=IPPoolSpec(cidr="10.99.0.0/16", disableBGPExport=True)),
    }
    blocks = {
        "b1": BlockFacts("10.244.0.0/26", "10.244.0.0/16", "n1"),
        "b2": BlockFacts("10.244.0.64/26", "10.244.0.0/16", "n2"),
        "b3": BlockFacts("10.99.0.0/26", "10.99.0.0/16", "n1"),
    }
    local = {
        "wep/a": frozenset({"10.244.0.5/32"}),  # inside our block: covered by it
        "wep/b": frozenset({"10.244.0.70/32"}),  # borrowed from n2's block
        "wep/c": frozenset({"192.168.7.7/32"}),  # by hand, outside every pool
        "wep/d": frozenset({"10.99.1.1/32"}),
    }  # in a pool that does not export
    plan = compute_plan(state(pools=pools, blocks=blocks, local_addresses=local), "n1")
    assert set(plan.announcements) == {"10.244.0.0/26", "10.244.0.70/32", "192.168.7.7/32"}
    assert plan.blackholes == {"10.244.0.0/26", "10.99.0.0/26"}


def test_prefix_advertisements_attach_named_and_literal_communities():
    spec = BGPConfigurationSpec(
        communities=[Community(name="gold", value="65000:100")],
        prefixAdvertisements=[PrefixAdvertisement(cidr="10.244.0.0/16", communities=["gold", "65000:1:2"])],
    )
    config = {"default": BGPConfiguration(metadata=Metadata(name="default"), spec=spec)}
    blocks = {"b1": BlockFacts("10.244.0.0/26", "10.244.0.0/16", "n1")}
    local = {"wep/x": frozenset({"172.16.0.1/32"})}
    plan = compute_plan(state(configurations=config, blocks=blocks, local_addresses=local), "n1")
    assert plan.announcements == {"10.244.0.0/26": ("65000:100", "65000:1:2"), "172.16.0.1/32": ()}


def test_a_node_without_a_resource_or_an_address_cannot_plan():
    with pytest.raises(PlanError, match="no Node resource"):
        compute_plan(state(), "n9")
    with pytest.raises(PlanError, match="no BGP address"):
        compute_plan(state(nodes=[node("n1", None)]), "n1")


def test_the_plan_does_not_depend_on_insertion_order():
    a = state(nodes=[node("n3", "10.0.0.3/24"), node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")])
    assert compute_plan(a, "n2") == compute_plan(state(), "n2")
