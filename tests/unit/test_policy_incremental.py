"""Properties of the policy compiler: incremental equals from-scratch, whatever the order;
the label index's set algebra equals matching item by item."""

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.compiler.labels import Item, LabelIndex
from policy.compiler.ruleset import build
from policy.model.documents import parse_resource
from policy.model.selector import parse_selector
from tests.policy_model import compile_all, feed

SELECTORS = [
    "all()",
    "app == 'a'",
    "app != 'b'",
    "has(role)",
    "role in {'x', 'y'}",
    "app == 'a' && !has(role)",
    "app == 'b' || role == 'x'",
    "role starts with 'x'",
    "role not in {'x'}",
]
NS_SELECTORS = [None, "all()", "team == 'red'", "global()", "team != 'red'"]
labels = st.dictionaries(
    st.sampled_from(["app", "role", "team"]), st.sampled_from(["a", "b", "x", "y", "red"]), max_size=3
)


def endpoint(i: int, node: str, ns: str, lbls: dict, profile: bool):
    return parse_resource(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": f"e{i}", "namespace": ns, "labels": lbls},
            "spec": {
                "node": node,
                "interfaceName": f"cx{i}",
                "ipNetworks": [f"10.0.0.{i}/32", f"fd00::{i}/128"],
                "ports": [{"name": "http", "port": 80 + i}],
                "profiles": ["p"] if profile else [],
            },
        }
    )


def policy(i: int, ns: str | None, selector: str, peer: str, ns_peer: str | None, action: str, order: int, tier: str):
    rule = {
        "action": action,
        "protocol": "TCP",
        "source": {"selector": peer, **({"namespaceSelector": ns_peer} if ns_peer else {})},
        "destination": {"ports": [80, "http"]},
    }
    spec = {
        "selector": selector,
        "order": order,
        "tier": tier,
        "ingress": [rule],
        "egress": [{**rule, "action": "Allow"}],
    }
    meta = {"name": f"p{i}", **({"namespace": ns} if ns else {})}
    kind = "NetworkPolicy" if ns else "GlobalNetworkPolicy"
    return parse_resource({"apiVersion": "calyx.io/v1", "kind": kind, "metadata": meta, "spec": spec})


def other(kind: str, name: str, lbls: dict, variant: int):
    body = {"apiVersion": "calyx.io/v1", "kind": kind, "metadata": {"name": name, "labels": lbls}}
    if kind == "GlobalNetworkSet":
        body["spec"] = {"nets": [f"192.0.{variant}.0/24", "192.0.0.5/32"]}
    elif kind == "Tier":
        body["spec"] = {"order": variant, "defaultAction": "Pass" if variant % 2 else "Deny"}
    elif kind == "Profile":
        body["spec"] = {
            "ingress": [{"action": "Allow", "source": {"selector": SELECTORS[variant % len(SELECTORS)]}}],
            "labelsToApply": lbls,
        }
    return parse_resource(body)


resources = st.one_of(
    st.builds(
        endpoint, st.integers(1, 6), st.sampled_from(["n1", "n2"]), st.sampled_from(["x", "y"]), labels, st.booleans()
    ),
    st.builds(
        policy,
        st.integers(1, 4),
        st.sampled_from([None, "x", "y"]),
        st.sampled_from(SELECTORS),
        st.sampled_from(SELECTORS),
        st.sampled_from(NS_SELECTORS),
        st.sampled_from(["Allow", "Deny", "Pass", "Log"]),
        st.integers(1, 3),
        st.sampled_from(["default", "t1"]),
    ),
    st.builds(other, st.just("Namespace"), st.sampled_from(["x", "y"]), labels, st.integers(0, 3)),
    st.builds(other, st.just("GlobalNetworkSet"), st.sampled_from(["s1", "s2"]), labels, st.integers(0, 3)),
    st.builds(other, st.just("Tier"), st.just("t1"), st.just({}), st.integers(0, 3)),
    st.builds(other, st.just("Profile"), st.just("p"), labels, st.integers(0, 8)),
)
steps = st.lists(st.tuples(resources, st.booleans(), st.booleans()), min_size=1, max_size=25)


def _identity(resource):
    return (type(resource).__name__, resource.namespace, resource.name)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_incremental_updates_equal_a_fresh_compile_of_the_final_state(sequence):
    from policy.compiler.compiler import PolicyCompiler

    compiler = PolicyCompiler("n1")
    final = {}
    for resource, removed, look in sequence:
        feed(compiler, resource, removed=removed)
        if removed:
            final.pop(_identity(resource), None)
        else:
            final[_identity(resource)] = resource
        if look:
            compiler.ruleset()
    fresh = compile_all(list(final.values()))
    assert build(compiler.ruleset()).commands() == build(fresh.ruleset()).commands()


@settings(max_examples=200, deadline=None)
@given(st.lists(labels, max_size=12), st.sampled_from(SELECTORS + ["!(app == 'a' || has(team))", "team ends with 'd'"]))
def test_index_selection_equals_matching_one_by_one(all_labels, text):
    index = LabelIndex()
    for i, lbls in enumerate(all_labels):
        index.put(f"i{i}", Item(lbls, "ns"))
    selector = parse_selector(text)
    assert index.select(selector) == {f"i{i}" for i, lbls in enumerate(all_labels) if selector.matches(lbls)}
