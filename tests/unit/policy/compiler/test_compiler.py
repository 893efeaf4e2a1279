import json
import os

from policy.compiler.ruleset import build
from tests.policy_model import GOLDEN, compile_all, docs, feed


def _golden(name: str, commands: list[dict]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps({"nftables": commands}, indent=1, sort_keys=True) + "\n"
    if os.environ.get("CALYX_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"compiled output differs from {path} (CALYX_UPDATE_GOLDEN=1 rewrites it)"


def test_golden_nftables_output_for_a_representative_model():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    _golden("representative", build(compile_all(resources).ruleset()).commands())


def test_output_is_the_same_whatever_the_order_resources_arrive_in():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    forward = build(compile_all(resources).ruleset()).commands()
    backward = build(compile_all(list(reversed(resources))).ruleset()).commands()
    assert forward == backward


def test_named_port_set_holds_address_protocol_and_port_of_matching_endpoints():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    ruleset = compile_all(resources).ruleset()
    ports = {n: s.elements for n, s in ruleset.sets.items() if n.startswith("port4-")}
    assert list(ports.values()) == [frozenset({("10.0.1.1", 6, 8080), ("10.0.2.1", 6, 8081)})]


def test_overlapping_nets_are_merged_for_interval_sets():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    ruleset = compile_all(resources).ruleset()
    monitoring = [s.elements for n, s in ruleset.sets.items() if "198.51.100.0/24" in s.elements]
    assert monitoring == [frozenset({"198.51.100.0/24"})]  # the /32 inside it is absorbed


def test_endpoint_without_policy_or_profile_rules_is_open_and_anti_spoofed():
    resources = docs("""\
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: a, namespace: x}
spec: {node: n1, interfaceName: cxa, ipNetworks: [10.0.0.1/32]}
""")
    ruleset = compile_all(resources).ruleset()
    assert ruleset.sets["wl-src4"].elements == {("cxa", "10.0.0.1")}
    assert ruleset.sets["wl-src6"].elements == frozenset()  # no IPv6 address: it may send no IPv6
    for chain in (ruleset.from_workload["cxa"], ruleset.to_workload["cxa"]):
        assert "drop" not in json.dumps(ruleset.chains[chain][1:])  # past ct invalid: nothing drops
    assert ruleset.sets["wl-ifaces"].elements == {"cxa"}


def test_endpoints_with_the_same_policies_share_chains():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    ruleset = compile_all(resources).ruleset()
    assert ruleset.to_workload["cxweb1"] != ruleset.to_workload["cxdb1"]
    twin = docs(
        (GOLDEN / "representative.yaml")
        .read_text()
        .replace("name: web-1,", "name: web-3,")
        .replace("cxweb1", "cxweb3")
        .replace("10.0.1.1/32", "10.0.1.3/32")
    )
    ruleset = compile_all(resources + [r for r in twin if r.name == "web-3"]).ruleset()
    assert ruleset.to_workload["cxweb3"] == ruleset.to_workload["cxweb1"]
    assert ruleset.from_workload["cxweb3"] == ruleset.from_workload["cxweb1"]


def test_removing_everything_leaves_only_the_empty_interface_and_pool_sets():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    compiler = compile_all(resources)
    compiler.ruleset()
    for resource in resources:
        feed(compiler, resource, removed=True)
    ruleset = compiler.ruleset()
    assert set(ruleset.chains) == {"nat-outgoing"} and ruleset.from_workload == {}
    assert {name: s.elements for name, s in ruleset.sets.items()} == dict.fromkeys(
        ["wl-ifaces", "wl-src4", "wl-src6", "pools4", "pools6", "nat-pools4", "nat-pools6"], frozenset()
    )


def test_a_policy_that_cannot_compile_becomes_drop_all_for_its_endpoints_only():
    resources = docs((GOLDEN / "representative.yaml").read_text())
    compiler = compile_all(resources)
    before = dict(compiler.ruleset().chains)
    key = "/calyx/v1/networkpolicies/shop/db"
    compiler.quarantine(key, "the kernel refused it")
    after = compiler.ruleset().chains
    changed = {name: rules for name, rules in after.items() if before.get(name) != rules}
    assert list(changed.values()) == [([{"drop": None}],)]  # db's ingress chain, nothing else
    assert len(before[next(iter(changed))]) == 5  # its five compiled rules before
    assert compiler.errors == {key: "the kernel refused it"}


def test_collapse_keeps_hosts_bare_and_merges_networks_of_either_family():
    from policy.compiler.sets import collapse

    assert collapse(["10.0.0.1/32", "fd00::1/128"]) == {"10.0.0.1", "fd00::1"}
    assert collapse(["2001:db8::/32"]) == {"2001:db8::/32"}
    assert collapse(["10.0.0.0/24", "10.0.0.7/32", "10.0.1.0/24"]) == {"10.0.0.0/23"}
