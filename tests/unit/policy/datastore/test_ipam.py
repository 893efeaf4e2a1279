import ipaddress
import threading

import pytest
from click.testing import CliRunner

import policy.ctl.main
from policy.datastore.ipam import IPAM, IPAMError
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.documents import parse_resource
from tests.fakes import FakeKV


def pool(cidr: str, **spec) -> object:
    return parse_resource(
        {
            "apiVersion": "calyx.io/v1",
            "kind": "IPPool",
            "metadata": {"name": cidr.replace("/", "-").replace(":", "-")},
            "spec": {"cidr": cidr, **spec},
        }
    )


@pytest.fixture
def kv():
    return FakeKV()


def ipam_with(kv, *pools) -> IPAM:
    ResourceStore(kv, "/calyx").write(list(pools), WriteMode.CREATE)
    return IPAM(kv, "/calyx", sleep=lambda s: None)


def test_a_node_fills_its_own_block_then_claims_the_next(kv):
    manager = ipam_with(kv, pool("10.10.0.0/24", blockSize=30))
    addresses = [manager.allocate("n1", f"h{i}") for i in range(5)]
    assert addresses == ["10.10.0.0", "10.10.0.1", "10.10.0.2", "10.10.0.3", "10.10.0.4"]
    assert {(b.cidr, b.affinity) for b in manager.blocks()} == {("10.10.0.0/30", "n1"), ("10.10.0.4/30", "n1")}
    assert manager.allocate("n2", "other") == "10.10.0.8"  # n2 gets a block of its own


def test_dual_stack_pools_allocate_and_show_side_by_side(kv, monkeypatch):
    manager = ipam_with(kv, pool("fd00:10::/120"), pool("10.10.0.0/24"))
    assert manager.allocate("n1", "a") == "10.10.0.0"  # IPv4 first when no pool is named
    assert manager.allocate("n1", "a", pool="fd00:10::/120") == "fd00:10::"
    assert manager.allocate("n1", "b") == "10.10.0.1"
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: kv)
    out = CliRunner().invoke(policy.ctl.main.cli, ["ipam", "show"], catch_exceptions=False).output
    assert out.index("10.10.0.0/26") < out.index("fd00:10::/122")


def test_borrowing_when_the_pool_is_full_unless_strict(kv):
    manager = ipam_with(kv, pool("10.10.0.0/29", blockSize=30))
    manager.allocate("n1", "a")
    manager.allocate("n2", "b")
    assert manager.allocate("n3", "c") == "10.10.0.1"  # both blocks claimed: borrowed from n1's
    strict = ipam_with(FakeKV(), pool("10.20.0.0/30", blockSize=30, strictAffinity=True))
    strict.allocate("n1", "a")
    with pytest.raises(IPAMError, match="no free address for node n2"):
        strict.allocate("n2", "b")


def test_node_selector_disabled_pools_and_a_specific_address(kv):
    manager = ipam_with(
        kv, pool("10.30.0.0/24", nodeSelector="rack == 'a'"), pool("10.40.0.0/24", disabled=True), pool("fd00:30::/120")
    )
    assert ipaddress.ip_address(manager.allocate("n1", "v6")).version == 6  # rack a pool does not select n1
    assert manager.allocate("n1", "fixed", address="10.30.0.77") == "10.30.0.77"
    with pytest.raises(IPAMError, match="already allocated to handle fixed"):
        manager.allocate("n2", "again", address="10.30.0.77")
    with pytest.raises(IPAMError, match="in no enabled IPPool"):
        manager.allocate("n1", "x", address="10.40.0.1")


def test_release_by_handle_and_by_address(kv):
    manager = ipam_with(kv, pool("10.10.0.0/24"), pool("fd00:10::/120"))
    v4 = manager.allocate("n1", "pod", pool="10.10.0.0/24")
    v6 = manager.allocate("n1", "pod", pool="fd00:10::/120")
    assert manager.handle("pod").addresses == sorted([v4, v6])
    assert manager.release_address(v6) == "pod"
    assert manager.handle("pod").addresses == [v4]
    assert manager.release_handle("pod") == [v4]
    assert manager.handle("pod") is None and all(not b.allocations for b in manager.blocks())


def test_concurrent_allocations_never_hand_out_one_address_twice(kv):
    manager = ipam_with(kv, pool("10.50.0.0/26", blockSize=29))
    results, errors = [], []

    def allocate(i: int) -> None:
        try:
            results.append(IPAM(kv, "/calyx").allocate(f"n{i % 3}", f"h{i}"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(results) == 50 and len(set(results)) == 50
    handles = manager.handles()
    assert sorted(a for h in handles.values() for a in h.addresses) == sorted(results)
    report = manager.check()
    assert (
        report["dangling"] == [] and report["duplicates"] == [] and len(report["leaked"]) == 50
    )  # no endpoints use them


def test_policyctl_ipam_commands(kv, monkeypatch):
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: kv)
    ipam_with(kv, pool("10.60.0.0/24"))
    run = lambda *args: CliRunner().invoke(policy.ctl.main.cli, ["ipam", *args], catch_exceptions=False)  # noqa: E731
    result = run("allocate", "--node", "n1", "--handle", "script-1")
    assert result.exit_code == 0 and result.output.strip() == "10.60.0.0"
    assert "10.60.0.0/26         n1             1/64" in run("show").output
    result = run("check")
    assert result.exit_code == 1 and "leaked: 1" in result.output and "10.60.0.0 (handle script-1)" in result.output
    assert run("release", "--handle", "script-1").output.strip() == "10.60.0.0 released"
    assert run("check").exit_code == 0
    assert run("release", "--ip", "10.60.0.9").exit_code == 1
    bad = CliRunner().invoke(
        policy.ctl.main.cli,
        ["apply", "-f", "-"],
        input="apiVersion: calyx.io/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/24, blockSize: 20}\n",
    )
    assert bad.exit_code == 1 and "spec: blockSize 20 must be between the pool's prefix length 24 and 32" in bad.output
