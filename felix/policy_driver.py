"""Programs the compiled ruleset: one transaction each time, holding only what changed.

The first apply (and the first after any failure) rebuilds the table in one transaction
without ever deleting it, so traffic keeps flowing across an agent restart; after that, a
changed chain is flushed and refilled, set and map elements are added and deleted one by one,
and nothing unchanged is written."""

import logging
from dataclasses import dataclass

from felix.nft import Nft, NftError, type_key
from policy.compiler.ruleset import (
    FAMILY,
    FROM_WORKLOAD_MAP,
    TABLE,
    TO_WORKLOAD_MAP,
    Ruleset,
    base_chains,
    element,
    full_commands,
    rule_object,
    set_object,
    verdict_elements,
)

log = logging.getLogger(__name__)
_T = {"family": FAMILY, "table": TABLE}


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

    @property
    def in_step(self) -> bool:
        return self._programmed is not None

    def forget(self) -> None:
        """Next apply rebuilds from what the kernel holds (after a failure, or to repair drift)."""
        self._programmed = None

    def apply(self, desired: Ruleset) -> PolicyApplyResult:
        full = self._programmed is None
        commands = self._rebuild(desired) if full else self._changes(self._programmed, desired)
        try:
            self._nft.run(commands)
        except NftError:
            self._programmed = None
            raise
        self._programmed = Snapshot.of(desired)
        return PolicyApplyResult(len(commands), full)

    def _rebuild(self, desired: Ruleset) -> list[dict]:
        """Empty what exists and fill in what is desired, in one transaction (never a flushed table)."""
        existing = self._nft.listing()
        commands: list[dict] = []
        if existing is not None:
            wanted = {name: set_object(name, d) for name, d in desired.sets.items()}
            base = base_chains()
            commands += [{"flush": {"chain": {**_T, "name": name}}} for name in sorted(existing.chains)]
            commands += [{"flush": {"map": {**_T, "name": name}}} for name in sorted(existing.maps)]
            for name, (type_, flags) in sorted(existing.sets.items()):
                same = (
                    name in wanted
                    and type_key(wanted[name]["type"]) == type_
                    and tuple(wanted[name].get("flags", ())) == flags
                )
                commands.append({"flush" if same else "delete": {"set": {**_T, "name": name}}})
            stale = existing.chains - set(desired.chains) - set(base)
            commands += [{"delete": {"chain": {**_T, "name": name}}} for name in sorted(stale)]
            commands += [{"delete": {"chain": {**_T, "name": name}}} for name in sorted(set(base) & existing.chains)]
        return commands + full_commands(desired)

    def _changes(self, old: Snapshot, new: Ruleset) -> list[dict]:
        adds, removes, late = [], [], []
        for name, definition in new.sets.items():
            before = old.sets.get(name)
            if before is None:
                adds.append({"add": {"set": set_object(name, definition, definition.elements)}})
            elif before is not definition and before.elements != definition.elements:
                gone, came = before.elements - definition.elements, definition.elements - before.elements
                if gone:
                    removes.append(
                        {"delete": {"element": {**_T, "name": name, "elem": [element(e) for e in sorted(gone)]}}}
                    )
                if came:
                    adds.append({"add": {"element": {**_T, "name": name, "elem": [element(e) for e in sorted(came)]}}})
        new_chains = [name for name in new.chains if name not in old.chains]
        commands = removes + adds + [{"add": {"chain": {**_T, "name": name}}} for name in sorted(new_chains)]
        for name, rules in new.chains.items():
            before = old.chains.get(name)
            if before is rules or before == rules:
                continue
            if before is not None:
                commands.append({"flush": {"chain": {**_T, "name": name}}})
            commands += [{"add": {"rule": rule_object(name, expr)}} for expr in rules]
        for map_name, before, after in (
            (FROM_WORKLOAD_MAP, old.from_workload, new.from_workload),
            (TO_WORKLOAD_MAP, old.to_workload, new.to_workload),
        ):
            if before == after:
                continue
            gone = {k: v for k, v in before.items() if after.get(k) != v}
            came = {k: v for k, v in after.items() if before.get(k) != v}
            if gone:
                commands.append({"delete": {"element": {**_T, "name": map_name, "elem": sorted(gone)}}})
            if came:
                commands.append({"add": {"element": {**_T, "name": map_name, "elem": verdict_elements(came)}}})
        for name in sorted(set(old.chains) - set(new.chains)):
            late += [{"flush": {"chain": {**_T, "name": name}}}, {"delete": {"chain": {**_T, "name": name}}}]
        late += [{"delete": {"set": {**_T, "name": name}}} for name in sorted(set(old.sets) - set(new.sets))]
        return commands + late
