"""YAML as people write it (issue 9): YAML 1.2 scalars, duplicate keys, empty values, label
scalars, lists of resources, what `get -o yaml` prints, protocol case, bytes that are not UTF-8."""

import pytest
import yaml

from policy.model.documents import DocumentError, InvalidDocuments, NoDocuments, load_documents, parse_resource
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, Profile
from policy.model.resources import Namespace, WorkloadEndpoint
from policy.model.yaml_codec import Loader, dump_all, load_all


def _error(text: str | bytes) -> str:
    with pytest.raises(DocumentError) as info:
        load_documents(text, "bad.yaml")
    return str(info.value)


# Item 2: YAML 1.2 core schema scalars, with libyaml.


def test_the_loader_is_libyamls():
    assert issubclass(Loader, yaml.CSafeLoader)


def test_unquoted_port_range_is_a_range_not_a_base_60_integer():
    (policy,) = load_documents(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\n"
        "spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [20:21, 8080]\n",
        "p.yaml",
    )
    assert policy.spec.ingress[0].destination.ports == ["20:21", 8080]


def test_unquoted_bgp_community_is_accepted():
    (config,) = load_documents(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
        "spec:\n  communities:\n  - {name: ours, value: 5663:12}\n"
        "  prefixAdvertisements:\n  - {cidr: 198.19.0.0/16, communities: [ours, 5663:13, 65001:1:2]}\n",
        "bgp.yaml",
    )
    assert config.spec.communities[0].value == "5663:12"
    assert config.spec.prefixAdvertisements[0].communities == ["ours", "5663:13", "65001:1:2"]


def test_scalars_follow_the_yaml_1_2_core_schema():
    (doc,) = load_all(
        "a: yes\nb: on\nc: off\nd: y\ne: true\nf: False\ng: 017\nh: 0o17\ni: 0x1F\nj: 1.5\nk: 1e3\n"
        "l: 2024-05-01T10:00:00Z\nm: 2024-05-01\nn: ~\no:\np: 1_000\nq: =\n"
    )
    assert doc == {
        **{"a": "yes", "b": "on", "c": "off", "d": "y", "e": True, "f": False},
        **{"g": 17, "h": 15, "i": 31, "j": 1.5, "k": 1000.0},
        **{"l": "2024-05-01T10:00:00Z", "m": "2024-05-01", "n": None, "o": None, "p": "1_000", "q": "="},
    }


def test_what_the_writer_prints_reads_back_as_the_same_strings():
    strings = {k: k for k in ("20:21", "1e3", "0o17", "017", "yes", "on", "true", "2024-05-01", "1_000", "~", ".5")}
    text = dump_all([strings])
    assert list(load_all(text)) == [strings]
    assert list(yaml.safe_load_all(text)) == [strings]  # and with YAML 1.1 rules


# Item 3: duplicate keys, at any depth.


@pytest.mark.parametrize(
    "spec, key, line, first",
    [
        ("spec:\n  selector: app == 'db'\n  selector: app == 'web'\n", "selector", 10, 9),
        (
            "spec:\n  ingress:\n  - action: Allow\n    source:\n      nets: [10.0.0.0/8]\n      nets: [0.0.0.0/0]\n",
            "nets",
            13,
            12,
        ),
        ("spec: {}\nspec: {selector: all()}\n", "spec", 9, 8),
    ],
)
def test_a_duplicate_key_is_refused_naming_the_key_and_its_line(spec, key, line, first):
    text = "apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: t}\n---\n" + (
        "apiVersion: calyx.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\n" + spec
    )
    message = _error(text)
    assert message.startswith("bad.yaml: document 2: invalid YAML at line")
    assert f"at line {line}," in message and f"duplicate key '{key}' (first at line {first})" in message


@pytest.mark.parametrize("mapping", ["{1: a, 1.0: b}", "{true: a, 1: b}", "{'5': a, 5: b}", "{a: x, 'a': y}"])
def test_keys_equal_in_value_or_text_are_duplicates(mapping):
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        list(load_all(f"labels: {mapping}\n"))


def test_a_merge_key_may_be_overridden_and_is_no_duplicate():
    (doc,) = load_all("base: &b {a: 1, c: 2}\nd:\n  <<: *b\n  a: 3\n")
    assert doc["d"] == {"a": 3, "c": 2}


# Item 6: an empty value means empty, as in Kubernetes.

KUBERNETES_EMPTY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: prod
  labels:
spec:
  podSelector:
    matchLabels:
  policyTypes:
  - Ingress
  ingress:
"""
CALICO_EMPTY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: prod
spec:
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: nothing-yet
  labels:
    role:
spec:
  nets:
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: open
spec:
  ingress:
  - action: Allow
    source:
    destination:
  egress:
  labelsToApply:
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: last
spec:
  order:
  selector: all()
  types:
  egress:
  - action: Allow
"""


def test_empty_values_mean_empty_as_kubernetes_reads_them():
    (knp,) = load_documents(KUBERNETES_EMPTY, "k8s.yaml")
    assert isinstance(knp, NetworkPolicy)
    assert knp.spec.selector == "all()" and knp.spec.types == ["Ingress"] and knp.spec.ingress == []
    deny, netset, profile, last = load_documents(CALICO_EMPTY, "calico.yaml")
    assert isinstance(deny, NetworkPolicy) and deny.spec.selector == "all()" and deny.spec.types == ["Ingress"]
    assert isinstance(netset, GlobalNetworkSet) and netset.spec.nets == [] and netset.metadata.labels == {"role": ""}
    assert isinstance(profile, Profile) and profile.spec.egress == [] and profile.spec.labelsToApply == {}
    assert profile.spec.ingress[0].source.nets == []
    assert isinstance(last, GlobalNetworkPolicy) and last.spec.order is None and last.spec.types == ["Egress"]


def test_an_empty_required_value_is_reported_missing():
    message = _error("apiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata:\n  name:\nspec:\n")
    assert "metadata.name: Field required" in message and "spec.node: Field required" in message


# Item 8: unquoted label scalars are the strings Calico makes of them.


def test_unquoted_label_scalars_become_the_strings_calico_makes_of_them():
    (ns, knp, profile) = load_documents(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n"
        "  labels: {istio-injection: yes, monitored: true, tier: 5, version: 1.10, on: off, 8080: http}\n"
        "  annotations: {replicas: 3}\n"
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\n"
        "spec:\n  podSelector:\n    matchLabels: {monitored: true}\n"
        "    matchExpressions: [{key: tier, operator: In, values: [5, false]}]\n"
        "---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\nspec: {labelsToApply: {gen: 2}}\n",
        "labels.yaml",
    )
    assert isinstance(ns, Namespace)
    assert ns.metadata.labels == {
        **{"istio-injection": "yes", "monitored": "true", "tier": "5", "version": "1.1", "on": "off"},
        **{"8080": "http", "kubernetes.io/metadata.name": "prod"},
    }
    assert ns.metadata.annotations == {"replicas": "3"}
    assert knp.spec.selector == "monitored == 'true' && tier in {'5', 'false'}"
    assert profile.spec.labelsToApply == {"gen": "2"}


def test_scalars_outside_label_maps_keep_their_yaml_type():
    assert "metadata.name: Input should be a valid string" in _error(
        "apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: 5}\n"
    )
    with pytest.raises(DocumentError, match="metadata.labels: label '1' is given twice"):
        parse_resource(
            {"apiVersion": "calyx.io/v1", "kind": "Tier", "metadata": {"name": "t", "labels": {1: "a", "1": "b"}}}
        )


# Item 9: lists of resources, and what `get -o yaml` prints.

CALICOCTL_LIST = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicyList
metadata:
  resourceVersion: "1234"
items:
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata:
    creationTimestamp: 2024-05-01T10:00:00Z
    generation: 2
    name: allow-tcp-6379
    namespace: production
    resourceVersion: "1200"
    uid: 1d6c6c3e-6a4b-4f0e-9a4e-0a1b2c3d4e5f
  spec:
    selector: role == 'database'
    types: [Ingress]
    ingress:
    - action: Allow
      protocol: TCP
      source: {selector: role == 'frontend'}
      destination: {ports: [6379]}
  status: {}
- metadata: {name: second, namespace: production}
  spec: {selector: all()}
"""


def test_a_calicoctl_kind_list_loads_every_item():
    first, second = load_documents(CALICOCTL_LIST, "list.yaml")
    assert isinstance(first, NetworkPolicy) and isinstance(second, NetworkPolicy)
    assert first.metadata.creationTimestamp == "2024-05-01T10:00:00Z"
    assert first.metadata.resourceVersion == "1200" and first.namespace == "production"
    assert "generation" not in first.metadata.model_dump()
    assert second.name == "second" and second.spec.types == ["Ingress"]


def test_a_kubectl_list_and_a_top_level_yaml_list_load_every_item():
    items = (
        "- apiVersion: v1\n  kind: Namespace\n  metadata: {name: prod, creationTimestamp: null}\n  spec: {}\n  status: {}\n"
        "- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkSet\n  metadata: {name: dns}\n  spec: {nets: [10.0.0.53]}\n"
    )
    kubectl = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: ''}\nitems:\n" + items
    for text in (kubectl, items, '{"kind": "List", "items": []}\n---\n' + kubectl):
        ns, netset = load_documents(text, "list.yaml")
        assert isinstance(ns, Namespace) and ns.name == "prod"
        assert isinstance(netset, GlobalNetworkSet) and netset.spec.nets == ["10.0.0.53/32"]


def test_a_bad_list_item_is_named_by_document_and_item():
    bad = CALICOCTL_LIST.replace("spec: {selector: all()}", "spec: {selector: 'all('}").replace(
        "generation: 2", "generation: 2\n    nme: typo"
    )
    with pytest.raises(InvalidDocuments) as info:
        load_documents(bad, "list.yaml")
    first, second = (str(e) for e in info.value.errors)
    assert (
        first == "list.yaml: document 1, item 1 (NetworkPolicy production/allow-tcp-6379): metadata.nme: unknown field"
    )
    assert second.startswith("list.yaml: document 1, item 2 (NetworkPolicy production/second): spec.selector:")
    mixed = CALICOCTL_LIST.replace(
        "- metadata: {name: second", "- kind: GlobalNetworkPolicy\n  metadata: {name: second"
    )
    assert "document 1 (NetworkPolicyList): items[1].kind: a NetworkPolicyList holds only NetworkPolicy" in _error(
        mixed
    )
    assert "document 1 (List): spec: unknown field" in _error("apiVersion: v1\nkind: List\nitems: []\nspec: {}\n")


# Item 12: protocol names are case-sensitive, as in Calico.


@pytest.mark.parametrize(
    "rule, field, right",
    [
        ("{action: Allow, protocol: tcp}", "spec.ingress[0].protocol", "TCP"),
        ("{action: Allow, notProtocol: icmpv6}", "spec.ingress[0].notProtocol", "ICMPv6"),
        ("{action: Allow, protocol: udplite}", "spec.ingress[0].protocol", "UDPLite"),
    ],
)
def test_a_lowercase_rule_protocol_is_refused_with_the_right_spelling(rule, field, right):
    message = _error(
        f"apiVersion: calyx.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{ingress: [{rule}]}}\n"
    )
    assert (
        f"{field}: '{right.lower()}' is not valid: protocol names are case-sensitive (as in Calico), use '{right}'"
        in message
    )


def test_a_lowercase_endpoint_port_protocol_is_refused_with_the_right_spelling():
    text = (
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: prod}\n"
        "spec: {node: n1, interfaceName: cxa, ports: [{name: dns, port: 53, protocol: udp}]}\n"
    )
    assert (
        "spec.ports[0].protocol: 'udp' is not valid: protocol names are case-sensitive (as in Calico), use 'UDP'"
        in _error(text)
    )
    (wep,) = load_documents(text.replace("udp", "UDP"), "wep.yaml")
    assert isinstance(wep, WorkloadEndpoint) and wep.spec.ports[0].protocol == "UDP"


# Items 13 and 14: bytes that are not UTF-8, and sources with no documents.


def test_bytes_that_are_not_utf8_name_the_offset_and_line():
    data = b"apiVersion: calyx.io/v1\n# caf\xe9\nkind: Tier\nmetadata: {name: t}\n"
    assert _error(data) == "bad.yaml: is not UTF-8 text: byte 0xe9 at offset 29 (line 2)"
    assert (
        _error(b"\x7fELF\x02\x01\x01\x00" + b"\xff" * 8)
        == "bad.yaml: is not UTF-8 text: byte 0xff at offset 8 (line 1)"
    )
    assert "document 1: invalid YAML: character #x00 at byte offset 7 (line 1)" in _error(b"kind: a\x00b\n")
    (tier,) = load_documents("apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: t}\n".encode("utf-16"), "w.yaml")
    assert tier.name == "t"


@pytest.mark.parametrize("text", ["", "# nothing here\n", "---\n", "---\n# just comments\n---\n"])
def test_a_source_without_documents_is_an_error(text):
    with pytest.raises(NoDocuments) as info:
        load_documents(text, "empty.yaml")
    assert str(info.value) == "file empty.yaml holds no documents"


# Item 15: every bad document of a source is reported, not only the first.


def test_every_bad_document_of_a_source_is_reported():
    good = "apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: t}\n"
    text = "---\n".join([good, good.replace("name: t", "name: T1"), good, good.replace("Tier", "Gizmo"), "kind: ["])
    with pytest.raises(InvalidDocuments) as info:
        load_documents(text, "many.yaml")
    lines = str(info.value).splitlines()
    assert [line.split(":")[1] for line in lines] == [" document 2 (Tier T1)", " document 4 (Gizmo t)", " document 5"]
