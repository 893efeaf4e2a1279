"""policyctl against an in-memory etcd: every test module here gets `kv` (the fake behind the CLI)."""

import pytest

import policy.ctl.main
from tests.fakes import FakeKV


@pytest.fixture
def kv(monkeypatch):
    fake = FakeKV()
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: fake)
    return fake
