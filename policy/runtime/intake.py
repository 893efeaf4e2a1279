"""The daemons' intake: each change from etcd decoded once, into the kinds the daemon takes.

Decoding is total: any bytes under the watched prefix, key or value, give an update or "bad,
skipped, counted", never an exception (a RecursionError from a deeply nested value included).

Both daemons follow one rule for a bad value: the last good version stays until a valid one or
a delete arrives. Dropping a policy would open traffic, dropping an endpoint would cut its
workload off, dropping a peer would end a session; a typo in etcd must do none of these."""

import ipaddress
import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from policy.datastore.ipam import Block
from policy.datastore.keys import ipam_blocks_prefix, parse_key
from policy.datastore.kv import Change, is_utf8
from policy.datastore.store import decode

log = logging.getLogger(__name__)

UNDECODABLE_KEY = "UndecodableKey"  # the bad-data label of a key that is not UTF-8


@dataclass(frozen=True)
class Update:
    """One decoded change: value is the resource (or IPAM Block), None when the key is gone."""

    kind: type
    key: str
    namespace: str | None
    name: str
    value: Any  # an instance of kind (a Resource or an IPAM Block); None when the key is gone
    created: int = 0  # etcd's create revision of the key: who came first


class Intake:
    """Decodes watched changes for `kinds`; `on_bad(kind name)` counts what is skipped.

    IPAM blocks are taken when `kinds` holds `Block`."""

    def __init__(self, prefix: str, kinds: Collection[type], on_bad: Callable[[str], None]):
        self._prefix, self._kinds, self._on_bad = prefix, frozenset(kinds), on_bad
        self._blocks_prefix = ipam_blocks_prefix(prefix) if Block in self._kinds else None

    def updates(self, changes: Iterable[Change]) -> Iterator[Update]:
        for change in changes:
            update = self._update(change)
            if update is not None:
                yield update

    def _update(self, change: Change) -> Update | None:
        if not is_utf8(change.key):
            log.warning("skipping a key that is not UTF-8: %r", change.key.encode("utf-8", "surrogateescape")[:200])
            self._on_bad(UNDECODABLE_KEY)
            return None
        kind: type
        if self._blocks_prefix and change.key.startswith(self._blocks_prefix):
            kind, namespace, name = Block, None, change.key[len(self._blocks_prefix) :]
        else:
            try:
                kind, namespace, name = parse_key(self._prefix, change.key)
            except ValueError:
                return None  # IPAM handles and other keys that are not resources
            if kind not in self._kinds:
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
            kind_name = "IPAMBlock" if kind is Block else kind.__name__
            log.warning(
                "skipping bad %s at %s (its last good version stays): %s",
                kind_name,
                change.key,
                str(exc)[:500] or type(exc).__name__,
            )
            self._on_bad(kind_name)
            return None
        return Update(kind, change.key, namespace, name, value, change.create_revision)


def _decode_block(change: Change) -> Block:
    data = json.loads(change.value or b"")
    cidr, pool, affinity = data["cidr"], data["pool"], data.get("affinity")
    if not all(isinstance(v, str) for v in (cidr, pool)) or not isinstance(affinity, str | None):
        raise ValueError("cidr and pool must be strings, affinity a string or null")
    ipaddress.ip_network(cidr)
    return Block(cidr, pool, affinity, {}, change.mod_revision)
