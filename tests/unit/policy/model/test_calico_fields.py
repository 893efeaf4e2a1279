"""Every Calico v3 field of every kind Calyx has (issue 9, item 10): a model field, or refused as
"not supported by Calyx" with why, never as an unknown field; and docs/policy.md lists each."""

from pathlib import Path

import pytest

from policy.compiler.compiler import PolicyCompiler
from policy.model.calico_fields import NOT_SUPPORTED
from policy.model.documents import DocumentError, load_documents
from policy.model.kinds import KINDS
from policy.model.rules import EntityRule, Rule
from tests.policy_model import compile_all

DOCS = Path(__file__).resolve().parents[4] / "docs"
# The spec fields of each kind, from Calico's API types (api/pkg/apis/projectcalico/v3 and
# libcalico-go/lib/apis/internalapi for WorkloadEndpoint and Node).
CALICO_SPEC_FIELDS = {
    "NetworkPolicy": "tier order ingress egress selector types serviceAccountSelector performanceHints",
    "GlobalNetworkPolicy": "tier order ingress egress selector types doNotTrack preDNAT applyOnForward "
    "serviceAccountSelector namespaceSelector performanceHints",
    "NetworkSet": "nets",
    "GlobalNetworkSet": "nets",
    "Tier": "order defaultAction",
    "Profile": "ingress egress labelsToApply",
    "WorkloadEndpoint": "orchestrator workload node containerID pod endpoint serviceAccountName ipNetworks ipNATs "
    "ipv4Gateway ipv6Gateway profiles interfaceName mac ports allowSpoofedSourcePrefixes qosControls",
    "Node": "bgp ipv4VXLANTunnelAddr vxlanTunnelMACAddr ipv6VXLANTunnelAddr vxlanTunnelMACAddrV6 orchRefs "
    "wireguard addresses interfaces",
    "IPPool": "cidr vxlanMode ipipMode natOutgoing disabled disableBGPExport blockSize nodeSelector "
    "namespaceSelector allowedUses assignmentMode",
    "BGPPeer": "node nodeSelector peerIP asNumber localASNumber peerSelector keepOriginalNextHop nextHopMode "
    "password sourceAddress maxRestartTime keepaliveTime numAllowedLocalASNumbers ttlSecurity reachableBy "
    "filters localWorkloadSelector reversePeering",
    "BGPConfiguration": "logSeverityScreen nodeToNodeMeshEnabled asNumber serviceLoadBalancerIPs "
    "serviceExternalIPs serviceClusterIPs serviceLoadBalancerAggregation communities prefixAdvertisements "
    "listenPort nodeMeshPassword nodeMeshMaxRestartTime bindMode ignoredInterfaces localWorkloadPeeringIPV4 "
    "localWorkloadPeeringIPV6 programClusterRoutes ipv4NormalRoutePriority ipv6NormalRoutePriority",
}
CALICO_RULE_FIELDS = "action ipVersion protocol icmp notProtocol notICMP source destination http metadata"
CALICO_ENTITY_FIELDS = "nets selector namespaceSelector services ports notNets notSelector notPorts serviceAccounts"


@pytest.mark.parametrize("kind", sorted(CALICO_SPEC_FIELDS))
def test_every_calico_field_is_a_calyx_field_or_refused_with_a_reason(kind):
    spec = KINDS[kind].model_fields["spec"].annotation
    known = set(spec.model_fields) | set(NOT_SUPPORTED.get(kind, {}))
    if kind == "Node":
        known |= set(spec.model_fields["bgp"].annotation.__args__[0].model_fields) | {"ipv4IPIPTunnelAddr"}
    assert set(CALICO_SPEC_FIELDS[kind].split()) - known == set()


def test_every_calico_rule_field_is_a_calyx_field_or_refused_with_a_reason():
    assert set(CALICO_RULE_FIELDS.split()) - set(Rule.model_fields) - set(NOT_SUPPORTED["NetworkPolicy"]) == set()
    entity = set(CALICO_ENTITY_FIELDS.split()) - set(EntityRule.model_fields)
    assert entity - set(NOT_SUPPORTED["NetworkPolicy"]) == set()


def test_docs_list_every_calico_field_with_its_status():
    text = (DOCS / "policy.md").read_text() + (DOCS / "bgp.md").read_text() + (DOCS / "ipam.md").read_text()
    fields = {f for names in CALICO_SPEC_FIELDS.values() for f in names.split()}
    fields |= set(CALICO_RULE_FIELDS.split()) | set(CALICO_ENTITY_FIELDS.split())
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert missing == []


@pytest.mark.parametrize(
    ("kind", "spec", "field", "why"),
    [
        ("BGPConfiguration", "{serviceClusterIPs: [{cidr: 10.96.0.0/12}]}", "spec.serviceClusterIPs", "Service"),
        ("BGPPeer", "{peerIP: 10.0.0.1, reachableBy: 10.0.0.254}", "spec.reachableBy", "static route"),
        ("IPPool", "{cidr: 10.0.0.0/16, namespaceSelector: all()}", "spec.namespaceSelector", "by node"),
        ("Node", "{wireguard: {interfaceIPv4Address: 10.0.0.1}}", "spec.wireguard", "encrypt"),
        ("Node", "{bgp: {ipv4IPIPTunnelAddr: 10.0.0.1}}", "spec.bgp.ipv4IPIPTunnelAddr", "tunnels"),
        (
            "GlobalNetworkPolicy",
            "{ingress: [{action: Allow, destination: {services: {name: s, namespace: d}}}]}",
            "spec.ingress[0].destination.services",
            "Services",
        ),
        ("GlobalNetworkPolicy", "{ingress: [{action: Allow, http: {methods: [GET]}}]}", "spec.ingress[0].http", "HTTP"),
        ("GlobalNetworkPolicy", "{doNotTrack: true}", "spec.doNotTrack", "host endpoints"),
        ("GlobalNetworkPolicy", "{applyOnForward: true}", "spec.applyOnForward", "host endpoints"),
    ],
)
def test_calico_fields_calyx_cannot_honour_are_refused_as_not_supported_not_unknown(kind, spec, field, why):
    with pytest.raises(DocumentError) as caught:
        load_documents(f"apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: r}}\nspec: {spec}\n", "x")
    message = str(caught.value)
    assert f"{field}: " in message and "not supported by Calyx" in message and why in message, message


def test_a_field_calico_does_not_have_is_still_unknown():
    with pytest.raises(DocumentError, match=r"spec.colour: unknown field"):
        load_documents("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {colour: red}\n", "x")


def test_calico_fields_with_a_fixed_meaning_are_accepted():
    policy, endpoint = load_documents(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n"
        "spec: {doNotTrack: false, preDNAT: false, applyOnForward: false, performanceHints: [AssumeNeededOnEveryNode]}\n"
        "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: d}\n"
        "spec: {node: n1, interfaceName: cxw, ipv4Gateway: 169.254.1.1, ipv6Gateway: 'fe80::1'}\n",
        "x",
    )
    assert policy.spec.applyOnForward is False and endpoint.spec.ipv4Gateway == "169.254.1.1"
    with pytest.raises(DocumentError, match="spec.ipv4Gateway"):
        load_documents(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: d}\n"
            "spec: {node: n1, interfaceName: cxw, ipv4Gateway: 10.0.0.1}\n",
            "x",
        )


def test_cidrs_with_host_bits_are_normalised_in_rules_network_sets_and_ip_blocks():
    policy, netset, knp = load_documents(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n"
        "spec: {ingress: [{action: Allow, source: {nets: [10.0.0.1/24], notNets: ['fd00::1/64']}}]}\n---\n"
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [192.0.2.9/28]}\n"
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: d}\n"
        "spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.1.2.3/16, except: [10.1.2.3/24]}}]}]}\n",
        "x",
    )
    source = policy.spec.ingress[0].source
    assert (source.nets, source.notNets, netset.spec.nets) == (["10.0.0.0/24"], ["fd00::/64"], ["192.0.2.0/28"])
    assert (knp.spec.ingress[0].source.nets, knp.spec.ingress[0].source.notNets) == (["10.1.0.0/16"], ["10.1.2.0/24"])
    with pytest.raises(DocumentError, match="is not a valid CIDR"):
        load_documents(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.1/16}\n", "x"
        )


def test_service_account_selector_narrows_the_endpoints_a_policy_applies_to():
    resources = load_documents(
        "apiVersion: calyx.io/v1\nkind: Profile\nmetadata: {name: ksa.d.api}\nspec: {labelsToApply: {pcsa.team: api}}\n"
        "---\napiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: d}\n"
        "spec: {node: n1, interfaceName: cxa, ipNetworks: [10.0.0.1/32], profiles: [ksa.d.api]}\n"
        "---\napiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: b, namespace: d}\n"
        "spec: {node: n1, interfaceName: cxb, ipNetworks: [10.0.0.2/32]}\n"
        "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: d}\n"
        "spec: {serviceAccountSelector: team == 'api', types: [Ingress]}\n",
        "x",
    )
    compiler: PolicyCompiler = compile_all(resources)
    ruleset = compiler.ruleset()
    a, b = (ruleset.chains[ruleset.to_workload[i]] for i in ("cxa", "cxb"))
    assert any("pol-in-" in str(rule) for rule in a) and not any("pol-in-" in str(rule) for rule in b)
