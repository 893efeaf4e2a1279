"""Outgoing NAT from IPPools (issue 9, item 10): a natOutgoing pool's workloads are masqueraded
towards destinations outside every pool, nothing else is; felix feeds pools to the compiler."""

import threading
import time

import pytest

from policy.compiler.nat import NAT_CHAIN
from policy.compiler.ruleset import base_chains
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.documents import DocumentError
from tests.policy_model import compile_all, docs, feed

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: nat}
spec: {cidr: 10.244.0.0/16, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: routed}
spec: {cidr: 10.99.0.0/16, natOutgoing: false}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: nat6}
spec: {cidr: "fd00:244::/64", natOutgoing: true, disabled: true}
"""


def _elements(ruleset) -> dict:
    return {name: ruleset.sets[name].elements for name in ("pools4", "nat-pools4", "pools6", "nat-pools6")}


def test_a_nat_outgoing_pool_is_masqueraded_towards_destinations_outside_every_pool():
    ruleset = compile_all(docs(POOLS)).ruleset()
    assert _elements(ruleset) == {
        "pools4": {"10.244.0.0/16", "10.99.0.0/16"},  # never masqueraded to
        "nat-pools4": {"10.244.0.0/16"},  # masqueraded from (natOutgoing: false is not)
        "pools6": {"fd00:244::/64"},
        "nat-pools6": {"fd00:244::/64"},  # a disabled pool's workloads still run
    }
    assert [rule[-1] for rule in ruleset.chains[NAT_CHAIN]] == [{"masquerade": None}] * 2
    hook, rules = base_chains()["postrouting"]
    assert (hook.type, hook.hook, hook.priority, rules) == (
        "nat",
        "postrouting",
        100,
        ([{"jump": {"target": NAT_CHAIN}}],),
    )


def test_turning_nat_outgoing_off_or_removing_the_pool_stops_masquerading_it():
    pools = docs(POOLS)
    compiler = compile_all(pools)
    compiler.ruleset()
    feed(compiler, docs(POOLS.replace("10.244.0.0/16, natOutgoing: true", "10.244.0.0/16, natOutgoing: false"))[0])
    assert _elements(compiler.ruleset())["nat-pools4"] == frozenset()
    for pool in pools:
        feed(compiler, pool, removed=True)
    assert set().union(*_elements(compiler.ruleset()).values()) == set()


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("ipipMode: Always", "'Always' is not supported by Calyx: Calyx routes without encapsulation"),
        ("vxlanMode: CrossSubnet", "'CrossSubnet' is not supported by Calyx"),
        ("assignmentMode: Manual", "'Manual' is not supported by Calyx"),
        ("allowedUses: [Tunnel]", "not supported by Calyx without Workload"),
    ],
)
def test_pool_fields_calyx_cannot_honour_are_refused_as_not_supported(field, message):
    with pytest.raises(DocumentError, match=message):
        docs(
            f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.0.0.0/16, {field}}}\n"
        )


def test_pool_fields_calyx_honours_are_accepted():
    (pool,) = docs(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
        "spec: {cidr: 10.0.0.0/16, ipipMode: Never, vxlanMode: Never, allowedUses: [Workload], assignmentMode: Automatic}\n"
    )
    assert pool.spec.allowedUses == ["Workload"] and not pool.spec.natOutgoing


def test_felix_feeds_ip_pools_to_the_compiler():
    from felix.agent import Agent
    from felix.config import AgentConfig
    from policy.datastore.etcd import EtcdSettings
    from tests.fakes import FakeKernel, FakeKV, FakeNft

    kv, nft = FakeKV(), FakeNft()
    config = AgentConfig(node_name="n1", etcd=EtcdSettings(), etcd_prefix="/t", etcd_backoff_max=0.05)
    agent = Agent(config, kv, FakeKernel({}), nft)
    thread = threading.Thread(target=agent.run, daemon=True)
    with kv.admin():
        revision = ResourceStore(kv, "/t").write(docs(POOLS), WriteMode.CREATE)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while agent.status.programmed_revision < revision and time.monotonic() < deadline:
            time.sleep(0.01)
        assert nft.sets["nat-pools4"] == {'{"prefix": {"addr": "10.244.0.0", "len": 16}}'}
        assert "postrouting" in nft.chains and NAT_CHAIN in nft.chains
    finally:
        agent.loop.stop()
        thread.join(timeout=5)
