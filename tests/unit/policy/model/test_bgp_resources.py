import pytest

from policy.model.documents import DocumentError, load_documents

PEER = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 198.18.0.1, asNumber: 65001}\n"


def test_calico_bgp_documents_are_accepted_with_defaults():
    config, peer = load_documents(
        "apiVersion: calyx.io/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n"
        "spec: {nodeToNodeMeshEnabled: false, communities: [{name: c, value: '65000:100'}],\n"
        "       prefixAdvertisements: [{cidr: 10.0.0.0/16, communities: [c, '65000:200']}]}\n---\n" + PEER,
        "bgp.yaml",
    )
    assert config.spec.asNumber is None and config.spec.nodeToNodeMeshEnabled is False  # the plan fills in 64512
    assert peer.spec.peerIP == "198.18.0.1" and peer.spec.sourceAddress == "UseNodeIP"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("{peerIP: 198.18.0.1, asNumber: 65001, holdTime: 9}", "spec.holdTime: unknown field"),
        (
            "{peerIP: 198.18.0.1, asNumber: 4294967296}",
            "spec.asNumber: Input should be less than or equal to 4294967295",
        ),
        ("{peerIP: 198.18.0.300, asNumber: 65001}", "spec.peerIP: '198.18.0.300' is not a valid IP address"),
        ("{peerIP: 198.18.0.1, asNumber: 1, peerSelector: all()}", "spec: give exactly one of peerIP"),
        ("{peerSelector: 'rr ==', node: n1}", "spec.peerSelector: invalid selector"),
    ],
)
def test_bad_peers_are_refused_naming_the_field(spec, message):
    with pytest.raises(DocumentError) as caught:
        load_documents(f"apiVersion: calyx.io/v1\nkind: BGPPeer\nmetadata: {{name: p}}\nspec: {spec}\n", "peers.yaml")
    assert message in str(caught.value) and "peers.yaml: document 1 (BGPPeer p)" in str(caught.value)


def test_advertised_communities_must_be_named_or_literal():
    with pytest.raises(DocumentError, match="community 'nope' is neither a name"):
        load_documents(
            "apiVersion: calyx.io/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {prefixAdvertisements: [{cidr: 10.0.0.0/16, communities: [nope]}]}\n",
            "c.yaml",
        )
