"""A corrupt IPAM block or handle in etcd: `policyctl ipam show` and `check` report it by key,
skip it and exit 1 at the end (no JSONDecodeError); allocation never claims its CIDR."""

import json

import pytest
from click.testing import CliRunner

import policy.ctl.main
from policy.datastore.ipam import IPAM, IPAMError
from policy.datastore.store import ResourceStore, WriteMode
from policy.model.documents import parse_resource
from tests.fakes import FakeKV

BLOCKS = "/calyx/v1/ipam/blocks/"
CORRUPT = [
    b"{not json",
    b"[" * 100_000,
    b"\xff\xfe",
    b'"a string"',
    b'{"cidr": 5, "pool": "10.60.0.0/24", "affinity": null, "allocations": {}}',
    b'{"cidr": "10.60.0.64/26", "pool": "10.60.0.0/24", "affinity": "n1", "allocations": {"999": "h"}}',
    b'{"cidr": "10.60.0.64/26", "pool": "10.60.0.0/24", "affinity": "n1"}',
    b'{"cidr": "10.60.0.128/26", "pool": "10.60.0.0/24", "affinity": "n1", "allocations": {}}',  # not its key
]


@pytest.fixture
def kv(monkeypatch):
    fake = FakeKV()
    monkeypatch.setattr(policy.ctl.main, "EtcdKV", lambda settings: fake)
    pool = parse_resource(
        {"apiVersion": "calyx.io/v1", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.60.0.0/24"}}
    )
    ResourceStore(fake, "/calyx").write([pool], WriteMode.CREATE)
    return fake


def ipam(*args):
    return CliRunner().invoke(policy.ctl.main.cli, ["ipam", *args])


@pytest.mark.parametrize("value", CORRUPT)
def test_ipam_show_reports_a_corrupt_block_by_key_skips_it_and_exits_1(kv, value):
    assert ipam("allocate", "--node", "n1", "--handle", "h1").output.strip() == "10.60.0.0"
    kv.put(f"{BLOCKS}10.60.0.64-26", value)
    result = ipam("show")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "JSONDecodeError" not in result.output
    assert f"warning: skipped corrupt IPAM entry {BLOCKS}10.60.0.64-26:" in result.output
    assert "10.60.0.0/26         n1             1/64" in result.output  # the good block is still shown
    assert "Error: 1 corrupt IPAM block skipped" in result.output


def test_ipam_check_lists_corrupt_entries_and_exits_1(kv):
    ipam("allocate", "--node", "n1", "--handle", "h1")
    kv.put(f"{BLOCKS}10.60.0.64-26", b"{not json")
    kv.put("/calyx/v1/ipam/handles/h9", b'{"handle": 9}')
    result = ipam("check")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "corrupt: 2" in result.output
    assert f"{BLOCKS}10.60.0.64-26 (not JSON" in result.output
    assert "/calyx/v1/ipam/handles/h9 (handle must be a string)" in result.output


def test_allocation_skips_a_corrupt_block_and_never_claims_its_cidr(kv):
    manager = IPAM(kv, "/calyx", sleep=lambda s: None)
    kv.put(f"{BLOCKS}10.60.0.0-26", b"{not json")
    assert manager.allocate("n1", "h1") == "10.60.0.64"  # the next block: the corrupt one stays as it is
    assert kv.get(f"{BLOCKS}10.60.0.0-26").value == b"{not json"
    with pytest.raises(IPAMError, match=r"10.60.0.5 is in IPAM block .*10.60.0.0-26, which is corrupt"):
        manager.allocate("n1", "h2", address="10.60.0.5")
    blocks, corrupt = manager.read_blocks()
    assert [b.cidr for b in blocks] == ["10.60.0.64/26"] and list(corrupt) == [f"{BLOCKS}10.60.0.0-26"]


def test_a_corrupt_handle_is_a_clean_error_for_its_owner(kv):
    kv.put("/calyx/v1/ipam/handles/h1", b"[1, 2")
    result = ipam("release", "--handle", "h1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "IPAM handle /calyx/v1/ipam/handles/h1 is corrupt" in result.output


def test_blocks_written_by_calyx_decode_unchanged(kv):
    manager = IPAM(kv, "/calyx", sleep=lambda s: None)
    addresses = [manager.allocate("n1", f"h{i}") for i in range(3)]
    [block] = manager.blocks()
    assert json.loads(kv.get(f"{BLOCKS}10.60.0.0-26").value)["allocations"] == {"0": "h0", "1": "h1", "2": "h2"}
    assert [block.address(o) for o in sorted(block.allocations)] == addresses
