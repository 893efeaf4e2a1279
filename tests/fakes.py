"""Small in-memory stand-ins for the seams (etcd, netlink, nftables), for tests without root."""

import contextlib
import copy
import json
import re
import threading
import time
from collections.abc import Iterable

from felix.attach import IPV4_GATEWAY, IPV6_GATEWAY, Attachment, InterfaceExists, NamespaceGone, WorkloadState
from felix.kernel import KernelRoute, RouteError
from felix.nft import NftError, TableListing
from policy.compiler.transaction import Transaction
from policy.datastore.kv import (
    ABSENT,
    ANY,
    LIST_PAGE_SIZE,
    PRESENT,
    Change,
    Compacted,
    Conflict,
    KeyValue,
    Unavailable,
    Write,
)


class FakeKV:
    """etcd's semantics that matter to Calyx: global revisions, CAS, watch history, compaction."""

    def __init__(self) -> None:
        self.data: dict[str, KeyValue] = {}
        self.revision = 1
        self.history: list[Change] = []
        self.compacted = 0
        self.down = False
        self.watch_calls = 0
        self.list_calls = 0
        self._cond = threading.Condition()
        self._generation = 0  # bumped to break every open watch, as a lost connection does
        self.writes_before_next_watch: list[tuple[str, bytes | None]] = []
        self.compacted_watches = 0
        self.deaf = False  # a watch that stays open but delivers nothing (seen after etcd restarts)
        self.slow = 0.0  # seconds a watch takes per change it delivers (a busy machine)

    @contextlib.contextmanager
    def admin(self):
        """Hold the store (as another etcd client would), writing even while 'down' for the agent."""
        with self._cond:
            was_down, self.down = self.down, False
            try:
                yield
            finally:
                self.down = was_down

    def _check_up(self) -> None:
        if self.down:
            raise Unavailable("fake etcd is down")

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._check_up()
            return self.data.get(key)

    def pages(self, prefix: str, page_size: int = LIST_PAGE_SIZE):
        with self._cond:
            self._check_up()
            self.list_calls += 1
            items = sorted((kv for k, kv in self.data.items() if k.startswith(prefix)), key=lambda kv: kv.key)
            revision = self.revision
        for start in range(0, max(len(items), 1), page_size):
            yield items[start : start + page_size], revision

    def prefix_state(self, prefix: str) -> tuple[int, int]:
        with self._cond:
            self._check_up()
            items = [kv for k, kv in self.data.items() if k.startswith(prefix)]
            return len(items), max((kv.mod_revision for kv in items), default=0)

    def commit(self, writes: list[Write]) -> int:
        with self._cond:
            self._check_up()
            failures = []
            for w in writes:
                current = self.data.get(w.key)
                if w.expect == ABSENT and current is not None:
                    failures.append(f"{w.key} already exists")
                elif w.expect == PRESENT and current is None:
                    failures.append(f"{w.key} does not exist")
                elif w.expect not in (ANY, ABSENT, PRESENT) and (current is None or current.mod_revision != w.expect):
                    failures.append(f"{w.key} was modified")
            if failures:
                raise Conflict(failures)
            self.revision += 1
            for w in writes:
                if w.value is None:
                    if self.data.pop(w.key, None) is not None:
                        self.history.append(Change(w.key, None, self.revision))
                else:
                    old = self.data.get(w.key)
                    created = old.create_revision if old else self.revision
                    self.data[w.key] = KeyValue(w.key, w.value, self.revision, created)
                    self.history.append(Change(w.key, w.value, self.revision, created))
            self._cond.notify_all()
            return self.revision

    def put(self, key: str, value: bytes) -> int:
        return self.commit([Write(key, value)])

    def delete(self, key: str) -> int:
        return self.commit([Write(key, None)])

    def compact(self, revision: int) -> None:
        with self._cond:
            self.compacted = revision
            self.history = [c for c in self.history if c.mod_revision > revision]
            self._cond.notify_all()

    def break_watches(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def set_down(self, down: bool) -> None:
        with self._cond:
            self.down = down
            self._generation += 1
            self._cond.notify_all()

    def watch(self, prefix: str, start_revision: int, stop: threading.Event):
        with self._cond:
            self._check_up()
            self.watch_calls += 1
            generation = self._generation
            if self.writes_before_next_watch:
                self.commit([Write(key, value) for key, value in self.writes_before_next_watch])
                self.writes_before_next_watch = []
                self.compact(self.revision)
            if start_revision <= self.compacted:
                self.compacted_watches += 1
        position = start_revision
        while not stop.is_set():
            with self._cond:
                if self._generation != generation:
                    raise Unavailable("fake watch broken")
                if position <= self.compacted:
                    raise Compacted(self.compacted)
                changes = [c for c in self.history if c.mod_revision >= position and c.key.startswith(prefix)]
                if not changes or self.deaf:
                    self._cond.wait(0.05)
                    continue
                if self.slow:  # a watch that delivers, one change at a time, always behind
                    changes = changes[:1]
                position = changes[-1].mod_revision + 1 if self.slow else self.revision + 1
                revision = changes[-1].mod_revision if self.slow else self.revision
            if self.slow:
                time.sleep(self.slow)
            yield changes, revision

    def close(self) -> None:
        pass


class FakeKernel:
    """Links and our routes, with a log of every write so tests can count them."""

    def __init__(self, links: dict[str, int] | None = None) -> None:
        self.link_table: dict[str, int] = dict(links or {})
        self.route_table: set[KernelRoute] = set()
        self.writes: list[tuple[str, KernelRoute]] = []
        self.configured: list[tuple[str, bool, bool]] = []
        self.forwarding = False
        self.refuse: set[str] = set()  # destinations whose add fails (a foreign route holds them)
        self._lock = threading.Lock()

    def add_link(self, name: str, ifindex: int) -> None:
        with self._lock:
            self.link_table[name] = ifindex

    def remove_link(self, name: str) -> None:
        with self._lock:
            ifindex = self.link_table.pop(name)
            self.route_table = {r for r in self.route_table if r.ifindex != ifindex}

    def links(self, names=None) -> dict[str, int]:
        with self._lock:
            return {n: i for n, i in self.link_table.items() if names is None or n in names}

    def workload_routes(self) -> set[KernelRoute]:
        with self._lock:
            return set(self.route_table)

    def add_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        errors = []
        with self._lock:
            for route in routes:
                self.writes.append(("add", route))
                if route.dst in self.refuse or route.ifindex not in self.link_table.values():
                    errors.append(RouteError(route, "refused"))
                else:
                    self.route_table.add(route)
        return errors

    def delete_routes(self, routes: Iterable[KernelRoute]) -> list[RouteError]:
        with self._lock:
            for route in routes:
                self.writes.append(("del", route))
                self.route_table.discard(route)
        return []

    def configure_interface(self, name: str, ifindex: int, ipv4: bool, ipv6: bool) -> None:
        self.configured.append((name, ipv4, ipv6))

    def enable_forwarding(self) -> None:
        self.forwarding = True

    def watch_links(self, emit, stop: threading.Event, subscribed: threading.Event) -> None:
        subscribed.set()
        stop.wait()

    def routes_by_name(self) -> set[tuple[str, str]]:
        names = {index: name for name, index in self.links().items()}
        return {(r.dst, names.get(r.ifindex, "?")) for r in self.workload_routes()}


class FakeNft:
    """The `inet calyx` table as names and contents, checking what the kernel would check:
    rules only in existing chains, jumps and set references to things that exist, chains
    deleted only when empty and unreferenced.  A refused transaction changes nothing."""

    def __init__(self) -> None:
        self.chains: dict[str, list] = {}
        self.sets: dict[str, set] = {}
        self.set_types: dict[str, tuple] = {}
        self.maps: dict[str, dict] = {}
        self.transactions: list[list[dict]] = []
        self.refuse_next = 0

    def listing(self):
        if not (self.chains or self.sets or self.maps):
            return None
        return TableListing(frozenset(self.chains), dict(self.set_types), frozenset(self.maps))

    def run(self, transaction: Transaction) -> None:
        commands = transaction.commands()
        if self.refuse_next:
            self.refuse_next -= 1
            raise NftError("refused by test")
        saved = copy.deepcopy((self.chains, self.sets, self.set_types, self.maps))
        try:
            for command in commands:
                self._one(command)
            self._check_references()
        except NftError:
            self.chains, self.sets, self.set_types, self.maps = saved
            raise
        self.transactions.append(commands)

    def _one(self, command: dict) -> None:
        ((verb, body),) = command.items()
        ((what, obj),) = body.items()
        name = obj.get("name") or obj.get("chain")
        if what == "table":
            return
        if what == "chain":
            if verb == "add":
                self.chains.setdefault(name, [])
            elif verb == "flush":
                self.chains[name] = []
            elif verb == "delete":
                if self.chains.get(name):
                    raise NftError(f"chain {name} is not empty")
                del self.chains[name]
        elif what == "rule":
            if name not in self.chains:
                raise NftError(f"no chain {name}")
            self.chains[name].append(obj["expr"])
        elif what == "set":
            if verb == "add":
                self.sets.setdefault(name, set())
                self.set_types[name] = (
                    tuple(obj["type"]) if isinstance(obj["type"], list) else obj["type"],
                    tuple(obj.get("flags", ())),
                )
                self.sets[name] |= {json.dumps(e, sort_keys=True) for e in obj.get("elem", ())}
            elif verb == "flush":
                self.sets[name] = set()
            elif verb == "delete":
                del self.sets[name], self.set_types[name]
        elif what == "map":
            if verb == "add":
                self.maps.setdefault(name, {}).update({k: v["jump"]["target"] for k, v in obj.get("elem", ())})
            elif verb == "flush":
                self.maps[name] = {}
        elif what == "element":
            if name in self.maps:
                if verb == "add":
                    self.maps[name].update({k: v["jump"]["target"] for k, v in obj["elem"]})
                else:
                    for key in obj["elem"]:
                        del self.maps[name][key]
            else:
                elements = {json.dumps(e, sort_keys=True) for e in obj["elem"]}
                if verb == "add":
                    self.sets[name] |= elements
                elif not elements <= self.sets[name]:
                    raise NftError(f"deleting elements {elements - self.sets[name]} absent from {name}")
                else:
                    self.sets[name] -= elements

    def _check_references(self) -> None:
        text = json.dumps(self.chains)
        for target in re.findall(r'"target": "([^"]+)"', text + json.dumps(self.maps)):
            if target not in self.chains:
                raise NftError(f"jump to missing chain {target}")
        for target in set(re.findall(r'"@([^"]+)"', text)):
            if target not in self.sets and target not in self.maps:
                raise NftError(f"reference to missing set {target}")
        for name in self.maps.get("from-wl", {}).values():
            if name not in self.chains:
                raise NftError(f"map points at missing chain {name}")

    def elements(self, name: str) -> list:
        return sorted((json.loads(e) for e in self.sets[name]), key=json.dumps)


class FakeSpeakerProcess:
    """ExaBGP as SpeakerControl sees it: records configurations and commands; `refuse` makes it
    answer "error" to commands containing that text. A reload is taken at the next command
    unless `drop_reloads` (as ExaBGP 4.2 drops one before its first announcements drained)."""

    def __init__(self) -> None:
        self.alive = False
        self.configs: list[str] = []
        self.commands: list[str] = []
        self.env: dict[str, str] = {}
        self.refuse: str | None = None
        self.fail_start = False
        self.drop_reloads = False
        self.reloads: list[str] = []
        self.peers: set[str] = set()  # the neighbors it has, as `show neighbor` tells
        self._reload_pending: str | None = None

    def bridge_command(self) -> str:
        return "/usr/bin/python3 -m bgp.bridge /run/test.sock"

    def running(self) -> bool:
        return self.alive

    def start(self, config: str, env: dict[str, str]) -> None:
        from bgp.exabgp import ExaBGPError

        if self.fail_start:
            raise ExaBGPError("could not start")
        self.alive, self.env = True, env
        self.configs.append(config)
        self.peers = self._neighbors(config)

    @staticmethod
    def _neighbors(config: str) -> set[str]:
        return {line.split()[1] for line in config.splitlines() if line.startswith("neighbor ")}

    def send(self, command: str) -> None:
        from bgp.exabgp import CommandRefused

        self._take_reload()
        if self.refuse and self.refuse in command:
            raise CommandRefused(command, "error")
        self.commands.append(command)

    def query(self, command: str) -> list[str]:
        self._take_reload()
        wanted = command.split()[2]
        return [f"Neighbor {peer}" for peer in sorted(self.peers) if wanted in peer]

    def reload(self, config: str) -> None:
        self.reloads.append(config)
        self._reload_pending = None if self.drop_reloads else config

    def _take_reload(self) -> None:
        if self._reload_pending is not None:
            self.peers, self._reload_pending = self._neighbors(self._reload_pending), None

    def stop(self) -> None:
        self.alive = False


class FakeBgpKernel:
    """Learned routes and blackholes of one main table; `foreign` prefixes hold someone else's route."""

    def __init__(self) -> None:
        self.learned: dict[str, frozenset[str]] = {}
        self.blackholes: set[str] = set()
        self.foreign: set[str] = set()
        self.writes = 0

    def read(self):
        return dict(self.learned), set(self.blackholes)

    def set_learned(self, prefix, nexthops, ours_already):
        from bgp.netlink import KernelError

        if prefix in self.foreign or (prefix in self.blackholes):
            raise KernelError(prefix, 17, "install")
        self.writes += 1
        self.learned[prefix] = frozenset(nexthops)

    def delete_learned(self, prefix):
        self.writes += 1
        self.learned.pop(prefix, None)

    def add_blackhole(self, prefix):
        self.writes += 1
        self.blackholes.add(prefix)

    def delete_blackhole(self, prefix):
        self.writes += 1
        self.blackholes.discard(prefix)


class FakeDataplane:
    """The CNI plugin's kernel seam (felix/cni/dataplane.py): namespaces, veths, addresses, routes."""

    def __init__(self, namespaces: Iterable[str] = ()) -> None:
        self._gateways = (IPV4_GATEWAY, IPV6_GATEWAY)
        self.namespaces: set[str] = set(namespaces)
        self.host: dict[str, str] = {}  # host interface -> the namespace of its peer
        self.workloads: dict[tuple[str, str], dict] = {}  # (netns, ifname) -> {"host", "addresses", "gateways"}
        self.fail_attach: Exception | None = None
        self.attached = 0

    def attach(self, netns: str, host_interface: str, addresses: list[str], mtu: int, ifname: str):
        if netns not in self.namespaces:
            raise NamespaceGone(2, f"network namespace {netns} does not exist")
        if (netns, ifname) in self.workloads:
            raise InterfaceExists(17, f"the workload already has an interface {ifname}")
        if host_interface in self.host:
            raise OSError(17, f"{host_interface} exists")
        if self.fail_attach:
            raise self.fail_attach
        gateways = {self._gateways[0] if ":" not in a else self._gateways[1] for a in addresses}
        self.host[host_interface] = netns
        self.workloads[(netns, ifname)] = {"host": host_interface, "addresses": set(addresses), "gateways": gateways}
        self.attached += 1
        return Attachment(host_interface, "02:00:00:00:00:01", tuple(addresses))

    def remove_host_interface(self, host_interface: str) -> bool:
        netns = self.host.pop(host_interface, None)
        self.workloads = {k: v for k, v in self.workloads.items() if v["host"] != host_interface}
        return netns is not None

    def remove_workload_interface(self, netns: str, ifname: str) -> bool:
        workload = self.workloads.pop((netns, ifname), None)
        if workload:
            self.host.pop(workload["host"], None)
        return workload is not None

    def host_interface_exists(self, host_interface: str) -> bool:
        return host_interface in self.host

    def workload_state(self, netns: str, ifname: str):
        if netns not in self.namespaces:
            raise NamespaceGone(2, f"network namespace {netns} does not exist")
        workload = self.workloads.get((netns, ifname))
        if workload is None:
            return None
        return WorkloadState(frozenset(workload["addresses"]), frozenset(workload["gateways"]))
