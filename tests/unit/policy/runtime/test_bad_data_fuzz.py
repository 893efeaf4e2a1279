"""Arbitrary bytes written under the watched prefix, as keys and as values over live resources,
reach both daemons' decode paths: no exception escapes and nothing is opened or withdrawn (the
last good version of everything stays)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.agent import Agent
from felix.config import AgentConfig
from policy.compiler.ruleset import build
from policy.datastore.etcd import EtcdSettings
from policy.datastore.kv import Change
from policy.datastore.store import decode
from policy.datastore.watch import SyncBatch
from tests.fakes import FakeKernel, FakeKV, FakeNft
from tests.unit.bgp.test_daemon import BASE, Rig, peer_json

P = "/t/v1"
ENDPOINT = f"{P}/workloadendpoints/default/a"
POLICY = f"{P}/networkpolicies/default/deny-all"
LIVE_KEYS = [ENDPOINT, POLICY, f"{P}/namespaces/default", f"{P}/globalnetworksets/s", f"{P}/tiers/default"]
GOOD = [
    (
        ENDPOINT,
        {
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "a", "namespace": "default", "labels": {"app": "a"}},
            "spec": {"node": "n1", "interfaceName": "cxa", "ipNetworks": ["198.19.1.1/32"]},
        },
    ),
    (
        POLICY,
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all", "namespace": "default"},
            "spec": {"selector": "all()", "types": ["Ingress", "Egress"]},
        },
    ),
]

keys = st.one_of(
    st.sampled_from(LIVE_KEYS),
    st.binary(max_size=30).map(lambda raw: P + "/" + raw.decode("utf-8", "surrogateescape")),
    st.binary(max_size=30).map(lambda raw: f"{P}/workloadendpoints/" + raw.decode("utf-8", "surrogateescape")),
)
values = st.one_of(
    st.binary(max_size=120),
    st.just(b"[" * 50_000),
    st.dictionaries(
        st.sampled_from(["kind", "metadata", "spec", "apiVersion"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
            max_leaves=8,
        ),
    ).map(lambda d: json.dumps(d).encode()),
)
writes = st.lists(st.tuples(keys, values), min_size=1, max_size=8)


def _decodes(key: str, value: bytes) -> bool:
    try:
        decode("/t", key, value, 1)
    except Exception:
        return False
    return True


def _agent() -> tuple[Agent, FakeKernel, FakeNft]:
    kernel, nft = FakeKernel({"cxa": 5}), FakeNft()
    config = AgentConfig(node_name="n1", etcd=EtcdSettings(), etcd_prefix="/t")
    agent = Agent(config, FakeKV(), kernel, nft)
    changes = [
        Change(k, json.dumps({"apiVersion": "calyx.io/v1", **v}).encode(), i + 1, i + 1)
        for i, (k, v) in enumerate(GOOD)
    ]
    agent.handle(SyncBatch(changes, 2, True))
    agent.reconcile()
    return agent, kernel, nft


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes)
def test_arbitrary_writes_reach_felix_without_an_exception_or_an_opening(batch):
    agent, kernel, nft = _agent()
    routes, ruleset = set(kernel.route_table), build(agent._compiler.ruleset()).text()
    changes = [Change(k, v, 10 + i, 10 + i) for i, (k, v) in enumerate(batch) if not _decodes(k, v)]
    agent.handle(SyncBatch(changes, 30, True))
    agent.reconcile()
    assert kernel.route_table == routes
    assert build(agent._compiler.ruleset()).text() == ruleset


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes)
def test_arbitrary_writes_reach_calyx_bgp_without_an_exception_or_a_withdrawal(batch):
    rig = Rig()
    rig.etcd(*BASE, ("/calyx/v1/bgppeers/tor", peer_json("tor", {"peerIP": "10.0.0.254", "asNumber": 65001})))
    announced, sessions, blackholes = (
        dict(rig.speaker.announced),
        list(rig.speaker.sessions),
        set(rig.kernel.blackholes),
    )
    live = [k for k, _ in BASE] + ["/calyx/v1/bgppeers/tor"]
    bad = [
        (k.replace(P, "/calyx/v1") if k not in LIVE_KEYS else live[LIVE_KEYS.index(k) % len(live)], v) for k, v in batch
    ]
    rig.etcd(*[(k, v) for k, v in bad if not _decodes_bgp(k, v)])
    assert rig.speaker.announced == announced and list(rig.speaker.sessions) == sessions
    assert rig.kernel.blackholes == blackholes and rig.process.alive


def _decodes_bgp(key: str, value: bytes) -> bool:
    if "/ipam/blocks/" in key:
        return False  # fuzzed values never hold a block's cidr and pool: all of them are bad
    try:
        decode("/calyx", key, value, 1)
    except Exception:
        return False
    return True
