"""A selector set is a hash set while its members are host addresses and an interval set while
one holds a wider network (issue 15: libnftables reads every interval set before each change).
The change of kind is a new set, named differently, that every chain using it switches to in
the transaction that deletes the old one."""

import json

from felix.policy_driver import PolicyDriver
from policy.compiler.ruleset import build
from tests.fakes import FakeNft
from tests.policy_model import compile_all, docs, feed

MODEL = """
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n1, interfaceName: cxdb, ipNetworks: [10.0.1.2/32], profiles: [shop]}
---
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n2, interfaceName: cxweb, ipNetworks: [10.0.2.1/32]}
---
apiVersion: calyx.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}}]
---
apiVersion: calyx.io/v1
kind: Profile
metadata: {name: shop}
spec:
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
"""
WIDE = """
apiVersion: calyx.io/v1
kind: WorkloadEndpoint
metadata: {name: vm, namespace: shop, labels: {app: web}}
spec: {node: n3, interfaceName: cxvm, ipNetworks: [10.9.0.0/24]}
"""


def _web_sets(ruleset) -> dict[str, tuple[bool, frozenset]]:
    return {
        name: (s.interval, s.elements)
        for name, s in ruleset.sets.items()
        if name.startswith("sel4-") and "10.0.2.1" in s.elements
    }


def _references(ruleset) -> set[str]:
    text = json.dumps(ruleset.chains)
    return {name for name in ruleset.sets if f'"@{name}"' in text}


def _names(names: set[str], suffix: str) -> set[str]:
    return {name + suffix for name in names}


def test_a_selector_set_of_host_addresses_is_a_hash_set():
    sets = _web_sets(compile_all(docs(MODEL)).ruleset())  # the policy's (its namespace) and the profile's
    assert len(sets) == 2 and set(sets.values()) == {(False, frozenset({"10.0.2.1"}))}
    assert not any(name.endswith("-i") for name in sets)


def test_an_endpoint_with_a_wider_network_makes_it_an_interval_set_and_back():
    compiler = compile_all(docs(MODEL))
    hashed = set(_web_sets(compiler.ruleset()))
    (wide,) = docs(WIDE)
    feed(compiler, wide)
    ruleset = compiler.ruleset()
    assert _web_sets(ruleset) == dict.fromkeys(_names(hashed, "-i"), (True, frozenset({"10.0.2.1", "10.9.0.0/24"})))
    assert not hashed & set(ruleset.sets) and _names(hashed, "-i") <= _references(ruleset)
    chains = [json.dumps(rules) for name, rules in ruleset.chains.items() if name.startswith(("pol-in-", "prof-in-"))]
    assert len(chains) == 2 and all(any(f'"@{name}"' in chain for name in _names(hashed, "-i")) for chain in chains)
    assert build(ruleset).commands() == build(compile_all([*docs(MODEL), wide]).ruleset()).commands()
    feed(compiler, wide, removed=True)
    ruleset = compiler.ruleset()
    assert _web_sets(ruleset) == dict.fromkeys(hashed, (False, frozenset({"10.0.2.1"})))
    assert not _names(hashed, "-i") & set(ruleset.sets) and hashed <= _references(ruleset)
    assert build(ruleset).commands() == build(compile_all(docs(MODEL)).ruleset()).commands()


def test_a_network_set_net_and_a_host_in_one_selection_make_an_interval_set():
    netset = """
apiVersion: calyx.io/v1
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {app: web}}
spec: {nets: [198.51.100.7/32, 198.51.100.0/24]}
"""
    sets = _web_sets(compile_all(docs(MODEL + "---" + netset)).ruleset())
    assert set(sets.values()) == {(True, frozenset({"10.0.2.1", "198.51.100.0/24"}))}


def test_the_switch_is_one_transaction_new_sets_then_chains_then_old_sets_deleted():
    compiler = compile_all(docs(MODEL))
    nft = FakeNft()
    driver = PolicyDriver(nft)
    driver.apply(compiler.ruleset())
    hashed = set(_web_sets(compiler.ruleset()))
    (wide,) = docs(WIDE)
    feed(compiler, wide)
    driver.apply(compiler.ruleset())
    ops = [
        (verb, what, obj.get("name") or obj.get("chain"))
        for command in nft.transactions[-1]
        for verb, body in command.items()
        for what, obj in body.items()
    ]
    added = [i for i, (verb, what, name) in enumerate(ops) if (verb, what) == ("add", "set")]
    deleted = [i for i, (verb, what, name) in enumerate(ops) if (verb, what) == ("delete", "set")]
    flushes = [i for i, (verb, what, _) in enumerate(ops) if (verb, what) == ("flush", "chain")]
    assert {ops[i][2] for i in added} == _names(hashed, "-i") and {ops[i][2] for i in deleted} == hashed
    assert len(flushes) == 2 and max(added) < min(flushes) and max(flushes) < min(deleted)  # policy and profile
    assert all(nft.set_types[name] == ("ipv4_addr", ("interval",)) for name in _names(hashed, "-i"))
    feed(compiler, wide, removed=True)
    driver.apply(compiler.ruleset())
    assert all(nft.set_types[name] == ("ipv4_addr", ()) for name in hashed)
    assert not _names(hashed, "-i") & set(nft.sets)
    fresh = FakeNft()
    fresh.run(build(compiler.ruleset()))
    assert (nft.chains, nft.sets, nft.set_types) == (fresh.chains, fresh.sets, fresh.set_types)
