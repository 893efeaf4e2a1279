"""The route driver: keeps the kernel's learned routes and block blackholes equal to the
desired ones, writing only the difference. It reads the kernel back at start and on each
resync, and otherwise trusts what it wrote; failed writes are retried at the next apply."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Write = tuple[str, Callable[[str], None], Callable[[str], None]]  # prefix, kernel write, record it

log = logging.getLogger(__name__)


class BgpKernel(Protocol):
    def read(self) -> tuple[dict[str, frozenset[str]], set[str]]: ...

    def set_learned(self, prefix: str, nexthops: frozenset[str], ours_already: bool) -> None: ...

    def delete_learned(self, prefix: str) -> None: ...

    def add_blackhole(self, prefix: str) -> None: ...

    def delete_blackhole(self, prefix: str) -> None: ...


@dataclass
class LearnedRouteWrites:
    writes: int = 0
    errors: list[Exception] = field(default_factory=list)
    more: bool = False  # the limit stopped it: apply again


class LearnedRouteDriver:
    def __init__(self, kernel: BgpKernel):
        self._kernel = kernel
        self.learned: dict[str, frozenset[str]] = {}  # believed in the kernel
        self.blackholes: set[str] = set()
        self._failed: set[str] = set()

    def resync(self) -> dict[str, frozenset[str]]:
        """Re-read the kernel; returns its learned routes (adopted at start, see LearnedRib)."""
        self.learned, self.blackholes = self._kernel.read()
        return dict(self.learned)

    @property
    def failed(self) -> int:
        return len(self._failed)

    def apply(
        self, learned: dict[str, frozenset[str]], blackholes: frozenset[str], limit: int = 256
    ) -> LearnedRouteWrites:
        """Write at most `limit` routes (result.more: call again), new blackholes last: the main
        loop must keep reading BGP while a node's 10,000 blocks are being blackholed."""
        result = LearnedRouteWrites()
        failed: set[str] = set()
        work: list[Write] = [
            (p, self._kernel.delete_blackhole, self.blackholes.discard) for p in sorted(self.blackholes - blackholes)
        ]
        work += [(p, self._kernel.delete_learned, self._forget) for p in sorted(set(self.learned) - set(learned))]
        for prefix, hops in sorted(learned.items()):
            if self.learned.get(prefix) != hops:
                ours = prefix in self.learned
                work.append((prefix, self._setter(hops, ours), self._recorder(hops)))
        work += [(p, self._kernel.add_blackhole, self.blackholes.add) for p in sorted(blackholes - self.blackholes)]
        for prefix, write, record in work[:limit]:
            self._write(result, failed, prefix, write, record)
        result.more = len(work) > limit
        self._failed = failed
        return result

    def _forget(self, prefix: str) -> None:
        self.learned.pop(prefix, None)

    def _setter(self, hops: frozenset[str], ours: bool) -> Callable[[str], None]:
        return lambda prefix: self._kernel.set_learned(prefix, hops, ours)

    def _recorder(self, hops: frozenset[str]) -> Callable[[str], None]:
        return lambda prefix: self.learned.__setitem__(prefix, hops)

    def _write(
        self,
        result: LearnedRouteWrites,
        failed: set[str],
        prefix: str,
        write: Callable[[str], None],
        record: Callable[[str], None],
    ) -> None:
        try:
            write(prefix)
        except Exception as exc:
            failed.add(prefix)
            result.errors.append(exc)
            # said once per failure, not at every retry (a fabric's default route collides forever)
            log.log(logging.DEBUG if prefix in self._failed else logging.WARNING, "%s", exc)
            return
        record(prefix)
        result.writes += 1
