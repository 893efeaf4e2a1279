"""Flows between every pair of endpoints and network sets: the reachability matrix of one model,
and the flows a change opens and closes between two models.

Exact without trying all 65,535 ports: the ports (and ICMP types) the rules and the endpoints'
named ports mention cut each protocol into classes that every rule treats alike, and one packet
per class answers for the whole class (a `Service`). Work is pairs x services evaluations (for a
change, only the pairs `changed_pairs` keeps), which the caller bounds; `progress` is called as
it goes."""

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from policy.evaluate.evaluator import Decision, Evaluator, FlowVerdict, Peer, policy_label
from policy.evaluate.rules import Packet, protocol_number
from policy.evaluate.universe import Member
from policy.model.rules import PROTOCOL_NUMBERS

PORT_PROTOCOLS = (6, 17, 132, 136)
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
ICMP_FOR = {4: 1, 6: 58}
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True, order=True)
class Service:
    """A protocol with a range of destination ports, or an ICMP type (and code), that every rule
    of the models compared treats alike; `other` marks the ICMP types no rule names."""

    protocol: int
    low: int | None = None
    high: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    other: bool = False

    def packet(self, source: str, destination: str) -> Packet:
        return Packet(source, destination, self.protocol, self.low, self.icmp_type, self.icmp_code)

    def __str__(self) -> str:
        name = PROTOCOL_NAMES.get(self.protocol, f"protocol {self.protocol}")
        if self.low is not None:
            return f"{name} {self.low}" if self.low == self.high else f"{name} {self.low}-{self.high}"
        if self.other:
            return f"{name} (other types)"
        if self.icmp_type is not None and self.icmp_code is not None:
            return f"{name} type {self.icmp_type} code {self.icmp_code}"
        return name if self.icmp_type is None else f"{name} type {self.icmp_type}"


def services(models: Sequence[Evaluator], version: int) -> list[Service]:
    """Classes of (protocol, port or ICMP type) that no rule of `models` tells apart: TCP, UDP
    and every protocol a rule names (ICMP for IPv4, ICMPv6 for IPv6)."""
    protocols = {6, 17}
    boundaries: dict[int, set[int]] = {p: {1, 65536} for p in PORT_PROTOCOLS}
    icmp: dict[int, set[int | None]] = {}  # ICMP type -> codes named for it (None: the type alone)
    for model in models:
        for member in model.universe.endpoints:
            for _, protocol, port in member.named_ports():
                boundaries[protocol] |= {port, port + 1}
        for rule in _every_rule(model):
            for field in (rule.protocol, rule.notProtocol):
                if field is not None:
                    protocols.add(protocol_number(field))
            if rule.protocol is None:
                continue
            number = protocol_number(rule.protocol)
            for side in (rule.source, rule.destination):
                for port in side.ports + side.notPorts:
                    if isinstance(port, int):
                        boundaries[number] |= {port, port + 1}
                    elif ":" in port:
                        low, _, high = port.partition(":")
                        boundaries[number] |= {int(low), int(high) + 1}
            for match in (rule.icmp, rule.notICMP):
                if match and match.type is not None:
                    icmp.setdefault(match.type, set()).add(match.code)
    found: list[Service] = []
    for protocol in sorted(protocols - {ICMP_FOR[10 - version]}):
        if protocol in PORT_PROTOCOLS:
            cuts = sorted(boundaries[protocol])
            found += [Service(protocol, low, high - 1) for low, high in zip(cuts, cuts[1:], strict=False)]
        elif protocol == ICMP_FOR[version]:
            found += _icmp_services(protocol, icmp)
        else:
            found.append(Service(protocol))
    return found


def _icmp_services(protocol: int, types: dict[int, set[int | None]]) -> list[Service]:
    if not types:
        echo = 8 if protocol == 1 else 128
        return [Service(protocol, icmp_type=echo, icmp_code=0, other=True)]
    found = []
    for icmp_type, codes in sorted(types.items()):
        named = sorted(c for c in codes if c is not None)
        found += [Service(protocol, icmp_type=icmp_type, icmp_code=c) for c in named]
        if named:
            spare = next(c for c in range(256) if c not in named)
            found.append(Service(protocol, icmp_type=icmp_type, icmp_code=spare, other=True))
        else:
            found.append(Service(protocol, icmp_type=icmp_type, icmp_code=0))
    spare_type = next(t for t in range(256) if t not in types)
    return found + [Service(protocol, icmp_type=spare_type, icmp_code=0, other=True)]


def restrict(found: Iterable[Service], protocol: int | None, port: int | None) -> list[Service]:
    """Only the classes of one protocol, and with a port, the one class holding it (as 'P P')."""
    chosen = [s for s in found if protocol is None or s.protocol == protocol]
    if port is None:
        return chosen
    return [
        Service(s.protocol, port, port)
        for s in chosen
        if s.low is not None and s.high is not None and s.low <= port <= s.high
    ]


def _every_rule(model: Evaluator):
    for policy in [*model.policies, *model.profiles.values()]:
        yield from policy.spec.ingress
        yield from policy.spec.egress


def peers(model: Evaluator, version: int, chosen: Iterable[Member] | None = None) -> list[Peer]:
    """Endpoints (each at its first address of the IP version) and network sets (at their first
    network's first address): the ends of the flows compared."""
    found = []
    for member in model.universe.members if chosen is None else chosen:
        if member.is_endpoint:
            peer = model.endpoint_peer(member, version)
        else:
            nets = [n for n in member.networks if n.version == version]
            peer = Peer(str(nets[0].network_address), f"{member.resource.kind} {member.name}") if nets else None
        if peer is not None:
            found.append(peer)
    return found


def pairs(sources: Sequence[Peer], destinations: Sequence[Peer]) -> list[tuple[Peer, Peer]]:
    """Every pair that policy can decide: at least one end an endpoint, never an endpoint with itself."""
    return [
        (s, d)
        for s in sources
        for d in destinations
        if (s.endpoint is not None or d.endpoint is not None) and s.description != d.description
    ]


class Ticker:
    """Calls `progress` at most every `every` seconds with (done, total)."""

    def __init__(self, total: int, progress: Progress | None, every: float = 2.0):
        self.total, self.progress, self.every = total, progress, every
        self.done = 0
        self._next = time.monotonic() + every

    def tick(self, count: int = 1) -> None:
        self.done += count
        if self.progress and time.monotonic() >= self._next:
            self.progress(self.done, self.total)
            self._next = time.monotonic() + self.every


def matrix(
    model: Evaluator, cells: Sequence[tuple[Peer, Peer]], found: Sequence[Service], progress: Progress | None = None
) -> dict[tuple[str, str], tuple[bool, ...]]:
    """(source, destination) description -> allowed per service, in the order of `found`."""
    ticker = Ticker(len(cells) * len(found), progress)
    result = {}
    for source, destination in cells:
        verdicts = []
        for service in found:
            verdicts.append(
                model.flow(source, destination, service.packet(source.address, destination.address)).allowed
            )
        ticker.tick(len(found))
        result[(source.description, destination.description)] = tuple(verdicts)
    return result


@dataclass(frozen=True)
class FlowChange:
    """A flow the change opens or closes, and what decides it after the change."""

    source: str
    destination: str
    service: Service
    opened: bool
    decided_by: str  # e.g. "NetworkPolicy x/web Ingress rule 0 (Allow)"


def decided_by(decision: Decision) -> str:
    if decision.rule is not None:
        return f"{decision.policy} {decision.direction} rule {decision.index} ({decision.rule.action})"
    if decision.tier is not None:
        return f"the end of tier {decision.tier} (Deny), {decision.direction} at {decision.endpoint}"
    return f"{decision.reason} ({decision.direction} at {decision.endpoint}): {decision.detail}"


def _cause(before: FlowVerdict, after: FlowVerdict) -> str:
    """The first decision the packet meets that changed its verdict, as it stands after."""
    old = {d.direction: d.allowed for d in before.decisions}
    for decision in after.decisions:
        if old.get(decision.direction) != decision.allowed:
            return decided_by(decision)
    return decided_by(after.decisions[-1])


def _signature(model: Evaluator, member: Member | None, direction: str) -> tuple:
    """What one direction's verdicts at an endpoint depend on, besides the items selectors see."""
    if member is None:
        return ()
    tiers = tuple(
        (tier, model.tier_default(tier), tuple((policy_label(p), p.spec) for p in policies))
        for tier, policies in model.applied(member, direction)
    )
    resource = member.resource
    names = getattr(resource.spec, "profiles", [])
    return tiers, tuple((n, model.profiles[n].spec if n in model.profiles else None) for n in names)


def universe_key(model: Evaluator) -> tuple:
    """Everything selectors and addresses see: when it is the same in two models, an endpoint
    whose signature is the same decides the same."""
    members = tuple(
        (m.resource.kind, m.namespace, m.resource.name, tuple(sorted(m.labels.items())), m.networks, m.named_ports())
        for m in model.universe.members
    )
    nodes = tuple((n.name, n.spec) for n in model.universe.nodes)
    return members, tuple(sorted((k, tuple(sorted(v.items()))) for k, v in model.universe.namespaces.items())), nodes


def changed_pairs(
    before: Evaluator, after: Evaluator, cells: Sequence[tuple[Peer, Peer]]
) -> list[tuple[Peer, Peer, Peer, Peer]]:
    """(source, destination) as `before` has them and as `after` has them, for the pairs whose
    verdicts may differ: when only policies, tiers and profiles changed, a pair whose source's
    egress and destination's ingress meet the same rules as before is left out."""
    new_members: dict[tuple[str, str], Member] = {(m.resource.kind, m.name): m for m in after.universe.members}
    same_items = universe_key(before) == universe_key(after)
    moved: dict[tuple[int, str], bool] = {}  # (id of the before member, direction) -> its rules changed

    def differs(peer: Peer, new: Peer, direction: str) -> bool:
        if peer.endpoint is None:
            return False
        key = (id(peer.endpoint), direction)
        if key not in moved:
            moved[key] = _signature(before, peer.endpoint, direction) != _signature(after, new.endpoint, direction)
        return moved[key]

    found = []
    for source, destination in cells:
        new_source, new_destination = _same(new_members, source), _same(new_members, destination)
        if not same_items or differs(source, new_source, "Egress") or differs(destination, new_destination, "Ingress"):
            found.append((source, destination, new_source, new_destination))
    return found


def flow_changes(
    before: Evaluator,
    after: Evaluator,
    cells: Sequence[tuple[Peer, Peer, Peer, Peer]],
    found: Sequence[Service],
    progress: Progress | None = None,
) -> list[FlowChange]:
    """The flows whose verdict differs between the models, for the pairs `changed_pairs` kept
    (built from `before`'s peers: what runs now) and the services given."""
    ticker = Ticker(len(cells) * len(found), progress)
    changes = []
    for source, destination, new_source, new_destination in cells:
        for service in found:
            packet = service.packet(source.address, destination.address)
            was = before.flow(source, destination, packet)
            now = after.flow(new_source, new_destination, packet)
            if was.allowed != now.allowed:
                changes.append(
                    FlowChange(source.description, destination.description, service, now.allowed, _cause(was, now))
                )
        ticker.tick(len(found))
    return changes


def _same(members: dict[tuple[str, str], Member], peer: Peer) -> Peer:
    """The peer as the other model has it: the same endpoint at the same address."""
    if peer.endpoint is None:
        return peer
    member = members.get((peer.endpoint.resource.kind, peer.endpoint.name))
    return Peer(peer.address, peer.description, member, member.node if member else None)
