"""The shared intake: any bytes under the watched prefix give an update or a counted skip that
keeps the last good version, never an exception."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.datastore.ipam import Block
from policy.datastore.kv import Change
from policy.model.policies import NetworkPolicy
from policy.model.resources import WorkloadEndpoint
from policy.runtime.intake import UNDECODABLE_KEY, Intake

P = "/t"
WEP_KEY = f"{P}/v1/workloadendpoints/default/a"
POLICY_KEY = f"{P}/v1/networkpolicies/default/p"
KINDS = (WorkloadEndpoint, NetworkPolicy, Block)

HOSTILE = [
    b"[" * 100_000,
    b'{"kind": ["WorkloadEndpoint"], "metadata": {"name": "a"}}',
    b"\xff\xfe",
    b"null",
    b"7",
    b'{"kind": "WorkloadEndpoint", "spec": 7}',
    json.dumps({"a": {"b": [{}] * 10}}).encode(),
    b"",
]


@pytest.fixture
def intake():
    bad: list[str] = []
    return Intake(P, KINDS, bad.append), bad


def wep(name="a"):
    return json.dumps(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": "n1", "interfaceName": "cxa", "ipNetworks": ["10.0.0.1/32"]},
        }
    ).encode()


@pytest.mark.parametrize("value", HOSTILE)
def test_a_bad_value_of_any_kind_changes_nothing_and_is_counted(intake, value):
    intake, bad = intake
    assert list(intake.updates([Change(WEP_KEY, value, 5)])) == []  # the last good endpoint stays
    assert list(intake.updates([Change(POLICY_KEY, value, 6)])) == []
    assert list(intake.updates([Change(f"{P}/v1/ipam/blocks/10.0.0.0-26", value, 7)])) == []
    assert bad == ["WorkloadEndpoint", "NetworkPolicy", "IPAMBlock"]


def test_good_values_deletes_and_other_kinds(intake):
    intake, bad = intake
    block = json.dumps({"cidr": "10.0.0.0/26", "pool": "10.0.0.0/16", "affinity": "n1", "allocations": {}}).encode()
    updates = list(
        intake.updates(
            [
                Change(WEP_KEY, wep(), 3),
                Change(POLICY_KEY, None, 4),
                Change(f"{P}/v1/ipam/blocks/10.0.0.0-26", block, 5),
                Change(f"{P}/v1/ipam/handles/h", b"{}", 6),  # not a kind this daemon takes
                Change(f"{P}/v1/nodes/n1", b"{}", 7),
            ]
        )
    )
    assert [(u.kind, u.name) for u in updates] == [
        (WorkloadEndpoint, "a"),
        (NetworkPolicy, "p"),
        (Block, "10.0.0.0-26"),
    ]
    assert updates[0].value.spec.interfaceName == "cxa" and updates[0].value.metadata.resourceVersion == "3"
    assert updates[1].value is None and updates[2].value.affinity == "n1" and bad == []


def test_a_value_whose_name_disagrees_with_its_key_is_bad(intake):
    intake, bad = intake
    assert list(intake.updates([Change(WEP_KEY, wep("b"), 3)])) == []
    assert bad == ["WorkloadEndpoint"]


def test_a_key_that_is_not_utf8_is_skipped_and_counted_and_the_rest_goes_on(intake):
    intake, bad = intake
    raw = f"{P}/v1/workloadendpoints/default/".encode() + b"\xff\xfe"
    key = raw.decode("utf-8", "surrogateescape")  # as the etcd driver hands it over
    updates = list(intake.updates([Change(key, wep(), 3), Change(WEP_KEY, wep(), 4)]))
    assert [u.key for u in updates] == [WEP_KEY] and bad == [UNDECODABLE_KEY]


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_arbitrary_keys_and_values_never_raise(raw, value):
    intake = Intake(P, KINDS, lambda kind: None)
    key = raw.decode("utf-8", "surrogateescape")
    for suffix in (key, f"workloadendpoints/default/{key}", f"networkpolicies/{key}", f"ipam/blocks/{key}"):
        for update in intake.updates([Change(f"{P}/v1/{suffix}", value, 1)]):
            assert update.value is None or isinstance(update.value, (WorkloadEndpoint, NetworkPolicy, Block))
