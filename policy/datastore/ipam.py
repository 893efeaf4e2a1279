"""IP address management: blocks with node affinity, allocated by etcd compare-and-swap.

    <prefix>/v1/ipam/blocks/<cidr, '/' as '-'>   {"cidr", "pool", "affinity", "allocations": {offset: handle}}
    <prefix>/v1/ipam/handles/<handle>            {"handle", "addresses": [...]}

Every change is one transaction that checks the revision of each key it read, so concurrent
allocators on many nodes can never hand out one address twice; the loser of a race re-reads
and tries again.  A node takes from its own blocks, then claims a free block of a pool whose
nodeSelector picks it, then (unless the pool is strictAffinity) borrows from another node's.

Reading is total: a block or handle whose value is not what Calyx writes (not JSON, missing
fields, an allocation outside the block) is reported by key and skipped, never an exception.
An allocation never claims a CIDR whose block key holds such a value."""

import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from policy.datastore.keys import ipam_block_key, ipam_blocks_prefix, ipam_handle_key, ipam_handles_prefix, kind_prefix
from policy.datastore.kv import ABSENT, KV, Conflict, KVError, Write
from policy.datastore.store import ResourceStore, decode
from policy.model.pools import IPPool
from policy.model.resources import Node, WorkloadEndpoint
from policy.model.selector import parse_selector

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 50


def _order(network) -> tuple:
    """IPv4 before IPv6: networks of different versions do not compare."""
    return network.version, network


class IPAMError(KVError):
    """An allocation or release that cannot be done (not a race: retrying will not help)."""


class CorruptEntry(ValueError):
    """A stored block or handle that is not what Calyx writes."""


def _json_object(value: bytes | None) -> dict:
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CorruptEntry(f"not JSON ({str(exc)[:200] or type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CorruptEntry(f"a JSON {type(data).__name__}, not an object")
    return data


@dataclass
class Block:
    cidr: str
    pool: str
    affinity: str | None
    allocations: dict[int, str] = field(default_factory=dict)
    revision: int = ABSENT  # the mod revision read, ABSENT for a block not yet stored

    @property
    def network(self):
        return ipaddress.ip_network(self.cidr)

    def free_offset(self) -> int | None:
        return next((i for i in range(self.network.num_addresses) if i not in self.allocations), None)

    def address(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    def offset(self, address: str) -> int:
        return int(ipaddress.ip_address(address)) - int(self.network.network_address)

    @classmethod
    def decode(cls, value: bytes | None, revision: int) -> "Block":
        """The block a stored value holds; CorruptEntry for anything else."""
        data = _json_object(value)
        cidr, pool, affinity, allocations = (data.get(k) for k in ("cidr", "pool", "affinity", "allocations"))
        if not isinstance(cidr, str) or not isinstance(pool, str):
            raise CorruptEntry("cidr and pool must be strings")
        if not isinstance(affinity, str | None):
            raise CorruptEntry("affinity must be a string or null")
        if not isinstance(allocations, dict):
            raise CorruptEntry("allocations must be an object")
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise CorruptEntry(f"cidr: {exc}") from None
        offsets: dict[int, str] = {}
        for offset, handle in allocations.items():
            if (
                not (offset.isascii() and offset.isdigit())
                or not 0 <= int(offset) < network.num_addresses
                or not isinstance(handle, str)
            ):
                raise CorruptEntry(f"allocation {offset!r}: must be an offset inside {cidr} held by a handle (string)")
            offsets[int(offset)] = handle
        return cls(cidr, pool, affinity, offsets, revision)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "cidr": self.cidr,
                "pool": self.pool,
                "affinity": self.affinity,
                "allocations": {str(k): v for k, v in sorted(self.allocations.items())},
            },
            sort_keys=True,
        ).encode()


@dataclass
class Handle:
    handle: str
    addresses: list[str]
    revision: int = ABSENT

    @classmethod
    def decode(cls, value: bytes | None, revision: int) -> "Handle":
        data = _json_object(value)
        handle, addresses = data.get("handle"), data.get("addresses")
        if not isinstance(handle, str):
            raise CorruptEntry("handle must be a string")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise CorruptEntry("addresses must be a list of strings")
        return cls(handle, addresses, revision)

    def encode(self) -> bytes:
        return json.dumps({"handle": self.handle, "addresses": sorted(self.addresses)}).encode()


class IPAM:
    def __init__(self, kv: KV, prefix: str, sleep: Callable[[float], None] = time.sleep):
        self.kv, self.prefix, self._sleep = kv, prefix.rstrip("/"), sleep
        self.store = ResourceStore(kv, prefix)

    # -- keys -----------------------------------------------------------------------------
    def _block_key(self, cidr: str) -> str:
        return ipam_block_key(self.prefix, cidr)

    def _handle_key(self, handle: str) -> str:
        return ipam_handle_key(self.prefix, handle)

    # -- reading --------------------------------------------------------------------------
    def read_blocks(self) -> tuple[list[Block], dict[str, str]]:
        """Every readable block, and key -> what is wrong for each one that is not."""
        blocks, corrupt = [], {}
        for page, _ in self.kv.pages(ipam_blocks_prefix(self.prefix)):
            for item in page:
                try:
                    block = Block.decode(item.value, item.mod_revision)
                    if self._block_key(block.cidr) != item.key:
                        raise CorruptEntry(f"holds block {block.cidr}, whose key is another")
                except CorruptEntry as exc:
                    corrupt[item.key] = str(exc)
                    continue
                blocks.append(block)
        return blocks, corrupt

    def blocks(self) -> list[Block]:
        """The readable blocks; each unreadable one is logged and skipped."""
        blocks, corrupt = self.read_blocks()
        self._warn(corrupt)
        return blocks

    def handle(self, handle: str) -> Handle | None:
        key = self._handle_key(handle)
        item = self.kv.get(key)
        if item is None:
            return None
        try:
            record = Handle.decode(item.value, item.mod_revision)
        except CorruptEntry as exc:
            raise IPAMError(f"IPAM handle {key} is corrupt ({exc}): fix or delete that key") from None
        return Handle(handle, record.addresses, item.mod_revision)

    def read_handles(self) -> tuple[dict[str, Handle], dict[str, str]]:
        """Every readable handle by name, and key -> what is wrong for each one that is not."""
        found, corrupt = {}, {}
        for page, _ in self.kv.pages(ipam_handles_prefix(self.prefix)):
            for item in page:
                try:
                    record = Handle.decode(item.value, item.mod_revision)
                except CorruptEntry as exc:
                    corrupt[item.key] = str(exc)
                    continue
                found[record.handle] = record
        return found, corrupt

    def handles(self) -> dict[str, Handle]:
        found, corrupt = self.read_handles()
        self._warn(corrupt)
        return found

    @staticmethod
    def _warn(corrupt: dict[str, str]) -> None:
        for key, problem in corrupt.items():
            log.warning("skipping corrupt IPAM entry %s: %s", key, problem)

    def pools(self) -> list[IPPool]:
        return self.store.list_kind(IPPool)[0]

    # -- allocation -----------------------------------------------------------------------
    def allocate(self, node: str, handle: str, pool: str | None = None, address: str | None = None) -> str:
        """One address for `handle` on `node` (a given one with `address`); retried on races."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._try_allocate(node, handle, pool, address)
            except Conflict:
                self._sleep(random.uniform(0, 0.01 * (attempt + 1)))  # someone else won this round
        raise IPAMError(f"gave up after {MAX_ATTEMPTS} conflicting attempts")

    def _try_allocate(self, node: str, handle: str, pool_cidr: str | None, address: str | None) -> str:
        pools = self._usable_pools(node, pool_cidr, address)
        blocks, corrupt = self.read_blocks()
        self._warn(corrupt)
        record = self.handle(handle) or Handle(handle, [])
        if address is not None:
            return self._take_specific(node, pools, blocks, record, address, corrupt)
        in_pools = [b for b in blocks if b.pool in {p.spec.cidr for p in pools}]
        for block in sorted((b for b in in_pools if b.affinity == node), key=lambda b: _order(b.network)):
            offset = block.free_offset()
            if offset is not None:
                return self._commit(block, offset, record)
        taken = {self._block_key(b.cidr) for b in blocks} | set(corrupt)  # a corrupt block's CIDR stays taken
        for pool in pools:
            network = ipaddress.ip_network(pool.spec.cidr)
            for candidate in network.subnets(new_prefix=pool.spec.blockSize):
                if self._block_key(str(candidate)) not in taken:
                    return self._commit(Block(str(candidate), pool.spec.cidr, node), 0, record)
        borrowable = {p.spec.cidr for p in pools if not p.spec.strictAffinity}
        for block in sorted((b for b in in_pools if b.pool in borrowable), key=lambda b: _order(b.network)):
            offset = block.free_offset()
            if offset is not None:
                return self._commit(block, offset, record)
        raise IPAMError(f"no free address for node {node} in pools {', '.join(p.spec.cidr for p in pools)}")

    def _usable_pools(self, node: str, pool_cidr: str | None, address: str | None) -> list[IPPool]:
        node_labels = self._node_labels(node)
        pools = [p for p in self.pools() if not p.spec.disabled]
        if pool_cidr is not None:
            pools = [p for p in pools if p.spec.cidr == str(ipaddress.ip_network(pool_cidr))]
            if not pools:
                raise IPAMError(f"no enabled IPPool with cidr {pool_cidr}")
        if address is not None:
            ip = ipaddress.ip_address(address)
            pools = [p for p in pools if ip in ipaddress.ip_network(p.spec.cidr)]
            if not pools:
                raise IPAMError(f"{address} is in no enabled IPPool")
            return pools
        pools = [p for p in pools if parse_selector(p.spec.nodeSelector).matches(node_labels)]
        if not pools:
            raise IPAMError(f"no enabled IPPool selects node {node}")
        return sorted(pools, key=lambda p: _order(ipaddress.ip_network(p.spec.cidr)))

    def _node_labels(self, node: str) -> dict[str, str]:
        item = self.kv.get(f"{kind_prefix(self.prefix, Node)}{node}")
        return dict(decode(self.prefix, item.key, item.value, item.mod_revision).metadata.labels) if item else {}

    def _take_specific(
        self, node: str, pools, blocks, record: Handle, address: str, corrupt: dict[str, str] | None = None
    ) -> str:
        ip = ipaddress.ip_address(address)
        block = next((b for b in blocks if ip in b.network), None)
        if block is None:
            pool = pools[0]
            network = ipaddress.ip_network(f"{address}/{pool.spec.blockSize}", strict=False)
            key = self._block_key(str(network))
            if corrupt and key in corrupt:
                raise IPAMError(
                    f"{address} is in IPAM block {key}, which is corrupt ({corrupt[key]}): fix or delete it"
                )
            block = Block(str(network), pool.spec.cidr, node)
        offset = block.offset(address)
        if offset in block.allocations:
            raise IPAMError(f"{address} is already allocated to handle {block.allocations[offset]}")
        return self._commit(block, offset, record)

    def _commit(self, block: Block, offset: int, record: Handle) -> str:
        address = block.address(offset)
        block.allocations[offset] = record.handle
        record.addresses = sorted(set(record.addresses) | {address})
        self.kv.commit(
            [
                Write(self._block_key(block.cidr), block.encode(), block.revision),
                Write(self._handle_key(record.handle), record.encode(), record.revision),
            ]
        )
        return address

    # -- release --------------------------------------------------------------------------
    def release_handle(self, handle: str) -> list[str]:
        """Free every address of a handle and forget the handle; returns what was freed."""
        for attempt in range(MAX_ATTEMPTS):
            record = self.handle(handle)
            if record is None:
                raise IPAMError(f"no handle {handle!r}")
            try:
                return self._release(record, set(record.addresses))
            except Conflict:
                self._sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise IPAMError(f"gave up after {MAX_ATTEMPTS} conflicting attempts")

    def release_address(self, address: str) -> str:
        """Free one address; returns the handle it belonged to."""
        address = str(ipaddress.ip_address(address))
        for attempt in range(MAX_ATTEMPTS):
            block = next((b for b in self.blocks() if ipaddress.ip_address(address) in b.network), None)
            owner = block.allocations.get(block.offset(address)) if block else None
            if block is None or owner is None:
                raise IPAMError(f"{address} is not allocated")
            record = self.handle(owner) or Handle(owner, [address], revision=ABSENT)
            try:
                self._release(record, {address}, blocks=[block])
                return owner
            except Conflict:
                self._sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise IPAMError(f"gave up after {MAX_ATTEMPTS} conflicting attempts")

    def _release(self, record: Handle, addresses: set[str], blocks: list[Block] | None = None) -> list[str]:
        writes, freed = [], []
        for block in blocks or self.blocks():
            mine = [o for o, h in block.allocations.items() if h == record.handle and block.address(o) in addresses]
            if mine:
                for offset in mine:
                    del block.allocations[offset]
                    freed.append(block.address(offset))
                writes.append(Write(self._block_key(block.cidr), block.encode(), block.revision))
        remaining = [a for a in record.addresses if a not in addresses]
        if record.revision != ABSENT:
            value = Handle(record.handle, remaining).encode() if remaining else None
            writes.append(Write(self._handle_key(record.handle), value, record.revision))
        if writes:
            self.kv.commit(writes)
        return sorted(freed)

    # -- reports --------------------------------------------------------------------------
    def check(self) -> dict[str, list[str]]:
        """Leaks (allocated, used by no endpoint), strays (used, in a pool, not allocated),
        duplicates (used by two endpoints) and dangling handle entries."""
        used: dict[str, list[str]] = {}
        for endpoint in self.store.list_kind(WorkloadEndpoint)[0]:
            for network in endpoint.spec.ipNetworks:
                net = ipaddress.ip_network(network)
                if net.num_addresses == 1:
                    used.setdefault(str(net.network_address), []).append(f"{endpoint.namespace}/{endpoint.name}")
        allocated = {b.address(o): h for b in self.read_blocks()[0] for o, h in b.allocations.items()}
        pools = [ipaddress.ip_network(p.spec.cidr) for p in self.pools()]
        handles = self.read_handles()[0]  # corrupt entries: see read_blocks and read_handles
        return {
            "leaked": sorted(f"{a} (handle {h})" for a, h in allocated.items() if a not in used),
            "unallocated": sorted(
                f"{a} ({', '.join(e)})"
                for a, e in used.items()
                if a not in allocated and any(ipaddress.ip_address(a) in p for p in pools)
            ),
            "duplicates": sorted(f"{a} ({', '.join(e)})" for a, e in used.items() if len(e) > 1),
            "dangling": sorted(
                f"{a} (handle {h.handle})"
                for h in handles.values()
                for a in h.addresses
                if allocated.get(a) != h.handle
            ),
        }
