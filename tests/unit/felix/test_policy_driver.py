"""The nftables driver against a fake that checks references: minimal incremental writes,
and a restart that rebuilds without ever deleting the table."""

import json

import pytest

from felix.nft import NftError
from felix.policy_driver import PolicyDriver
from policy.compiler.ruleset import build
from tests.fakes import FakeNft
from tests.policy_model import GOLDEN, compile_all, docs, feed

MODEL = (GOLDEN / "representative.yaml").read_text()


def _state(nft: FakeNft):
    return (json.dumps(nft.chains, sort_keys=True), {n: sorted(e) for n, e in nft.sets.items()}, nft.maps)


def _fresh(ruleset) -> FakeNft:
    nft = FakeNft()
    nft.run(build(ruleset))
    return nft


def test_changing_one_policy_rewrites_its_chain_and_set_elements_only():
    resources = docs(MODEL)
    compiler = compile_all(resources)
    nft = FakeNft()
    driver = PolicyDriver(nft)
    assert driver.apply(compiler.ruleset()).full
    changed = docs(MODEL.replace("ports: [{port: 5432}]", "ports: [{port: 5433}]"))
    for resource in changed:
        if resource.name == "knp.default.web":
            feed(compiler, resource)
    result = driver.apply(compiler.ruleset())
    commands = nft.transactions[-1]
    touched = {
        (verb, what, obj.get("chain") or obj.get("name"))
        for c in commands
        for verb, b in c.items()
        for what, obj in b.items()
    }
    chains = {name for _, what, name in touched if what in ("chain", "rule")}
    assert not result.full and len(chains) == 1 and next(iter(chains)).startswith("pol-out-")
    assert all(what in ("chain", "rule") for _, what, _ in touched)
    assert _state(nft) == _state(_fresh(compiler.ruleset()))


def test_a_new_endpoint_adds_its_chains_map_entries_and_set_members():
    compiler = compile_all(docs(MODEL))
    nft = FakeNft()
    driver = PolicyDriver(nft)
    driver.apply(compiler.ruleset())
    for resource in docs(
        MODEL.replace("name: web-1,", "name: web-3,")
        .replace("cxweb1", "cxweb3")
        .replace("10.0.1.1/32", "10.0.1.3/32")
        .replace("fd00::1:1/128", "fd00::1:3/128")
    ):
        if resource.name == "web-3":
            feed(compiler, resource)
    driver.apply(compiler.ruleset())
    verbs = [(verb, what) for c in nft.transactions[-1] for verb, b in c.items() for what in b]
    assert ("flush", "chain") not in verbs or verbs.count(("flush", "chain")) <= 1
    assert nft.maps["from-wl"]["cxweb3"] == nft.maps["from-wl"]["cxweb1"]  # same policies: a shared chain
    assert _state(nft) == _state(_fresh(compiler.ruleset()))


def test_nothing_changed_writes_nothing():
    compiler = compile_all(docs(MODEL))
    nft = FakeNft()
    driver = PolicyDriver(nft)
    driver.apply(compiler.ruleset())
    assert driver.apply(compiler.ruleset()).commands == 0


def test_restart_rebuilds_in_one_transaction_without_deleting_the_table():
    old = compile_all(docs(MODEL))
    nft = _fresh(old.ruleset())
    nft.transactions.clear()
    new = compile_all([r for r in docs(MODEL) if r.name not in ("db-1", "knp.default.web")])
    PolicyDriver(nft).apply(new.ruleset())
    assert len(nft.transactions) == 1
    assert not any("table" in body for c in nft.transactions[0] for verb, body in c.items() if verb == "delete")
    assert _state(nft) == _state(_fresh(new.ruleset()))


def test_a_refused_transaction_changes_nothing_and_the_next_apply_rebuilds():
    compiler = compile_all(docs(MODEL))
    nft = FakeNft()
    driver = PolicyDriver(nft)
    driver.apply(compiler.ruleset())
    before = _state(nft)
    for resource in docs(MODEL):
        if resource.name == "db":
            feed(compiler, resource, removed=True)
    nft.refuse_next = 1
    with pytest.raises(NftError):
        driver.apply(compiler.ruleset())
    assert _state(nft) == before
    assert driver.apply(compiler.ruleset()).full
    assert _state(nft) == _state(_fresh(compiler.ruleset()))
