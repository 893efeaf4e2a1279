"""What the compiler keeps per endpoint: a cluster's 100,000 remote endpoints must stay small
(issue 15). These check the layout, not the output (the golden tests hold that)."""

from policy.compiler.compiler import PolicyCompiler
from policy.compiler.labels import Item, LabelIndex, shared_labels
from policy.compiler.sets import collapse
from policy.model.resources import Metadata, WorkloadEndpoint, WorkloadEndpointSpec
from policy.model.selector import parse_selector


def endpoint(name: str, node: str, address: str, labels: dict[str, str], *more: str, **spec) -> WorkloadEndpoint:
    return WorkloadEndpoint(
        metadata=Metadata(name=name, namespace="ns", labels=labels),
        spec=WorkloadEndpointSpec(node=node, interfaceName=f"cx{name}", ipNetworks=[f"{address}/32", *more], **spec),
    )


def test_endpoints_with_the_same_labels_share_one_label_map_in_the_index():
    compiler = PolicyCompiler("n1")
    compiler.set_endpoint("a", endpoint("a", "n2", "10.0.0.1", {"app": "web", "version": "v1"}))
    compiler.set_endpoint("b", endpoint("b", "n3", "10.0.0.2", {"version": "v1", "app": "web"}))
    compiler.set_endpoint("c", endpoint("c", "n3", "10.0.0.3", {"app": "db"}))
    items = compiler.index.items
    assert items["a"].labels is items["b"].labels
    assert items["a"].labels is not items["c"].labels
    assert items["c"].labels["app"] == "db"


def test_a_shared_label_map_equals_what_was_asked_for_even_after_the_first_holder_is_gone():
    first = shared_labels({"app": "web"})
    assert shared_labels({"app": "web"}) is first
    del first
    again = shared_labels({"app": "web"})
    assert again == {"app": "web"} and shared_labels({"app": "api"}) == {"app": "api"}


def test_another_nodes_endpoint_keeps_no_interface_name_and_one_networks_tuple():
    compiler = PolicyCompiler("n1")
    compiler.set_endpoint("remote", endpoint("remote", "n2", "10.0.0.1", {}))
    compiler.set_endpoint("local", endpoint("local", "n1", "10.0.0.2", {}))
    assert compiler._endpoints["remote"].interface == ""
    assert compiler._endpoints["local"].interface == "cxlocal"
    assert compiler._ipv4["remote"] is compiler._endpoints["remote"].networks
    assert "remote" not in compiler._ipv6  # IPv4 only: nothing held for IPv6


def test_a_dual_stack_endpoint_is_split_by_family_and_back_to_one_when_single_stack():
    compiler = PolicyCompiler("n1")
    compiler.set_endpoint("d", endpoint("d", "n2", "10.0.0.1", {}, "fd00::1/128"))
    assert (compiler._ipv4["d"], compiler._ipv6["d"]) == (("10.0.0.1/32",), ("fd00::1/128",))
    compiler.set_endpoint("d", endpoint("d", "n2", "10.0.0.1", {}))
    assert "d" not in compiler._ipv6
    compiler.set_endpoint("d", None)
    assert "d" not in compiler._ipv4


def test_strings_many_endpoints_carry_are_one_object():
    compiler = PolicyCompiler("n1")
    for name in ("a", "b"):
        account, orchestrator = "".join(["web", "-sa"]), "".join(["k8", "s"])  # new strings, as decoding makes
        compiler.set_endpoint(
            name, endpoint(name, "n2", "10.0.0.1", {}, orchestrator=orchestrator, serviceAccountName=account)
        )
    a, b = compiler._endpoints["a"], compiler._endpoints["b"]
    assert a.orchestrator is b.orchestrator and a.service_account is b.service_account


def test_a_host_address_in_two_sets_is_one_string():
    one = collapse([f"10.0.{i // 256}.{i % 256}/32" for i in range(300)])
    other = collapse([f"10.0.{i // 256}.{i % 256}/32" for i in range(100, 400)])
    shared = {id(a) for a in one} & {id(b) for b in other}
    assert len(shared) == 200


def test_a_label_key_is_indexed_from_the_first_selector_on_it_and_kept_up_to_date():
    index = LabelIndex()
    index.put("a", Item({"app": "web", "hash": "1"}, "ns"))
    assert not index._values  # nobody selected on anything yet
    assert index.select(parse_selector("hash == '1'")) == {"a"}
    index.put("b", Item({"hash": "1", "app": "db"}, "ns"))
    index.put("a", None)
    assert index.select(parse_selector("hash == '1'")) == {"b"}
    assert index.select(parse_selector("has(hash) && app == 'db'")) == {"b"}
    assert set(index._values) == {"hash", "app"}
