"""The evaluator's verdicts, and the reasons it gives, for each part of the semantics."""

import pytest

from policy.compiler.ruleset import HostAccess
from policy.evaluate.evaluator import (
    ANTI_SPOOFING,
    HOST_ACCESS,
    NO_POLICY,
    NOT_FILTERED,
    PROFILE_DEFAULT,
    PROFILE_RULE,
    RULE,
    TIER_DEFAULT,
    Evaluator,
    Peer,
)
from policy.evaluate.rules import Packet
from tests.policy_model import docs

BASE = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: blue}}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {node: n1, interfaceName: cxa, ipNetworks: [10.0.0.1/32, 'fd00::1/128'], ports: [{name: web, port: 8080}]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {node: n1, interfaceName: cxb, ipNetworks: [10.0.0.2/32, 'fd00::2/128'], serviceAccountName: builder}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: c, namespace: y, labels: {app: c}}
spec: {node: n2, interfaceName: cxc, ipNetworks: [10.0.1.3/32], ports: [{name: web, port: 9090}]}
---
apiVersion: calyx.io/v1
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 198.18.0.1/24}}
---
apiVersion: calyx.io/v1
kind: GlobalNetworkSet
metadata: {name: partners, labels: {kind: partner}}
spec: {nets: [203.0.113.0/24]}
"""
ADDRESS = {"x/a": "10.0.0.1", "x/b": "10.0.0.2", "y/c": "10.0.1.3"}


def model(extra: str = "", **options) -> Evaluator:
    return Evaluator(docs(BASE + ("---\n" + extra if extra else "")), **options)


def flow(evaluator: Evaluator, src: str, dst: str, protocol: int = 6, port: int | None = 80, **icmp):
    source = evaluator.locate(ADDRESS.get(src, src))
    destination = evaluator.locate(ADDRESS.get(dst, dst))
    return evaluator.flow(source, destination, Packet(source.address, destination.address, protocol, port, **icmp))


def policy(name: str, spec: str, namespace: str | None = "x") -> str:
    kind = "NetworkPolicy" if namespace else "GlobalNetworkPolicy"
    ns = f", namespace: {namespace}" if namespace else ""
    return f"apiVersion: calyx.io/v1\nkind: {kind}\nmetadata: {{name: {name}{ns}}}\nspec: {spec}\n---\n"


def test_no_policy_allows_and_says_it_is_the_kubernetes_default():
    verdict = flow(model(), "x/a", "y/c")
    assert verdict.allowed
    assert [(d.direction, d.reason) for d in verdict.decisions] == [("Egress", NO_POLICY), ("Ingress", NO_POLICY)]


def test_the_deciding_rule_is_named_with_its_tier_policy_and_index():
    evaluator = model(
        policy(
            "web",
            "{selector: app == 'a', ingress: [{action: Deny, protocol: UDP}, {action: Allow, source: {selector: app == 'b'}}]}",
        )
    )
    ingress = flow(evaluator, "x/b", "x/a").decisions[-1]
    assert (ingress.allowed, ingress.reason, ingress.tier, ingress.policy, ingress.index) == (
        True,
        RULE,
        "default",
        "NetworkPolicy x/web",
        1,
    )
    assert ingress.rule is not None and ingress.rule.source.selector == "app == 'b'"
    denied = flow(evaluator, "y/c", "x/a").decisions[-1]  # y/c: not in the policy's namespace
    assert (denied.allowed, denied.reason, denied.tier) == (False, TIER_DEFAULT, "default")
    assert "NetworkPolicy x/web" in denied.detail


def test_tiers_in_order_pass_skips_the_rest_of_its_tier_and_log_goes_on():
    evaluator = model(
        "apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 1}\n---\n"
        + policy("log", "{tier: security, order: 1, ingress: [{action: Log}]}", None)
        + policy("pass", "{tier: security, order: 2, ingress: [{action: Pass, source: {selector: app == 'b'}}]}", None)
        + policy("deny", "{tier: security, order: 3, ingress: [{action: Deny}]}", None)
        + policy("allow", "{ingress: [{action: Allow}]}")
    )
    passed = flow(evaluator, "x/b", "x/a").decisions[-1]
    assert (passed.allowed, passed.policy, passed.tier) == (True, "NetworkPolicy x/allow", "default")
    assert [(s.action, s.policy) for s in passed.trail] == [
        ("Log", "GlobalNetworkPolicy log"),
        ("Pass", "GlobalNetworkPolicy pass"),
    ]
    denied = flow(evaluator, "y/c", "x/a").decisions[-1]
    assert (denied.allowed, denied.policy, denied.tier) == (False, "GlobalNetworkPolicy deny", "security")


@pytest.mark.parametrize(("default", "allowed", "reason"), [("Deny", False, TIER_DEFAULT), ("Pass", True, NO_POLICY)])
def test_a_tier_that_decides_nothing_ends_with_its_default_action(default, allowed, reason):
    evaluator = model(
        f"apiVersion: calyx.io/v1\nkind: Tier\nmetadata: {{name: t}}\nspec: {{order: 5, defaultAction: {default}}}\n---\n"
        + policy("only-udp", "{tier: t, ingress: [{action: Allow, protocol: UDP}]}", None)
    )
    ingress = flow(evaluator, "x/b", "x/a").decisions[-1]
    assert (ingress.allowed, ingress.reason) == (allowed, reason)


def test_profiles_decide_when_no_policy_applies_and_end_with_deny():
    profile = (
        "apiVersion: calyx.io/v1\nkind: Profile\nmetadata: {name: p}\n"
        "spec: {ingress: [{action: Allow, source: {selector: app == 'b'}}], labelsToApply: {via: profile}}\n---\n"
    )
    text = BASE.replace("ipNetworks: [10.0.0.1/32, 'fd00::1/128'],", "ipNetworks: [10.0.0.1/32], profiles: [p],")
    evaluator = Evaluator(docs(text + "---\n" + profile))
    allowed = flow(evaluator, "x/b", "x/a").decisions[-1]
    assert (allowed.allowed, allowed.reason, allowed.policy, allowed.index) == (True, PROFILE_RULE, "Profile p", 0)
    denied = flow(evaluator, "y/c", "x/a").decisions[-1]
    assert (denied.allowed, denied.reason) == (False, PROFILE_DEFAULT)
    # labelsToApply reach selectors
    assert evaluator.universe.select("via == 'profile'", None, None) == {0}


def test_named_ports_without_a_selector_mean_every_endpoints_port():
    evaluator = model(policy("named", "{egress: [{action: Allow, protocol: TCP, destination: {ports: [web]}}]}"))
    assert flow(evaluator, "x/b", "y/c", port=9090).allowed  # y/c's web port, another namespace
    assert not flow(evaluator, "x/b", "y/c", port=8080).allowed  # x/a's web port, not y/c's
    assert flow(evaluator, "x/b", "x/a", port=8080).allowed


def test_nets_not_nets_namespace_selectors_and_service_accounts():
    evaluator = model(
        policy(
            "in",
            "{selector: app == 'a', ingress: ["
            "{action: Deny, source: {nets: [10.0.1.0/24], notNets: [10.0.1.3/32]}},"
            "{action: Allow, source: {namespaceSelector: team == 'blue'}},"
            "{action: Allow, source: {serviceAccounts: {names: [builder]}}},"
            "{action: Allow, source: {selector: kind == 'partner', namespaceSelector: global()}}]}",
        )
    )
    assert flow(evaluator, "y/c", "x/a").decisions[-1].index == 1  # notNets took it out of rule 0
    assert flow(evaluator, "x/b", "x/a").decisions[-1].index == 2
    from_partner = flow(evaluator, "203.0.113.9", "x/a")
    assert [d.direction for d in from_partner.decisions] == ["Ingress"]  # no egress side outside
    assert from_partner.decisions[0].index == 3
    assert not flow(evaluator, "192.0.2.1", "x/a").allowed


def test_icmp_type_code_and_not_icmp():
    evaluator = model(
        policy(
            "icmp",
            "{selector: app == 'a', ingress: [{action: Allow, protocol: ICMP, icmp: {type: 8}, notICMP: {type: 8, code: 1}}]}",
        )
    )
    assert flow(evaluator, "x/b", "x/a", 1, None, icmp_type=8, icmp_code=0).allowed
    assert not flow(evaluator, "x/b", "x/a", 1, None, icmp_type=8, icmp_code=1).allowed
    assert not flow(evaluator, "x/b", "x/a", 1, None, icmp_type=13, icmp_code=0).allowed


def test_ipv6_rules_need_ipv6_packets():
    evaluator = model(policy("v6", "{selector: app == 'a', ingress: [{action: Allow, ipVersion: 6}]}"))
    assert flow(evaluator, "fd00::2", "fd00::1").allowed
    assert not flow(evaluator, "x/b", "x/a").allowed


def test_anti_spoofing_and_the_first_claimant_of_an_address():
    text = BASE + (
        "---\napiVersion: calyx.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: thief, namespace: x}\n"
        "spec: {node: n1, interfaceName: cxt, ipNetworks: [10.0.0.1/32]}\n"
    )
    evaluator = Evaluator(docs(text), created={("x", "a"): 5, ("x", "thief"): 3})  # thief was first
    thief = evaluator.locate("10.0.0.1")
    assert thief.description == "WorkloadEndpoint x/thief"
    a = next(m for m in evaluator.universe.endpoints if m.name == "x/a")
    spoofed = evaluator.flow(
        Peer("10.0.0.1", "x/a", a, "n1"), evaluator.locate("10.0.1.3"), Packet("10.0.0.1", "10.0.1.3", 6, 80)
    )
    assert not spoofed.allowed and spoofed.decisions[0].reason == ANTI_SPOOFING


def test_workload_to_its_own_host_meets_the_endpoint_to_host_action():
    dropped = flow(model(), "x/a", "198.18.0.1", port=22)
    assert not dropped.allowed and dropped.decisions[-1].reason == HOST_ACCESS
    opened = flow(model(host_access=HostAccess("Drop", ((6, 22),))), "x/a", "198.18.0.1", port=22)
    assert opened.allowed
    assert flow(model(host_access=HostAccess("Accept")), "x/a", "198.18.0.1", port=22).allowed
    assert flow(model(), "y/c", "198.18.0.1", port=22).allowed  # another node's host: forwarded


def test_host_to_its_own_workloads_and_an_endpoint_to_itself_are_not_filtered():
    evaluator = model(policy("deny", "{ingress: [{action: Deny}]}"))
    assert flow(evaluator, "198.18.0.1", "x/a").decisions[-1].reason == NOT_FILTERED
    assert flow(evaluator, "x/a", "x/a").allowed
    assert not flow(evaluator, "y/c", "x/a").allowed


def test_service_account_selectors_match_the_labels_of_the_accounts_profile():
    account = (
        "apiVersion: calyx.io/v1\nkind: Profile\nmetadata: {name: ksa.x.builder}\n"
        "spec: {labelsToApply: {pcsa.role: build}}\n---\n"
    )
    text = BASE.replace("serviceAccountName: builder}", "serviceAccountName: builder, profiles: [ksa.x.builder]}")
    evaluator = Evaluator(
        docs(
            text
            + "---\n"
            + account
            + policy(
                "by-account",
                "{selector: app == 'a', ingress: [{action: Allow, source: {serviceAccounts: {selector: role == 'build'}}}]}",
            )
            + policy("of-account", "{serviceAccountSelector: role == 'build', egress: [{action: Deny}]}")
        )
    )
    assert not flow(evaluator, "x/b", "x/a").allowed  # x/b's egress: of-account applies to its account
    from_c = flow(evaluator, "y/c", "x/a").decisions[-1]
    assert (from_c.allowed, from_c.reason) == (False, TIER_DEFAULT)
    into_a = evaluator.decide(evaluator.locate("10.0.0.1").endpoint, "Ingress", Packet("10.0.0.2", "10.0.0.1", 6, 80))
    assert (into_a.allowed, into_a.policy) == (True, "NetworkPolicy x/by-account")
