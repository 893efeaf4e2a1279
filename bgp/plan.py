"""The pure calculation: from the resources held (nodes, BGP settings, pools, blocks, local
endpoints) to what this node's speaker must be: its sessions, the prefixes it announces and
the blackholes it keeps. Depends only on the current state, never on the order of events."""

import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from policy.model.bgp import (
    DEFAULT_AS_NUMBER,
    PERNODE_PREFIX,
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPPassword,
    BGPPeer,
    peer_address,
)
from policy.model.pools import IPPool
from policy.model.resources import Node
from policy.model.selector import parse_selector

DEFAULT_CONFIGURATION = "default"
BGP_PORT = 179
SecretRef = tuple[str, str]  # (secret name, key) of a secretKeyRef


@dataclass(frozen=True, order=True)
class Peer:
    address: str
    as_number: int
    name: str  # "mesh:<node>" or the BGPPeer's name, for status and logs
    passive: bool  # wait for the peer to connect (the mesh's higher address waits)
    local_address: str | None  # None: let the kernel choose (sourceAddress: None)
    password: str | None = field(default=None, repr=False)  # never in a log line
    port: int = BGP_PORT  # where the peer listens
    local_as: int | None = None  # the AS presented to this peer (None: the node's)
    restart_time: int | None = None  # graceful restart time offered (None: calyx-bgp's flag)
    ttl_security: int | None = None  # GTSM: the peer is at most this many hops away


@dataclass(frozen=True)
class Speaker:
    """What ExaBGP's configuration is rendered from: a change here means a reload."""

    router_id: str
    as_number: int
    listen_port: int
    addresses: tuple[str, ...]  # this node's BGP addresses, listened on
    peers: tuple[Peer, ...]
    log_severity: str = "Info"


@dataclass(frozen=True)
class Plan:
    speaker: Speaker
    announcements: dict[str, tuple[str, ...]]  # prefix -> communities (aa:nn or aa:nn:mm)
    blackholes: frozenset[str]  # this node's IPAM blocks
    problems: tuple[str, ...] = ()  # peers left out, and why (a password secret is missing)


@dataclass(frozen=True)
class BlockFacts:
    cidr: str
    pool: str  # the pool's cidr
    affinity: str | None


@dataclass
class BgpState:
    """Everything the plan reads, as the etcd watch last delivered it."""

    nodes: dict[str, Node] = field(default_factory=dict)
    configurations: dict[str, BGPConfiguration] = field(default_factory=dict)
    peers: dict[str, BGPPeer] = field(default_factory=dict)
    pools: dict[str, IPPool] = field(default_factory=dict)
    blocks: dict[str, BlockFacts] = field(default_factory=dict)
    local_addresses: dict[str, frozenset[str]] = field(default_factory=dict)  # endpoint key -> networks


class PlanError(ValueError):
    """This node cannot speak BGP yet (no Node resource or no BGP address recorded)."""


def node_addresses(node: Node) -> tuple[str | None, str | None]:
    """(IPv4, IPv6) BGP address of a node, without prefix lengths."""
    bgp = node.spec.bgp
    if bgp is None:
        return None, None
    v4 = str(ipaddress.ip_interface(bgp.ipv4Address).ip) if bgp.ipv4Address else None
    v6 = str(ipaddress.ip_interface(bgp.ipv6Address).ip) if bgp.ipv6Address else None
    return v4, v6


def router_id(node_name: str, ipv4: str | None) -> str:
    """The IPv4 address, or for an IPv6-only node a stable id derived from its name."""
    if ipv4:
        return ipv4
    digest = int.from_bytes(hashlib.sha256(node_name.encode()).digest()[:4], "big")
    return str(ipaddress.IPv4Address(digest or 1))


def secret_refs(state: BgpState) -> set[SecretRef]:
    """Every (secret, key) the BGPPeers and the mesh password name: what the daemon reads for the plan."""
    default = state.configurations.get(DEFAULT_CONFIGURATION)
    passwords = [p.spec.password for p in state.peers.values()] + [default.spec.nodeMeshPassword if default else None]
    return {(p.secretKeyRef.name, p.secretKeyRef.key) for p in passwords if isinstance(p, BGPPassword)}


@dataclass(frozen=True)
class _Settings:
    """The default BGPConfiguration with this node's `node.<name>` one over it, defaults filled in."""

    spec: BGPConfigurationSpec  # the default's (AS, mesh, mesh password and restart time)
    as_number: int
    mesh: bool
    listen_port: int
    log_severity: str
    advertised: BGPConfigurationSpec  # whose communities and prefixAdvertisements apply


def _settings(state: BgpState, node_name: str) -> _Settings:
    default = state.configurations.get(DEFAULT_CONFIGURATION)
    spec = default.spec if default else BGPConfigurationSpec()
    mine = state.configurations.get(PERNODE_PREFIX + node_name)
    own = mine.spec if mine else BGPConfigurationSpec()
    return _Settings(
        spec,
        spec.asNumber or DEFAULT_AS_NUMBER,
        spec.nodeToNodeMeshEnabled is not False,
        own.listenPort or spec.listenPort or BGP_PORT,
        own.logSeverityScreen or spec.logSeverityScreen or "Info",
        own if own.prefixAdvertisements else spec,
    )


def _listen_port(state: BgpState, node: str) -> int:
    """The port another Calyx node listens on, as its settings say."""
    return _settings(state, node).listen_port


def compute_plan(state: BgpState, node_name: str, secrets: Mapping[SecretRef, str] | None = None) -> Plan:
    """secrets: the value of each secretKeyRef the daemon could read (see secret_refs); a peer
    whose password secret is missing is left out and named in the plan's problems."""
    me = state.nodes.get(node_name)
    if me is None:
        raise PlanError(f"no Node resource named {node_name!r}")
    ipv4, ipv6 = node_addresses(me)
    if not (ipv4 or ipv6):
        raise PlanError(f"Node {node_name!r} has no BGP address")
    settings = _settings(state, node_name)
    local_as = _node_as(me, settings.as_number)
    problems: list[str] = []
    peers = _peers(state, me, ipv4, ipv6, settings, local_as, _Secrets(secrets or {}, problems))
    speaker = Speaker(
        router_id(node_name, ipv4),
        local_as,
        settings.listen_port,
        tuple(a for a in (ipv4, ipv6) if a),
        tuple(sorted(peers.values())),
        settings.log_severity,
    )
    blocks = [b for b in state.blocks.values() if b.affinity == node_name]
    quiet_pools = {p.spec.cidr for p in state.pools.values() if p.spec.disableBGPExport}
    announce = {b.cidr for b in blocks if b.pool not in quiet_pools}
    own_networks = [_network(b.cidr) for b in blocks]
    for networks in state.local_addresses.values():
        for network in networks:
            net = _network(network)
            if not any(net.version == own.version and net.subnet_of(own) for own in own_networks) and _exported(
                state, network
            ):
                announce.add(str(net))
    communities = _communities(settings.advertised)
    return Plan(
        speaker,
        {prefix: communities(prefix) for prefix in sorted(announce)},
        frozenset(b.cidr for b in blocks),
        tuple(sorted(set(problems))),
    )


class _MissingSecret(Exception):
    pass


@dataclass
class _Secrets:
    values: Mapping[SecretRef, str]
    problems: list[str]

    def password(self, password: str | BGPPassword | None, who: str) -> str | None:
        """The password text; raises _MissingSecret (noting why) when its secret cannot be read."""
        if not isinstance(password, BGPPassword):
            return password
        ref = password.secretKeyRef
        value = self.values.get((ref.name, ref.key))
        if value is None and not ref.optional:
            self.problems.append(f"{who}: no session: its password secret {ref.name}/{ref.key} is missing")
            raise _MissingSecret
        return value


@functools.lru_cache(maxsize=65536)
def _network(prefix: str):
    """Parsed once: the plan is recomputed on every change, over every block of the node."""
    return ipaddress.ip_network(prefix)


def _node_as(node: Node, default: int) -> int:
    return (node.spec.bgp.asNumber if node.spec.bgp else None) or default or DEFAULT_AS_NUMBER


def _peers(
    state: BgpState, me: Node, ipv4: str | None, ipv6: str | None, settings: _Settings, local_as: int, secrets: _Secrets
) -> dict[str, Peer]:
    """Peers by address; an explicit BGPPeer replaces the mesh session to the same address."""
    peers: dict[str, Peer] = {}
    mine = {4: ipv4, 6: ipv6}
    if settings.mesh:
        mesh = settings.spec
        try:
            password = secrets.password(mesh.nodeMeshPassword, "the node-to-node mesh")
        except _MissingSecret:
            password = None
        else:
            for other in _other_nodes(state, me):
                for peer in _node_peers(state, other, mine, settings.as_number, f"mesh:{other.name}", None, password):
                    peers[peer.address] = replace(peer, restart_time=mesh.nodeMeshMaxRestartTime)
    labels = dict(me.metadata.labels)
    for resource in sorted(state.peers.values(), key=lambda p: p.name):
        p = resource.spec
        if p.node and p.node != me.name:
            continue
        if p.nodeSelector and not parse_selector(p.nodeSelector).matches(labels):
            continue
        try:
            password = secrets.password(p.password, f"BGPPeer {resource.name}")
        except _MissingSecret:
            continue
        if p.peerIP:
            address, port = peer_address(p.peerIP)
            version = ipaddress.ip_address(address).version
            local = mine[version] if p.sourceAddress == "UseNodeIP" else None
            if mine[version] and address != mine[version]:  # no session of a family this node lacks
                peer = Peer(address, p.asNumber or local_as, resource.name, False, local, password, port or BGP_PORT)
                peers[address] = _with_options(peer, p)
            continue
        selector = parse_selector(p.peerSelector)
        for other in _other_nodes(state, me):
            if selector.matches(dict(other.metadata.labels)):
                for peer in _node_peers(state, other, mine, settings.as_number, resource.name, p, password):
                    peers[peer.address] = _with_options(peer, p)
    return peers


def _with_options(peer: Peer, spec) -> Peer:
    """A BGPPeer's per-session options: local AS, graceful restart time, TTL security."""
    return replace(peer, local_as=spec.localASNumber, restart_time=spec.maxRestartTime, ttl_security=spec.ttlSecurity)


def _other_nodes(state: BgpState, me: Node) -> list[Node]:
    return [n for name, n in sorted(state.nodes.items()) if name != me.name]


def _node_peers(
    state: BgpState, other: Node, mine: dict[int, str | None], default_as: int, name: str, spec, password: str | None
) -> list[Peer]:
    """One session per family both nodes have; the higher address waits so two nodes never race."""
    found = []
    port = _listen_port(state, other.name)
    for version, address in zip((4, 6), node_addresses(other), strict=True):
        local = mine[version]
        if not (address and local) or address == local:
            continue
        passive = int(ipaddress.ip_address(local)) > int(ipaddress.ip_address(address))  # same family
        use_source = spec is None or spec.sourceAddress == "UseNodeIP"
        as_number = (spec.asNumber if spec and spec.asNumber else None) or _node_as(other, default_as)
        found.append(Peer(address, as_number, name, passive, local if use_source else None, password, port))
    return found


def _exported(state: BgpState, prefix: str) -> bool:
    """Inside an IPPool that allows export; addresses outside every pool (bare metal) are announced."""
    network = _network(prefix)
    for pool in state.pools.values():
        cidr = ipaddress.ip_network(pool.spec.cidr)
        if cidr.version == network.version and network.subnet_of(cidr):
            return not pool.spec.disableBGPExport
    return True


def _communities(spec):
    """prefix -> the communities of every prefixAdvertisement whose cidr holds it, names resolved."""
    named = {c.name: c.value for c in spec.communities}
    rules = [
        (ipaddress.ip_network(a.cidr), tuple(named.get(c, c) for c in a.communities)) for a in spec.prefixAdvertisements
    ]

    def lookup(prefix: str) -> tuple[str, ...]:
        if not rules:
            return ()
        network = _network(prefix)
        found: list[str] = []
        for cidr, values in rules:
            if cidr.version == network.version and network.subnet_of(cidr):
                found.extend(v for v in values if v not in found)
        return tuple(found)

    return lookup
