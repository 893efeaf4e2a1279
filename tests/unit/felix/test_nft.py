"""LibNftables keeps its context for small changes and replaces it after a rebuild, whose
parsed copy of the table it would otherwise hold (issue 15: felix's RSS at 100,000 endpoints)."""

import pytest

import felix.nft
from felix.nft import BIG_TRANSACTION, LibNftables, NftError
from policy.compiler.transaction import Set, Table, Transaction


class FakeContext:
    made: list["FakeContext"] = []

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.rc = 0
        FakeContext.made.append(self)

    def set_json_output(self, on: bool) -> None: ...

    def set_terse_output(self, on: bool) -> None: ...

    def cmd(self, text: str):
        self.commands.append(text)
        return self.rc, "", "refused" if self.rc else ""


@pytest.fixture
def contexts(monkeypatch):
    FakeContext.made = []
    trims = []
    monkeypatch.setattr(felix.nft.nftables, "Nftables", FakeContext)
    monkeypatch.setattr(felix.nft, "_trim_heap", lambda: trims.append(1))
    return FakeContext.made, trims


def _big() -> Transaction:
    count = BIG_TRANSACTION // 10 + 1  # each element is more than 10 bytes of text
    elements = tuple(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count))
    return Transaction().add(Table()).add(Set("sel4-big", "ipv4_addr", False, elements))


def test_small_transactions_keep_the_context(contexts):
    made, trims = contexts
    nft = LibNftables()
    for name in ("a", "b", "c"):
        nft.run(Transaction().add(Set(f"sel4-{name}", "ipv4_addr")))
    assert len(made) == 1 and len(made[0].commands) == 3 and not trims


def test_a_rebuild_replaces_the_context_and_trims_the_heap_also_when_refused(contexts):
    made, trims = contexts
    nft = LibNftables()
    nft.run(_big())
    assert len(made) == 2 and len(made[0].commands[0]) > BIG_TRANSACTION and trims == [1]
    nft.run(Transaction().add(Set("sel4-small", "ipv4_addr")))
    assert len(made) == 2 and len(made[1].commands) == 1
    made[1].rc = 1
    with pytest.raises(NftError, match="refused"):
        nft.run(_big())
    assert len(made) == 3 and trims == [1, 1]
