"""IP address management: blocks with node affinity, allocated by etcd compare-and-swap.

    <prefix>/v1/ipam/blocks/<cidr, '/' as '-'>   {"cidr", "pool", "affinity", "allocations": {offset: handle}}
    <prefix>/v1/ipam/handles/<handle>            {"handle", "addresses": [...]}

Every change is one transaction that checks the revision of each key it read, so concurrent
allocators on many nodes can never hand out one address twice; the loser of a race re-reads
and tries again.  A node takes from its own blocks, then claims a free block of a pool whose
nodeSelector picks it, then (unless the pool is strictAffinity) borrows from another node's."""

import ipaddress
import json
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

MAX_ATTEMPTS = 50


def _order(network) -> tuple:
    """IPv4 before IPv6: networks of different versions do not compare."""
    return network.version, network


class IPAMError(KVError):
    """An allocation or release that cannot be done (not a race: retrying will not help)."""


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
    def blocks(self) -> list[Block]:
        blocks = []
        for page, _ in self.kv.pages(ipam_blocks_prefix(self.prefix)):
            for item in page:
                data = json.loads(item.value)
                blocks.append(
                    Block(
                        data["cidr"],
                        data["pool"],
                        data["affinity"],
                        {int(k): v for k, v in data["allocations"].items()},
                        item.mod_revision,
                    )
                )
        return blocks

    def handle(self, handle: str) -> Handle | None:
        item = self.kv.get(self._handle_key(handle))
        if item is None:
            return None
        return Handle(handle, json.loads(item.value)["addresses"], item.mod_revision)

    def handles(self) -> dict[str, Handle]:
        found = {}
        for page, _ in self.kv.pages(ipam_handles_prefix(self.prefix)):
            for item in page:
                data = json.loads(item.value)
                found[data["handle"]] = Handle(data["handle"], data["addresses"], item.mod_revision)
        return found

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
        blocks = self.blocks()
        record = self.handle(handle) or Handle(handle, [])
        if address is not None:
            return self._take_specific(node, pools, blocks, record, address)
        in_pools = [b for b in blocks if b.pool in {p.spec.cidr for p in pools}]
        for block in sorted((b for b in in_pools if b.affinity == node), key=lambda b: _order(b.network)):
            offset = block.free_offset()
            if offset is not None:
                return self._commit(block, offset, record)
        taken = {b.cidr for b in blocks}
        for pool in pools:
            network = ipaddress.ip_network(pool.spec.cidr)
            for candidate in network.subnets(new_prefix=pool.spec.blockSize):
                if str(candidate) not in taken:
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

    def _take_specific(self, node: str, pools, blocks, record: Handle, address: str) -> str:
        ip = ipaddress.ip_address(address)
        block = next((b for b in blocks if ip in b.network), None)
        if block is None:
            pool = pools[0]
            network = ipaddress.ip_network(f"{address}/{pool.spec.blockSize}", strict=False)
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
        allocated = {b.address(o): h for b in self.blocks() for o, h in b.allocations.items()}
        pools = [ipaddress.ip_network(p.spec.cidr) for p in self.pools()]
        handles = self.handles()
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
