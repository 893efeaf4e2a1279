"""Hypothesis strategies for random policy models: endpoints, policies, namespaces, sets, tiers
and profiles, and sequences of writes and deletes of them."""

from hypothesis import strategies as st

from policy.model.documents import parse_resource

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
