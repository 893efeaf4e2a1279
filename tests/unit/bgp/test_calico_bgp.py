"""Calico's BGP YAML as people write it (issue 9, items 7, 10, 11): passwords by secretKeyRef,
peerIP with a port or without asNumber, per-node BGPConfiguration, and the per-session fields
(localASNumber, maxRestartTime, ttlSecurity) as ExaBGP renders them."""

import pytest

from bgp.exabgp_config import render_config
from bgp.plan import BgpState, compute_plan, secret_refs
from bgp.secrets import read_secrets
from policy.ctl.output import shown
from policy.model.bgp import BGPConfiguration, BGPPeer
from policy.model.documents import DocumentError, load_documents
from policy.model.resources import Metadata, Node, NodeBGPSpec, NodeSpec


def _resources(text: str) -> list:
    return load_documents(text, "bgp.yaml")


def _state(text: str = "", nodes=("n1", "n2")) -> BgpState:
    state = BgpState()
    for index, name in enumerate(nodes, start=1):
        state.nodes[name] = Node(
            metadata=Metadata(name=name), spec=NodeSpec(bgp=NodeBGPSpec(ipv4Address=f"10.0.0.{index}/24"))
        )
    for resource in _resources(text) if text else []:
        table = state.configurations if isinstance(resource, BGPConfiguration) else state.peers
        assert isinstance(resource, BGPConfiguration | BGPPeer)
        table[resource.name] = resource  # type: ignore[assignment]
    return state


def _peer(spec: str, name: str = "tor") -> str:
    return f"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"


CONFIG = "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
SECRET_PEER = _peer("{peerIP: 10.0.0.254, asNumber: 65001, password: {secretKeyRef: {name: bgp, key: tor}}}")


def test_peer_ip_without_as_number_peers_in_the_nodes_own_as():
    text = CONFIG.format(name="default", spec="{asNumber: 65100}") + _peer("{peerIP: 10.0.0.254}")
    (peer,) = [p for p in compute_plan(_state(text), "n1").speaker.peers if p.name == "tor"]
    assert peer.as_number == 65100


@pytest.mark.parametrize(
    ("peer_ip", "address", "rendered"),
    [("10.0.0.254:1790", "10.0.0.254", "connect 1790;"), ("'[fd00::fe]:1790'", "fd00::fe", "connect 1790;")],
)
def test_peer_ip_with_a_port_is_where_exabgp_connects(peer_ip, address, rendered):
    state = _state(_peer(f"{{peerIP: {peer_ip}, asNumber: 65001}}"))
    state.nodes["n1"] = Node(
        metadata=Metadata(name="n1"),
        spec=NodeSpec(bgp=NodeBGPSpec(ipv4Address="10.0.0.1/24", ipv6Address="fd00::1/64")),
    )
    speaker = compute_plan(state, "n1").speaker
    (peer,) = [p for p in speaker.peers if p.name == "tor"]
    assert (peer.address, peer.port) == (address, 1790)
    assert rendered in render_config(speaker, "/bin/bridge", 120, 90)


def test_peer_ip_without_a_port_connects_to_179():
    speaker = compute_plan(_state(_peer("{peerIP: 10.0.0.254, asNumber: 65001}")), "n1").speaker
    assert "connect" not in render_config(speaker, "/bin/bridge", 120, 90)


@pytest.mark.parametrize(
    ("peer_ip", "message"),
    [("10.0.0.254:0", "port 0 of '10.0.0.254:0' is out of range"), ("'[fd00::zz]:179'", "is not a valid IP address")],
)
def test_a_bad_peer_ip_or_port_is_refused(peer_ip, message):
    with pytest.raises(DocumentError, match=message):
        _resources(_peer(f"{{peerIP: {peer_ip}, asNumber: 65001}}"))


def test_a_secret_key_ref_password_is_read_from_the_secrets_and_a_missing_one_leaves_the_peer_out():
    state = _state(SECRET_PEER)
    assert secret_refs(state) == {("bgp", "tor")}
    plan = compute_plan(state, "n1", {("bgp", "tor"): "s3cret"})
    assert {p.name: p.password for p in plan.speaker.peers}["tor"] == "s3cret" and not plan.problems
    missing = compute_plan(state, "n1", {})
    assert "tor" not in {p.name for p in missing.speaker.peers}
    assert missing.problems == ("BGPPeer tor: no session: its password secret bgp/tor is missing",)
    assert {p.name for p in missing.speaker.peers} == {"mesh:n2"}  # the rest still peers


def test_an_optional_secret_that_is_missing_means_no_password():
    state = _state(SECRET_PEER.replace("key: tor}", "key: tor, optional: true}"))
    plan = compute_plan(state, "n1", {})
    assert {p.name: p.password for p in plan.speaker.peers}["tor"] is None and not plan.problems


def test_secrets_are_files_named_by_secret_and_key_with_one_trailing_newline_dropped(tmp_path):
    (tmp_path / "bgp").mkdir()
    (tmp_path / "bgp" / "tor").write_text("s3cret\n")
    (tmp_path / "bgp" / "bad").write_text('with "quote"')
    values, problems = read_secrets(tmp_path, [("bgp", "tor"), ("bgp", "bad"), ("gone", "k")])
    assert values == {("bgp", "tor"): "s3cret"}
    assert set(problems) == {("bgp", "bad"), ("gone", "k")}
    assert str(tmp_path / "gone" / "k") + " does not exist" == problems[("gone", "k")]


def test_a_secret_key_ref_is_printed_as_is_an_inline_password_redacted():
    by_reference, inline = _resources(
        SECRET_PEER + _peer("{peerIP: 10.0.0.253, asNumber: 65001, password: s3cret}", name="inline")
    )
    assert shown(by_reference)["spec"]["password"] == {"secretKeyRef": {"name": "bgp", "key": "tor", "optional": False}}
    assert shown(inline)["spec"]["password"] == "<redacted>"


def test_mesh_password_and_restart_time_apply_to_mesh_sessions():
    text = CONFIG.format(
        name="default", spec="{nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}, nodeMeshMaxRestartTime: 2m}"
    )
    speaker = compute_plan(_state(text), "n1", {("bgp", "mesh"): "m3sh"}).speaker
    (mesh,) = speaker.peers
    assert (mesh.password, mesh.restart_time) == ("m3sh", 120)
    assert "graceful-restart 120;" in render_config(speaker, "/bin/bridge", 300, 90)
    assert compute_plan(_state(text), "n1", {}).speaker.peers == ()  # no mesh without its password


def test_local_as_restart_time_and_ttl_security_are_rendered_per_peer():
    text = _peer("{peerIP: 10.0.0.254, asNumber: 65001, localASNumber: 65222, maxRestartTime: 90s, ttlSecurity: 1}")
    config = render_config(compute_plan(_state(text), "n1").speaker, "/bin/bridge", 120, 90)
    tor = config[config.index("neighbor 10.0.0.254") :]
    for line in ("local-as 65222;", "graceful-restart 90;", "outgoing-ttl 255;", "incoming-ttl 255;"):
        assert line in tor
    assert "local-as 64512;" in config[: config.index("neighbor 10.0.0.254")]  # the mesh keeps the node's AS


def test_per_node_configuration_overrides_log_level_listen_port_and_advertisements_for_that_node_only():
    text = CONFIG.format(name="default", spec="{asNumber: 65100, listenPort: 1179}") + CONFIG.format(
        name="node.n2",
        spec="{logSeverityScreen: Debug, listenPort: 1790, prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: ['65100:7']}]}",
    )
    state = _state(text)
    state.local_addresses = {"w": frozenset({"10.9.0.1/32"})}
    n1, n2 = compute_plan(state, "n1"), compute_plan(state, "n2")
    assert (n2.speaker.listen_port, n2.speaker.log_severity, n2.speaker.as_number) == (1790, "Debug", 65100)
    assert n2.announcements == {"10.9.0.1/32": ("65100:7",)}
    assert (n1.speaker.listen_port, n1.speaker.log_severity, n1.announcements) == (1179, "Info", {"10.9.0.1/32": ()})
    assert [p.port for p in n1.speaker.peers] == [1790]  # n1 reaches n2 where n2 listens


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("node.n2", "{asNumber: 65001}", "spec.asNumber: only BGPConfiguration default sets it"),
        ("node.n2", "{nodeToNodeMeshEnabled: false}", "spec.nodeToNodeMeshEnabled: only BGPConfiguration default"),
        ("rack-a", "{}", "a BGPConfiguration is named default or node.<node name>, not 'rack-a'"),
        ("default", "{bindMode: None}", "spec.bindMode: Input should be 'NodeIP'"),
        ("default", "{nodeMeshMaxRestartTime: 120}", "give a duration with its unit"),
        ("default", "{nodeMeshMaxRestartTime: 2h}", "outside 1s-4095s"),
    ],
)
def test_bgp_configuration_is_refused_where_calyx_cannot_honour_it(name, spec, message):
    with pytest.raises(DocumentError, match=message):
        _resources(CONFIG.format(name=name, spec=spec))


def test_calico_fields_calyx_honours_are_accepted():
    config, peer = _resources(
        CONFIG.format(name="default", spec="{bindMode: NodeIP, ignoredInterfaces: [eth9, 'vxlan*']}")
        + _peer("{peerIP: 10.0.0.254, asNumber: 65001, nextHopMode: Self, keepOriginalNextHop: true}")
    )
    assert config.spec.ignoredInterfaces == ["eth9", "vxlan*"] and peer.spec.nextHopMode == "Self"
