"""The only module that talks to nftables: libnftables' JSON API, one transaction per call."""

import json
from dataclasses import dataclass
from typing import Protocol

import nftables

from policy.compiler.ruleset import FAMILY, TABLE


class NftError(RuntimeError):
    """The kernel (or libnftables) refused a transaction; nothing of it was applied."""


@dataclass(frozen=True)
class TableListing:
    """What our table holds now, names and definitions only (no rules, no elements)."""

    chains: frozenset[str]
    sets: dict[str, tuple]  # name -> (type, flags)
    maps: frozenset[str]


class Nft(Protocol):
    def run(self, commands: list[dict]) -> None: ...

    def listing(self) -> TableListing | None: ...


class LibNftables:
    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_terse_output(True)  # listings without set elements: names are all we need

    def run(self, commands: list[dict]) -> None:
        """Apply commands as one transaction: all or nothing."""
        if not commands:
            return
        rc, _, error = self._nft.json_cmd({"nftables": commands})
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
        sets = {o["set"]["name"]: (_hashable(o["set"]["type"]), tuple(o["set"].get("flags", ()))) for o in objects if "set" in o}
        maps = frozenset(o["map"]["name"] for o in objects if "map" in o)
        return TableListing(chains, sets, maps)


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
