"""A pure, deliberately simple evaluator of the policy model: would this packet be allowed?

Written from the semantics (tiers in order, policies by order then name, Allow/Deny/Pass/Log,
tier default actions, profiles, Kubernetes default allow), independent of the compiler, so
tests can hold the kernel's verdicts against it."""

import ipaddress
from dataclasses import dataclass

from policy.compiler.labels import namespace_matches
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.resources import NAMESPACE_LABEL, Namespace, WorkloadEndpoint, endpoint_labels, namespace_labels
from policy.model.rules import PROTOCOL_NUMBERS, EntityRule, Rule
from policy.model.selector import parse_selector

INF = float("inf")


@dataclass(frozen=True)
class Packet:
    source: str
    destination: str
    protocol: int
    port: int


class Reference:
    def __init__(self, resources):
        self.endpoints = [r for r in resources if isinstance(r, WorkloadEndpoint)]
        self.netsets = [r for r in resources if isinstance(r, (NetworkSet, GlobalNetworkSet))]
        self.policies = [r for r in resources if isinstance(r, (NetworkPolicy, GlobalNetworkPolicy))]
        self.tiers = {r.name: r for r in resources if isinstance(r, Tier)}
        self.profiles = {r.name: r for r in resources if isinstance(r, Profile)}
        self.namespaces = {r.name: namespace_labels(r) for r in resources if isinstance(r, Namespace)}

    def allowed(self, src: WorkloadEndpoint, dst: WorkloadEndpoint, packet: Packet) -> bool:
        if src is dst:
            return True
        return self._decide(src, "Egress", packet) and self._decide(dst, "Ingress", packet)

    # -- who is who -------------------------------------------------------------------------
    def _labels(self, item) -> dict:
        labels = {}
        if isinstance(item, WorkloadEndpoint):
            for name in item.spec.profiles:
                if name in self.profiles:
                    labels.update(self.profiles[name].spec.labelsToApply)
        labels.update(item.metadata.labels)
        if isinstance(item, WorkloadEndpoint):
            return endpoint_labels(labels, item.namespace or "", item.spec.orchestrator, item.spec.serviceAccountName)
        if item.namespace:
            labels[NAMESPACE_LABEL] = item.namespace
        return labels

    def _in_scope(self, item, namespace_selector: str | None, namespace: str | None) -> bool:
        if namespace_selector is not None:
            labels = None if item.namespace is None else self.namespaces.get(item.namespace, {})
            return namespace_matches(parse_selector(namespace_selector), labels)
        return namespace is None or item.namespace == namespace

    def _selected(self, selector: str, namespace_selector, namespace) -> list:
        chosen = parse_selector(selector)
        return [
            i
            for i in self.endpoints + self.netsets
            if self._in_scope(i, namespace_selector, namespace) and chosen.matches(self._labels(i))
        ]

    @staticmethod
    def _networks(item) -> list[str]:
        return item.spec.ipNetworks if isinstance(item, WorkloadEndpoint) else item.spec.nets

    def _address_in(self, address: str, items) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(n) for item in items for n in self._networks(item))

    # -- rules ------------------------------------------------------------------------------
    def _side_matches(self, entity: EntityRule, address: str, port: int, protocol: int, namespace) -> bool:
        ip = ipaddress.ip_address(address)
        if entity.nets and not any(ip in ipaddress.ip_network(n) for n in entity.nets):
            return False
        if any(ip in ipaddress.ip_network(n) for n in entity.notNets):
            return False
        # Calico: in a namespaced policy any selector field, notSelector too, limits the side to
        # the policy's namespace (or to namespaceSelector's namespaces).
        terms = [f"({entity.selector})"] if entity.selector else []
        if entity.serviceAccounts and entity.serviceAccounts.names:
            names = ", ".join(f"'{n}'" for n in entity.serviceAccounts.names)
            terms.append(f"projectcalico.org/serviceaccount in {{{names}}}")
        limited = terms or entity.namespaceSelector is not None or (entity.notSelector and namespace is not None)
        positive = self._selected(" && ".join(terms) or "all()", entity.namespaceSelector, namespace)
        if limited and not self._address_in(address, positive):
            return False
        if entity.notSelector and self._address_in(
            address, self._selected(entity.notSelector, entity.namespaceSelector, namespace)
        ):
            return False
        # A named port means the endpoints the side selects, or with no selector field every
        # endpoint of every namespace (Kubernetes: a rule without peers).
        scope = [e for e in (positive if limited else self.endpoints) if isinstance(e, WorkloadEndpoint)]
        if entity.ports and not any(self._port_matches(p, address, port, protocol, scope) for p in entity.ports):
            return False
        return not any(self._port_matches(p, address, port, protocol, scope) for p in entity.notPorts)

    def _port_matches(self, spec, address: str, port: int, protocol: int, scope) -> bool:
        if isinstance(spec, int):
            return port == spec
        if ":" in spec:
            low, high = map(int, spec.split(":"))
            return low <= port <= high
        return any(
            p.name == spec
            and p.port == port
            and PROTOCOL_NUMBERS[p.protocol] == protocol
            and any(n.split("/")[0] == address for n in e.spec.ipNetworks)
            for e in scope
            for p in e.spec.ports
        )

    def _rule_matches(self, rule: Rule, packet: Packet, namespace) -> bool:
        version = ipaddress.ip_address(packet.source).version
        number = lambda p: p if isinstance(p, int) else PROTOCOL_NUMBERS[p]  # noqa: E731
        if rule.ipVersion and rule.ipVersion != version:
            return False
        if rule.protocol is not None and number(rule.protocol) != packet.protocol:
            return False
        if rule.notProtocol is not None and number(rule.notProtocol) == packet.protocol:
            return False
        if rule.icmp or rule.notICMP:
            return False  # probes are TCP and UDP only
        return self._side_matches(rule.source, packet.source, -1, packet.protocol, namespace) and self._side_matches(
            rule.destination, packet.destination, packet.port, packet.protocol, namespace
        )

    # -- evaluation -------------------------------------------------------------------------
    def _applies(self, policy, endpoint: WorkloadEndpoint, direction: str) -> bool:
        if direction not in policy.spec.types:
            return False
        namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
        return endpoint in self._selected(
            policy.spec.selector, getattr(policy.spec, "namespaceSelector", None), namespace
        )

    def _decide(self, endpoint: WorkloadEndpoint, direction: str, packet: Packet) -> bool:
        applicable = [p for p in self.policies if self._applies(p, endpoint, direction)]
        tiers = sorted(
            {p.spec.tier for p in applicable},
            key=lambda t: (
                self.tiers[t].spec.order if t in self.tiers and self.tiers[t].spec.order is not None else INF,
                t,
            ),
        )
        for tier in tiers:
            members = sorted(
                (p for p in applicable if p.spec.tier == tier),
                key=lambda p: (p.spec.order if p.spec.order is not None else INF, p.name, p.namespace or ""),
            )
            outcome = self._run_tier(members, direction, packet)
            if outcome is not None:
                return outcome
            if outcome is None and self._passed:
                continue
            if (self.tiers[tier].spec.defaultAction if tier in self.tiers else "Deny") == "Deny":
                return False
        profiles = [
            self.profiles[n]
            for n in endpoint.spec.profiles
            if n in self.profiles and getattr(self.profiles[n].spec, direction.lower())
        ]
        for profile in profiles:
            for rule in getattr(profile.spec, direction.lower()):
                if self._rule_matches(rule, packet, None):
                    if rule.action in ("Allow", "Deny"):
                        return rule.action == "Allow"
                    if rule.action == "Pass":
                        break
        return not profiles

    def _run_tier(self, members, direction: str, packet: Packet) -> bool | None:
        """True/False when a rule decides; None when the tier ends undecided (self._passed says how)."""
        self._passed = False
        for policy in members:
            namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
            for rule in getattr(policy.spec, direction.lower()):
                if not self._rule_matches(rule, packet, namespace):
                    continue
                if rule.action == "Allow":
                    return True
                if rule.action == "Deny":
                    return False
                if rule.action == "Pass":
                    self._passed = True
                    return None
        return None
