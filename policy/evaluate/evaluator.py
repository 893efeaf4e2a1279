"""The Calyx policy semantics as a pure function: is this flow allowed, and why?

docs/policy.md "Semantics", in order: a flow from workload A to workload B meets A's source
check (anti-spoofing) and A's egress, then B's ingress; each direction runs the tiers in
order, the policies of a tier that select the endpoint by order then name, a tier's default
action when policies applied and none decided, then the endpoint's profiles, and allows when
nothing applies (Kubernetes' default). Traffic to the workload's own host then meets felix's
endpoint-to-host action. Every answer says what decided it."""

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from policy.compiler.ruleset import DEFAULT_HOST_ACCESS, HostAccess
from policy.evaluate.rules import Packet, rule_matches
from policy.evaluate.universe import Member, Universe, address
from policy.model.policies import GlobalNetworkPolicy, NetworkPolicy, Policy, Profile, Tier
from policy.model.resources import Node, WorkloadEndpoint
from policy.model.rules import Rule

INF = float("inf")

# Why a direction was decided (Decision.reason).
RULE = "rule"  # an Allow or Deny rule of a policy
TIER_DEFAULT = "tier-default"  # policies of a tier applied, none decided: the tier's defaultAction (Deny)
PROFILE_RULE = "profile-rule"  # an Allow or Deny rule of a profile
PROFILE_DEFAULT = "profile-default"  # profiles had rules for the direction, none allowed: drop
NO_POLICY = "no-policy"  # no policy or profile rule applies: allowed (Kubernetes' default)
ANTI_SPOOFING = "anti-spoofing"  # the source address is not one the sending endpoint holds
HOST_ACCESS = "host-access"  # workload to its own host: --default-endpoint-to-host-action
NOT_FILTERED = "not-filtered"  # host to its own workloads, or a packet that never leaves the workload


@dataclass(frozen=True)
class Step:
    """A rule or a tier end met on the way that did not decide: Log, Pass, a tier passing on."""

    action: str  # Log, Pass, or "tier-pass" (a tier whose defaultAction is Pass)
    tier: str | None
    policy: str | None
    index: int | None = None
    rule: Rule | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict of one direction at one endpoint, and what decided it."""

    direction: str  # Ingress, Egress, or Host for the endpoint-to-host check
    endpoint: str  # ns/name
    allowed: bool
    reason: str
    tier: str | None = None
    policy: str | None = None  # "NetworkPolicy ns/name", "GlobalNetworkPolicy name", "Profile name"
    index: int | None = None  # the rule's index in the policy's rules for this direction
    rule: Rule | None = None
    trail: tuple[Step, ...] = ()
    detail: str = ""  # for reasons without a rule: what applied (the tier's policies, the host action)


@dataclass(frozen=True)
class Peer:
    """One end of a flow: a workload endpoint, or an address outside them (a network set's, a
    node's, or anything else); `node` is set for endpoints and node addresses."""

    address: str
    description: str
    endpoint: Member | None = None
    node: str | None = None


@dataclass(frozen=True)
class FlowVerdict:
    source: Peer
    destination: Peer
    packet: Packet
    decisions: tuple[Decision, ...] = field(default=())  # in the order the packet meets them

    @property
    def allowed(self) -> bool:
        return all(d.allowed for d in self.decisions)


def policy_label(policy: Policy | Profile) -> str:
    return f"{policy.kind} {policy.namespace}/{policy.name}" if policy.namespace else f"{policy.kind} {policy.name}"


class Evaluator:
    """Policy verdicts for one model (every resource of a cluster, in any order).

    `created`: each endpoint's etcd create revision by (namespace, name), which decides who
    holds a contested address; `host_access`: felix's endpoint-to-host settings."""

    def __init__(
        self,
        resources: Iterable,
        created: Mapping[tuple[str | None, str], int] | None = None,
        host_access: HostAccess = DEFAULT_HOST_ACCESS,
    ):
        resources = list(resources)
        self.universe = Universe(resources, created)
        self.host_access = host_access
        self.policies: list[Policy] = [r for r in resources if isinstance(r, (NetworkPolicy, GlobalNetworkPolicy))]
        self.tiers = {r.name: r for r in resources if isinstance(r, Tier)}
        self.profiles = {r.name: r for r in resources if isinstance(r, Profile)}
        self._applied: dict[tuple[int, str], tuple[tuple[str, tuple[Policy, ...]], ...]] = {}
        self._by_index = {id(m): i for i, m in enumerate(self.universe.members)}

    # -- who the ends are ---------------------------------------------------------------
    def locate(self, ip: str) -> Peer:
        """The endpoint holding an address, else the network set or node it belongs to."""
        text = str(address(ip))
        owner = self.universe.owner(text)
        if owner is not None:
            return Peer(text, f"WorkloadEndpoint {owner.name}", owner, owner.node)
        for node in self.universe.nodes:
            if text in _node_addresses(node):
                return Peer(text, f"Node {node.name}", node=node.name)
        sets = [self.universe.members[i] for i in self.universe.holders(text)]
        sets = [m for m in sets if not m.is_endpoint]
        if sets:
            best = max(sets, key=lambda m: max(n.prefixlen for n in m.networks if address(text) in n))
            return Peer(text, f"{best.resource.kind} {best.name}")
        return Peer(text, "outside every endpoint and network set")

    def endpoint_peer(self, member: Member, version: int = 4) -> Peer | None:
        """An endpoint as a flow's end: its first address of that IP version, None without one."""
        for n in member.networks:
            if n.version == version:
                return Peer(str(n.network_address), f"WorkloadEndpoint {member.name}", member, member.node)
        return None

    # -- flows --------------------------------------------------------------------------
    def flow(self, source: Peer, destination: Peer, packet: Packet) -> FlowVerdict:
        """What the packet meets from source to destination: the egress side (source check and
        egress policy) when it comes from an endpoint, the ingress side when it goes to one."""
        src, dst = source.endpoint, destination.endpoint
        if src is not None and src is dst:
            return FlowVerdict(source, destination, packet, (self._unfiltered(src, "it never leaves the workload"),))
        decisions = []
        if src is not None:
            target = address(packet.source)
            if not any(target == n.network_address and n.num_addresses == 1 for n in src.networks):
                held = ", ".join(str(n) for n in src.networks) or "none"
                decisions.append(
                    Decision(
                        "Egress",
                        src.name,
                        False,
                        ANTI_SPOOFING,
                        detail=f"anti-spoofing: {src.name} may send only from the addresses it holds: {held}",
                    )
                )
            else:
                decisions.append(self.decide(src, "Egress", packet))
            if dst is None and destination.node is not None and destination.node == source.node:
                decisions.append(self._host_access(src, packet))
        if dst is not None:
            if src is None and source.node is not None and source.node == destination.node:
                decisions.append(self._unfiltered(dst, "traffic from a host to its own workloads is not filtered"))
            else:
                decisions.append(self.decide(dst, "Ingress", packet))
        return FlowVerdict(source, destination, packet, tuple(decisions))

    @staticmethod
    def _unfiltered(member: Member, why: str) -> Decision:
        return Decision("Ingress", member.name, True, NOT_FILTERED, detail=why)

    def _host_access(self, member: Member, packet: Packet) -> Decision:
        access = self.host_access
        if packet.port is not None and (packet.protocol, packet.port) in access.allowed:
            return Decision(
                "Host", member.name, True, HOST_ACCESS, detail="to its own host: opened by --endpoint-to-host-allow"
            )
        detail = f"to its own host: --default-endpoint-to-host-action {access.action}"
        if access.action == "Return":
            detail += " (the host's own firewall decides)"
        return Decision("Host", member.name, access.action != "Drop", HOST_ACCESS, detail=detail)

    # -- one direction at one endpoint --------------------------------------------------
    def applied(self, member: Member, direction: str) -> tuple[tuple[str, tuple[Policy, ...]], ...]:
        """(tier, policies in order) for the tiers whose policies select the endpoint, in order."""
        cache_key = (self._by_index[id(member)], direction)
        found = self._applied.get(cache_key)
        if found is None:
            index = cache_key[0]
            tiers: dict[str, list[Policy]] = defaultdict(list)
            for policy in self.policies:
                if direction in policy.spec.types and index in self._selects(policy):
                    tiers[policy.spec.tier].append(policy)
            found = self._applied[cache_key] = tuple(
                (tier, tuple(sorted(tiers[tier], key=_policy_order))) for tier in sorted(tiers, key=self._tier_order)
            )
        return found

    def _selects(self, policy: Policy) -> frozenset[int]:
        namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
        spec = policy.spec
        return self.universe.select(spec.endpoint_selector(), getattr(spec, "namespaceSelector", None), namespace)

    def _tier_order(self, name: str) -> tuple:
        tier = self.tiers.get(name)
        return (tier.spec.order if tier and tier.spec.order is not None else INF, name)

    def tier_default(self, name: str) -> str:
        tier = self.tiers.get(name)
        return tier.spec.defaultAction if tier else "Deny"

    def decide(self, member: Member, direction: str, packet: Packet) -> Decision:
        trail: list[Step] = []
        for tier, policies in self.applied(member, direction):
            passed = False
            for policy in policies:
                namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
                label = policy_label(policy)
                for index, rule in enumerate(_rules(policy, direction)):
                    if not rule_matches(rule, packet, namespace, self.universe):
                        continue
                    if rule.action in ("Allow", "Deny"):
                        return Decision(
                            direction, member.name, rule.action == "Allow", RULE, tier, label, index, rule, tuple(trail)
                        )
                    trail.append(Step(rule.action, tier, label, index, rule))
                    if rule.action == "Pass":
                        passed = True
                        break
                if passed:
                    break
            if passed:
                continue
            if self.tier_default(tier) == "Deny":
                names = ", ".join(policy_label(p) for p in policies)
                return Decision(
                    direction,
                    member.name,
                    False,
                    TIER_DEFAULT,
                    tier,
                    trail=tuple(trail),
                    detail=f"no rule of {names} decided; tier {tier} ends with its defaultAction Deny",
                )
            trail.append(Step("tier-pass", tier, None))
        return self._profiles(member, direction, packet, trail)

    def _profiles(self, member: Member, direction: str, packet: Packet, trail: list[Step]) -> Decision:
        resource = member.resource
        assert isinstance(resource, WorkloadEndpoint)
        with_rules = [
            self.profiles[n]
            for n in resource.spec.profiles
            if n in self.profiles and _rules(self.profiles[n], direction)
        ]
        for profile in with_rules:
            label = policy_label(profile)
            for index, rule in enumerate(_rules(profile, direction)):
                if not rule_matches(rule, packet, None, self.universe):
                    continue
                if rule.action in ("Allow", "Deny"):
                    return Decision(
                        direction,
                        member.name,
                        rule.action == "Allow",
                        PROFILE_RULE,
                        None,
                        label,
                        index,
                        rule,
                        tuple(trail),
                    )
                trail.append(Step(rule.action, None, label, index, rule))
                if rule.action == "Pass":
                    break
        if with_rules:
            names = ", ".join(policy_label(p) for p in with_rules)
            return Decision(
                direction,
                member.name,
                False,
                PROFILE_DEFAULT,
                trail=tuple(trail),
                detail=f"no rule of {names} allowed it; profiles end with Deny",
            )
        return Decision(
            direction,
            member.name,
            True,
            NO_POLICY,
            trail=tuple(trail),
            detail="no policy or profile rule applies (Kubernetes' default: allow)",
        )


def _rules(policy: Policy | Profile, direction: str) -> list[Rule]:
    return policy.spec.ingress if direction == "Ingress" else policy.spec.egress


def _policy_order(policy: Policy) -> tuple:
    return (policy.spec.order if policy.spec.order is not None else INF, policy.name, policy.namespace or "")


def _node_addresses(node: Node) -> set[str]:
    found = {a.address for a in node.spec.addresses}
    if node.spec.bgp:
        found |= {
            str(ipaddress.ip_interface(a).ip) for a in (node.spec.bgp.ipv4Address, node.spec.bgp.ipv6Address) if a
        }
    return found
