"""The daemons' intake: each change from etcd decoded once, into the kinds the daemon takes.

Decoding is total: any bytes under the watched prefix give an update, or "bad, skipped,
counted", never an exception (a RecursionError from a deeply nested value included). What
happens to a key whose new value is bad is an explicit rule of the kind, declared by the
daemon that takes it:

- KEEP_LAST: the last good version stays until a valid one or a delete arrives (dropping a
  policy would open traffic, dropping a peer would end a session);
- ABSENT: the key is treated as deleted."""

import enum
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from policy.datastore.ipam import Block
from policy.datastore.keys import ipam_blocks_prefix, parse_key
from policy.datastore.kv import Change
from policy.datastore.store import decode

log = logging.getLogger(__name__)


class BadData(enum.Enum):
    KEEP_LAST = "keep the last good version"
    ABSENT = "treat as deleted"


@dataclass(frozen=True)
class Update:
    """One decoded change: value is the resource (or IPAM Block), None when the key is gone."""

    kind: type
    key: str
    namespace: str | None
    name: str
    value: Any  # an instance of kind (a Resource or an IPAM Block); None when the key is gone


class Intake:
    """Decodes watched changes for the kinds in `rules`; `on_bad(kind name)` counts what is skipped.

    IPAM blocks are taken when `rules` names `Block`."""

    def __init__(self, prefix: str, rules: dict[type, BadData], on_bad: Callable[[str], None]):
        self._prefix, self._rules, self._on_bad = prefix, rules, on_bad
        self._blocks_prefix = ipam_blocks_prefix(prefix) if Block in rules else None

    def updates(self, changes: Iterable[Change]) -> Iterator[Update]:
        for change in changes:
            update = self._update(change)
            if update is not None:
                yield update

    def _update(self, change: Change) -> Update | None:
        kind: type
        if self._blocks_prefix and change.key.startswith(self._blocks_prefix):
            kind, namespace, name = Block, None, change.key[len(self._blocks_prefix) :]
        else:
            try:
                kind, namespace, name = parse_key(self._prefix, change.key)
            except ValueError:
                return None  # IPAM handles and other keys that are not resources
            if kind not in self._rules:
                return None
        if change.value is None:
            return Update(kind, change.key, namespace, name, None)
        try:
            value = (
                _decode_block(change)
                if kind is Block
                else decode(self._prefix, change.key, change.value, change.mod_revision)
            )
        except Exception as exc:  # any bytes at all may be stored: nothing raised here may stop a daemon
            rule = self._rules[kind]
            kind_name = "IPAMBlock" if kind is Block else kind.__name__
            log.warning(
                "skipping bad %s at %s (%s): %s",
                kind_name,
                change.key,
                rule.value,
                str(exc)[:500] or type(exc).__name__,
            )
            self._on_bad(kind_name)
            return Update(kind, change.key, namespace, name, None) if rule is BadData.ABSENT else None
        return Update(kind, change.key, namespace, name, value)


def _decode_block(change: Change) -> Block:
    data = json.loads(change.value or b"")
    cidr, pool, affinity = data["cidr"], data["pool"], data.get("affinity")
    if not all(isinstance(v, str) for v in (cidr, pool)) or not isinstance(affinity, str | None):
        raise ValueError("cidr and pool must be strings, affinity a string or null")
    ipaddress.ip_network(cidr)
    return Block(cidr, pool, affinity, {}, change.mod_revision)
