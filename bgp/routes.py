"""The route driver: keeps the kernel's learned routes and block blackholes equal to the
desired ones, writing only the difference. It reads the kernel back at start and on each
resync, and otherwise trusts what it wrote; failed writes are retried at the next apply."""

import logging
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class BgpKernel(Protocol):
    def read(self) -> tuple[dict[str, frozenset[str]], set[str]]: ...

    def set_learned(self, prefix: str, nexthops: frozenset[str], ours_already: bool) -> None: ...

    def delete_learned(self, prefix: str) -> None: ...

    def add_blackhole(self, prefix: str) -> None: ...

    def delete_blackhole(self, prefix: str) -> None: ...


@dataclass
class ApplyResult:
    writes: int = 0
    errors: list[Exception] = field(default_factory=list)


class RouteDriver:
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

    def apply(self, learned: dict[str, frozenset[str]], blackholes: frozenset[str]) -> ApplyResult:
        result = ApplyResult()
        failed: set[str] = set()
        for prefix in sorted(self.blackholes - blackholes):
            self._write(result, failed, prefix, self._kernel.delete_blackhole, lambda p: self.blackholes.discard(p))
        for prefix in sorted(set(self.learned) - set(learned)):
            self._write(result, failed, prefix, self._kernel.delete_learned, lambda p: self.learned.pop(p, None))
        for prefix in sorted(blackholes - self.blackholes):
            self._write(result, failed, prefix, self._kernel.add_blackhole, lambda p: self.blackholes.add(p))
        for prefix, hops in sorted(learned.items()):
            if self.learned.get(prefix) != hops:
                ours = prefix in self.learned
                self._write(result, failed, prefix, lambda p, h=hops, o=ours: self._kernel.set_learned(p, h, o),
                            lambda p, h=hops: self.learned.__setitem__(p, h))
        self._failed = failed
        return result

    def _write(self, result: ApplyResult, failed: set[str], prefix: str, write, record) -> None:
        try:
            write(prefix)
        except Exception as exc:  # noqa: BLE001 - KernelError, or OSError from the netlink socket
            failed.add(prefix)
            result.errors.append(exc)
            # said once per failure, not at every retry (a fabric's default route collides forever)
            log.log(logging.DEBUG if prefix in self._failed else logging.WARNING, "%s", exc)
            return
        record(prefix)
        result.writes += 1
