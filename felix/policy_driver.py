"""Programs the compiled ruleset: one transaction each time, holding only what changed.

The first apply (and the first after any failure) rebuilds the table in one transaction
without ever deleting it, so traffic keeps flowing across an agent restart; after that, a
changed chain is flushed and refilled, set and map elements are added and deleted one by one,
and nothing unchanged is written."""

import logging
from dataclasses import dataclass

from felix.nft import Nft, NftError, type_key
from policy.compiler.ruleset import FROM_WORKLOAD_MAP, TO_WORKLOAD_MAP, Ruleset, base_chains, build
from policy.compiler.transaction import Chain, Map, MapElements, Rule, Set, SetElements, Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    chains: dict
    sets: dict
    from_workload: dict
    to_workload: dict

    @classmethod
    def of(cls, ruleset: Ruleset) -> "Snapshot":
        return cls(dict(ruleset.chains), dict(ruleset.sets), dict(ruleset.from_workload), dict(ruleset.to_workload))


@dataclass(frozen=True)
class PolicyApplyResult:
    commands: int
    full: bool


class PolicyDriver:
    def __init__(self, nft: Nft):
        self._nft = nft
        self._programmed: Snapshot | None = None

    def forget(self) -> None:
        """Next apply rebuilds from what the kernel holds (after a failure, or to repair drift)."""
        self._programmed = None

    def apply(self, desired: Ruleset) -> PolicyApplyResult:
        full = self._programmed is None
        tx = self._rebuild(desired) if self._programmed is None else self._changes(self._programmed, desired)
        try:
            self._nft.run(tx)
        except NftError:
            self._programmed = None
            raise
        self._programmed = Snapshot.of(desired)
        return PolicyApplyResult(len(tx), full)

    def _rebuild(self, desired: Ruleset) -> Transaction:
        """Empty what exists and fill in what is desired, in one transaction (never a flushed table)."""
        existing = self._nft.listing()
        tx = Transaction()
        if existing is not None:
            base = base_chains()
            for name in sorted(existing.chains):
                tx.flush(Chain(name))
            for name in sorted(existing.maps):
                tx.flush(Map(name))
            for name, (type_, flags) in sorted(existing.sets.items()):
                wanted = desired.sets.get(name)
                same = (
                    wanted is not None
                    and type_key(wanted.type) == type_
                    and flags == (("interval",) if wanted.interval else ())
                )
                if same and wanted is not None:
                    tx.flush(Set(name, wanted.type))
                else:
                    tx.delete(Set(name, type_))
            for name in sorted(existing.chains - set(desired.chains) - set(base)):
                tx.delete(Chain(name))
            for name in sorted(set(base) & existing.chains):
                tx.delete(Chain(name))
        return tx.extend(build(desired))

    def _changes(self, old: Snapshot, new: Ruleset) -> Transaction:
        adds, removes, late = Transaction(), Transaction(), Transaction()
        for name, definition in new.sets.items():
            before = old.sets.get(name)
            if before is None:
                adds.add(definition.as_set(name))
            elif before is not definition and before.elements != definition.elements:
                gone, came = before.elements - definition.elements, definition.elements - before.elements
                if gone:
                    removes.delete(SetElements(name, definition.type, tuple(sorted(gone))))
                if came:
                    adds.add(SetElements(name, definition.type, tuple(sorted(came))))
        tx = removes.extend(adds)
        for name in sorted(name for name in new.chains if name not in old.chains):
            tx.add(Chain(name))
        for name, rules in new.chains.items():
            before = old.chains.get(name)
            if before is rules or before == rules:
                continue
            if before is not None:
                tx.flush(Chain(name))
            for expr in rules:
                tx.add(Rule(name, tuple(expr)))
        for map_name, was, now in (
            (FROM_WORKLOAD_MAP, old.from_workload, new.from_workload),
            (TO_WORKLOAD_MAP, old.to_workload, new.to_workload),
        ):
            if was == now:
                continue
            gone = tuple(sorted((k, v) for k, v in was.items() if now.get(k) != v))
            came = tuple(sorted((k, v) for k, v in now.items() if was.get(k) != v))
            if gone:
                tx.delete(MapElements(map_name, gone))
            if came:
                tx.add(MapElements(map_name, came))
        for name in sorted(set(old.chains) - set(new.chains)):
            late.flush(Chain(name)).delete(Chain(name))
        for name in sorted(set(old.sets) - set(new.sets)):
            late.delete(Set(name, old.sets[name].type))
        return tx.extend(late)
