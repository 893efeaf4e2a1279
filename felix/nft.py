"""The only module that talks to nftables: libnftables, one transaction per call.

Transactions (policy/compiler/transaction.py) are sent in nft's text syntax, which libnftables
parses about 2.5 times faster than JSON; listings are read back as JSON."""

import ctypes
import ctypes.util
import json
import threading
from dataclasses import dataclass
from typing import Protocol

import nftables

from policy.compiler.transaction import FAMILY, TABLE, Transaction


class NftError(RuntimeError):
    """The kernel (or libnftables) refused a transaction; nothing of it was applied."""


@dataclass(frozen=True)
class TableListing:
    """What our table holds now, names and definitions only (no rules, no elements)."""

    chains: frozenset[str]
    sets: dict[str, tuple]  # name -> (type, flags)
    maps: frozenset[str]


class Nft(Protocol):
    def run(self, transaction: Transaction) -> None: ...

    def listing(self) -> TableListing | None: ...


BIG_TRANSACTION = 1 << 20  # bytes of nft text: a rebuild of the table, not one change


class LibNftables:
    """One libnftables context, kept: its cache of the table makes each change's transaction
    about 10 ms faster (measured: p50 24 ms against 35 ms with a fresh context per change).
    After a big transaction (a rebuild) the context is replaced and the C heap trimmed: its
    cache then holds every element it parsed (~80 MiB at 100,000 endpoints), and glibc keeps
    what the rebuild freed (~40 MiB more) until told to give it back (docs/scaling.md)."""

    def __init__(self) -> None:
        self._nft = _context()

    def run(self, transaction: Transaction) -> None:
        """Apply the transaction: all or nothing."""
        if not transaction:
            return
        text = transaction.text()
        rc, _, error = self._nft.cmd(text)
        if len(text) > BIG_TRANSACTION:
            del text
            self._nft = _context()
            _trim_heap()
        if rc != 0:
            raise NftError(error.strip() or f"libnftables returned {rc}")

    def listing(self) -> TableListing | None:
        rc, output, error = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        if rc != 0:
            if "No such file or directory" in error:
                return None
            raise NftError(error.strip())
        objects = json.loads(output)["nftables"]
        chains = frozenset(o["chain"]["name"] for o in objects if "chain" in o)
        sets = {
            o["set"]["name"]: (type_key(o["set"]["type"]), tuple(o["set"].get("flags", ())))
            for o in objects
            if "set" in o
        }
        maps = frozenset(o["map"]["name"] for o in objects if "map" in o)
        return TableListing(chains, sets, maps)


def _context() -> nftables.Nftables:
    nft = nftables.Nftables()
    nft.set_json_output(True)
    nft.set_terse_output(True)  # listings without set elements: names are all we need
    return nft


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _trim_heap() -> None:
    """Give the C heap's free memory back to the kernel (glibc's malloc_trim; elsewhere a no-op)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def type_key(value):
    """A set's type as listings and definitions can both be compared by (lists become tuples)."""
    return tuple(value) if isinstance(value, list) else value


class CounterReader:
    """Reads the rule counters of our table (felix --policy-counters), from the HTTP thread that
    serves /metrics: a libnftables context of its own, one scrape at a time."""

    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_terse_output(True)
        self._lock = threading.Lock()

    def read(self) -> list[tuple[str, int, int]]:
        """(comment, packets, bytes) of every rule with a counter and a comment."""
        with self._lock:
            rc, output, error = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        if rc != 0:
            raise NftError(error.strip())
        found = []
        for obj in json.loads(output)["nftables"]:
            rule = obj.get("rule")
            if not rule or "comment" not in rule:
                continue
            for expr in rule.get("expr", ()):
                counter = expr.get("counter") if isinstance(expr, dict) else None
                if isinstance(counter, dict):
                    found.append((rule["comment"], counter.get("packets", 0), counter.get("bytes", 0)))
        return found
