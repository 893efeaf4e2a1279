"""The narrow seam at etcd: the few key-value operations Calyx needs, as plain data."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from threading import Event
from typing import Protocol


def key_text(raw: bytes) -> str:
    """etcd keys are bytes: one that is not UTF-8 keeps its bytes as surrogates (see is_utf8), so
    it can be listed, watched and skipped by name instead of stopping the watch."""
    return raw.decode("utf-8", "surrogateescape")


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def is_utf8(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0  # when the key was created: the first claimant of an address wins


@dataclass(frozen=True, slots=True)
class Change:
    """One watched change; value None means the key was deleted."""

    key: str
    value: bytes | None
    mod_revision: int
    create_revision: int = 0  # 0 for a delete


# Preconditions for a write, checked atomically with it.
ANY = None  # unconditional
ABSENT = 0  # the key must not exist (create)
PRESENT = -1  # the key must exist, at any revision


@dataclass(frozen=True, slots=True)
class Write:
    """Put (value given) or delete (value None); expect is ANY, ABSENT, PRESENT or a mod revision."""

    key: str
    value: bytes | None
    expect: int | None = ANY


class KVError(Exception):
    pass


class Unavailable(KVError):
    """No endpoint answered; the caller backs off and retries."""


class Compacted(KVError):
    """The revision asked for is gone; the caller must re-list."""

    def __init__(self, compact_revision: int):
        self.compact_revision = compact_revision
        super().__init__(f"revision compacted (etcd now starts at {compact_revision})")


class Conflict(KVError):
    """A precondition of a transaction failed; nothing of it was written."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("; ".join(failures))


# etcd counts every key left in the range for each page it serves, so small pages make a list
# quadratic: 102,000 keys took 3.0 s in pages of 1,000, 2.0 s in pages of 2,500 and 1.6 s in
# pages of 5,000. Larger pages cost memory that stays with the process: felix's RSS at 100,000
# endpoints was 246 MiB with pages of 2,500 and 260 MiB with 5,000 (docs/benchmarks.md).
LIST_PAGE_SIZE = 2500


class KV(Protocol):
    def get(self, key: str) -> KeyValue | None: ...

    def pages(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[tuple[list[KeyValue], int]]:
        """All keys under prefix as one consistent snapshot, in pages, each with the snapshot revision."""
        ...

    def prefix_state(self, prefix: str) -> tuple[int, int]:
        """(number of keys, newest mod revision) under prefix: a cheap check that a watch keeps up."""
        ...

    def commit(self, writes: Sequence[Write]) -> int:
        """Apply all writes in one transaction or none (Conflict); return the new revision."""
        ...

    def watch(self, prefix: str, start_revision: int, stop: Event) -> Iterator[tuple[list[Change], int]]:
        """Changes from start_revision on, each batch with the revision it brings the reader to.

        Raises Compacted or Unavailable; returns when stop is set."""
        ...

    def close(self) -> None: ...
