"""The incremental policy compiler: resources in (any order), this node's ruleset out.

Updates only record what changed; `ruleset()` then recomputes just that: the changed policy's
chain, the sets whose members moved, the chains of the endpoints whose policies changed.
A set whose members come to need an interval set, or stop needing one, changes name
(sets.py), and the chains of the policies and profiles that use it are written again naming
it. The result depends on the current resources only, never on the order they arrived."""

import hashlib
import logging
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from policy.compiler.claims import Claims, claim, claimants, release
from policy.compiler.endpoints import EndpointView, endpoint_chain
from policy.compiler.labels import Item, LabelIndex, shared_labels
from policy.compiler.matches import compile_rule
from policy.compiler.nat import NAT_CHAIN, nat_rules, nat_set_elements
from policy.compiler.observe import NO_OBSERVE, Observe, policy_origin
from policy.compiler.ruleset import DEFAULT_HOST_ACCESS, KNOWN_INTERFACES, HostAccess, Ruleset, SetDef, interface_sets
from policy.compiler.sets import Selection, SetSpec, collapse, needs_interval
from policy.model.policies import GlobalNetworkSet, NetworkPolicy, NetworkSet, Policy, Profile, Tier
from policy.model.pools import IPPool
from policy.model.resources import NAMESPACE_LABEL, Namespace, WorkloadEndpoint, endpoint_labels, namespace_labels
from policy.model.rules import PROTOCOL_NUMBERS, Rule
from policy.model.selector import parse_selector

log = logging.getLogger(__name__)

BULK = 64  # more changed items than this: re-evaluate selections wholesale, by set algebra
DIRECTIONS = {"Ingress": "in", "Egress": "out"}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _interned(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


@dataclass(frozen=True, slots=True)
class EndpointFacts:
    """What the compiler needs of a WorkloadEndpoint: 100,000 of these stay small, where the
    validated resource objects would cost kilobytes each. Labels are shared between endpoints
    that carry the same ones, and another node's endpoint keeps no interface name."""

    namespace: str
    node: str
    interface: str  # "" for another node's endpoint
    networks: tuple[str, ...]
    labels: Mapping[str, str]
    profiles: tuple[str, ...]
    ports: tuple[tuple[str, int, int], ...]  # (name, protocol number, port)
    service_account: str | None
    orchestrator: str | None

    @classmethod
    def of(cls, endpoint: WorkloadEndpoint, local_node: str) -> "EndpointFacts":
        spec = endpoint.spec
        return cls(
            sys.intern(endpoint.namespace or ""),  # namespaced: decoding always sets it
            sys.intern(spec.node),
            spec.interfaceName if spec.node == local_node else "",
            tuple(spec.ipNetworks),
            shared_labels(endpoint.metadata.labels),
            tuple(sys.intern(p) for p in spec.profiles),
            tuple((sys.intern(p.name), PROTOCOL_NUMBERS[p.protocol], p.port) for p in spec.ports),
            _interned(spec.serviceAccountName),  # shared by the pods of a service account
            _interned(spec.orchestrator),  # "k8s" for nearly all
        )


class CompiledRules:
    """A policy's or profile's chains (per direction) and the sets they reference. The chains
    name each set by its spec's hash-set name; `renamed` writes them with the names in use."""

    def __init__(
        self,
        prefix: str,
        ident: str,
        rules: dict[str, list[Rule]],
        namespace: str | None,
        broken: str | None,
        observe: Observe = NO_OBSERVE,
    ):
        self.chains: dict[str, tuple[str, tuple]] = {}
        self.specs: set[SetSpec] = set()
        origin = f"profiles/{ident}" if prefix == "prof" else policy_origin(ident)
        for direction, direction_rules in rules.items():
            name = f"{prefix}-{DIRECTIONS[direction]}-{_digest(ident)}"
            if broken:
                self.chains[direction] = (name, ([{"drop": None}],))
                continue
            compiled = []
            for index, rule in enumerate(direction_rules):
                log_prefix = f"calyx {ident} {direction.lower()}[{index}]: "
                rules_of = compile_rule(rule, namespace, log_prefix, self._want)
                compiled += observe.rules(rules_of, rule.action, direction, index, origin)
            self.chains[direction] = (name, tuple(compiled))

    def _want(self, spec: SetSpec) -> str:
        self.specs.add(spec)
        return spec.name

    def renamed(self, names: Mapping[SetSpec, str]) -> dict[str, tuple]:
        """chain name -> rules, each set named as in `names` (a spec's set may be an interval set)."""
        renames = {"@" + spec.name: "@" + names[spec] for spec in self.specs if names[spec] != spec.name}
        if not renames:
            return dict(self.chains.values())
        return {
            name: tuple([_renamed(s, renames) for s in rule] for rule in rules) for name, rules in self.chains.values()
        }


def _renamed(statement: dict, renames: Mapping[str, str]) -> dict:
    """A match on a set (`... @name`) with the set's name in use; any other statement as it is."""
    found = statement.get("match")
    if found is None or not isinstance(found["right"], str) or found["right"] not in renames:
        return statement
    return {"match": {**found, "right": renames[found["right"]]}}


class CompiledPolicy(CompiledRules):
    def __init__(self, key: str, policy: Policy, broken: str | None, observe: Observe = NO_OBSERVE):
        spec = policy.spec
        namespace = policy.namespace if isinstance(policy, NetworkPolicy) else None
        rules = {"Ingress": spec.ingress, "Egress": spec.egress}
        super().__init__("pol", key, {d: rules[d] for d in spec.types}, namespace, broken, observe)
        self.tier = spec.tier
        self.sort_key = (spec.order if spec.order is not None else float("inf"), policy.name, policy.namespace or "")
        namespace_selector = getattr(spec, "namespaceSelector", None)
        self.applies = Selection(spec.endpoint_selector(), namespace_selector, namespace)


class PolicyCompiler:
    def __init__(self, node: str, host_access: HostAccess = DEFAULT_HOST_ACCESS, observe: Observe = NO_OBSERVE):
        self.node = node
        self._observe = observe
        self.index = LabelIndex()
        self.errors: dict[str, str] = {}  # policy key -> why it is compiled as drop-all
        self._ruleset = Ruleset(host_access=host_access)
        self._endpoints: dict[str, EndpointFacts] = {}
        self._netsets: dict[str, NetworkSet | GlobalNetworkSet] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._tiers: dict[str, Tier] = {}
        self._profiles: dict[str, Profile] = {}
        self._profile_rules: dict[str, CompiledRules] = {}
        self._policies: dict[str, CompiledPolicy] = {}
        self._policy_sources: dict[str, Policy] = {}
        self._quarantined: dict[str, str] = {}
        self._spec_users: dict[SetSpec, set[CompiledRules]] = {}
        self._set_names: dict[SetSpec, str] = {}  # the name of each used spec's set, as it holds now
        self._unwritten: set[CompiledRules] = set()  # chains to write: claimed, or a set of theirs renamed
        self._specs_by_selection: dict[Selection, set[SetSpec]] = defaultdict(set)
        self._selection_users: dict[Selection, set[str]] = defaultdict(set)  # applies-to -> policy keys
        self._members: dict[Selection, set[str]] = {}
        self._applied: dict[str, set[str]] = defaultdict(set)  # local endpoint -> policy keys
        self._local: dict[str, str] = {}  # local endpoint key -> interface
        self._interfaces: Claims = {}  # interface -> local endpoint keys (one, as a rule)
        # shared endpoint chain -> how many interfaces jump to it (a set of 10,000 names cost ~50
        # bytes per interface; the maps of the ruleset say which ones)
        self._chain_users: dict[str, int] = {}
        self._views: dict[tuple, tuple[EndpointView, str]] = {}  # see _view
        # item -> its networks per family, ready for set elements; most items are IPv4 only, so
        # the IPv4 map shares the item's own tuple and the IPv6 map holds only items with IPv6
        self._ipv4: dict[str, tuple[str, ...]] = {}
        self._ipv6: dict[str, tuple[str, ...]] = {}
        self._dirty_items: set[str] = set()
        self._namespaces_changed = False
        self._dirty_interfaces: set[str] = set()
        self._dirty_specs: set[SetSpec] = set()
        self._sources_changed = False  # an interface came, went or changed addresses
        self._pools: dict[str, IPPool] = {}
        self._pools_changed = True  # the NAT sets exist from the first ruleset on, empty without pools

    # ---- inputs -------------------------------------------------------------------------

    def set_endpoint(self, key: str, endpoint: WorkloadEndpoint | None) -> None:
        self.set_facts(key, EndpointFacts.of(endpoint, self.node) if endpoint is not None else None)

    def set_facts(self, key: str, facts: EndpointFacts | None) -> None:
        """set_endpoint() for a caller that keeps the projection itself (felix, for its local
        endpoints): one object then serves both, and the resource need not be kept at all."""
        self._endpoints.pop(key, None)
        interface = self._local.pop(key, None)
        if interface is not None:
            release(self._interfaces, interface, key)
            self._dirty_interfaces.add(interface)
        if facts is not None:
            self._endpoints[key] = facts
            if facts.node == self.node:
                self._local[key] = facts.interface
                claim(self._interfaces, facts.interface, key)
                self._dirty_interfaces.add(facts.interface)
        if facts is None or facts.node != self.node:
            self._applied.pop(key, None)
        self._reindex(key)

    def set_network_set(self, key: str, netset: NetworkSet | GlobalNetworkSet | None) -> None:
        if netset is None:
            self._netsets.pop(key, None)
        else:
            self._netsets[key] = netset
        self._reindex(key)

    def set_namespace(self, name: str, namespace: Namespace | None) -> None:
        if namespace is None:
            self._namespaces.pop(name, None)
        else:
            self._namespaces[name] = namespace_labels(namespace)
        self._namespaces_changed = True

    def set_tier(self, name: str, tier: Tier | None) -> None:
        self._views.clear()
        if tier is None:
            self._tiers.pop(name, None)
        else:
            self._tiers[name] = tier
        self._dirty_interfaces |= set(self._interfaces)

    def set_profile(self, name: str, profile: Profile | None) -> None:
        self._views.clear()
        old = self._profile_rules.pop(name, None)
        self._profiles.pop(name, None)
        compiled = None
        if profile is not None:
            self._profiles[name] = profile
            rules = {"Ingress": profile.spec.ingress, "Egress": profile.spec.egress}
            compiled = CompiledRules("prof", name, {d: r for d, r in rules.items() if r}, None, None, self._observe)
            self._profile_rules[name] = compiled
            self._claim(compiled)
        if old:
            self._release(old, keep=compiled)
        for key, endpoint in self._endpoints.items():
            if name in endpoint.profiles:
                self._reindex(key)
                if key in self._local:
                    self._dirty_interfaces.add(self._local[key])

    def set_policy(self, key: str, policy: Policy | None) -> None:
        self._views.clear()
        self._policy_sources.pop(key, None)
        self.errors.pop(key, None)
        compiled = None
        if policy is not None:
            self._policy_sources[key] = policy
            broken = self._quarantined.get(key)
            try:
                compiled = CompiledPolicy(key, policy, broken, self._observe)
            except Exception as exc:
                log.error("policy %s cannot be compiled, its endpoints fail closed: %s", key, exc)
                broken = f"cannot compile: {exc}"
                compiled = CompiledPolicy(key, policy, broken, self._observe)
            if broken:
                self.errors[key] = broken
            self._claim(compiled)  # before releasing the old version: sets both use stay as they are
        old = self._policies.pop(key, None)
        if old:
            self._release(old, keep=compiled)
            self._selection_users[old.applies].discard(key)
            if not self._selection_users[old.applies]:
                del self._selection_users[old.applies]
            self._change_applied(self._members.get(old.applies, ()), {key}, add=False)
        if compiled:
            self._policies[key] = compiled
            self._selection_users[compiled.applies].add(key)
            self._change_applied(self._members.get(compiled.applies, ()), {key}, add=True)

    def set_pool(self, name: str, pool: IPPool | None) -> None:
        """IPPools decide outgoing NAT: which sources are masqueraded, which destinations never."""
        if pool is None:
            self._pools.pop(name, None)
        else:
            self._pools[name] = pool
        self._pools_changed = True

    def quarantine(self, key: str, reason: str) -> None:
        """Compile a policy as drop-all (the kernel refused it): its endpoints fail closed."""
        self._quarantined[key] = reason
        if key in self._policy_sources:
            self.set_policy(key, self._policy_sources[key])

    # ---- output -------------------------------------------------------------------------

    def ruleset(self) -> Ruleset:
        """The desired ruleset, brought up to date with every change since the last call."""
        self._update_members()
        for spec in self._dirty_specs:
            users = self._spec_users.get(spec)
            if not users:
                continue
            elements = self._elements(spec)
            interval = spec.port_name is None and needs_interval(elements)
            name, was = spec.set_name(interval), self._set_names.get(spec)
            if name != was:
                if was is not None:
                    del self._ruleset.sets[was]
                self._set_names[spec] = name
                self._unwritten |= users
            self._ruleset.sets[name] = SetDef(spec.nft_type, interval, elements)
        self._dirty_specs.clear()
        for compiled in self._unwritten:
            self._ruleset.chains.update(compiled.renamed(self._set_names))
        self._unwritten.clear()
        for interface in self._dirty_interfaces:
            self._build_interface(interface)
        if self._sources_changed or KNOWN_INTERFACES not in self._ruleset.sets:
            self._ruleset.sets.update(interface_sets(self._ruleset.sources))
            self._sources_changed = False
        self._dirty_interfaces.clear()
        if self._pools_changed:
            for name, (element_type, cidrs) in nat_set_elements(self._pools.values()).items():
                self._ruleset.sets[name] = SetDef(element_type, True, cidrs)
            self._ruleset.chains[NAT_CHAIN] = nat_rules()
            self._pools_changed = False
        return self._ruleset

    # ---- internals ----------------------------------------------------------------------

    def _reindex(self, key: str) -> None:
        self.index.put(key, self._item(key))
        self._dirty_items.add(key)
        networks = (
            self._endpoints[key].networks
            if key in self._endpoints
            else self._netsets[key].spec.nets
            if key in self._netsets
            else None
        )
        if networks is None:
            self._ipv4.pop(key, None)
            self._ipv6.pop(key, None)
        elif all(":" not in n for n in networks):
            self._ipv4[key] = tuple(networks)  # the same tuple when it is one already
            self._ipv6.pop(key, None)
        else:
            self._ipv4[key] = tuple(n for n in networks if ":" not in n)
            self._ipv6[key] = tuple(n for n in networks if ":" in n)

    def _item(self, key: str) -> Item | None:
        if key in self._endpoints:
            ep = self._endpoints[key]
            labels = {}
            for profile in ep.profiles:
                if profile in self._profiles:
                    labels.update(self._profiles[profile].spec.labelsToApply)
            labels.update(ep.labels)
            effective = endpoint_labels(labels, ep.namespace, ep.orchestrator, ep.service_account)
            return Item(shared_labels(effective), ep.namespace)
        if key in self._netsets:
            netset = self._netsets[key]
            labels = dict(netset.metadata.labels)
            if netset.namespace:
                labels[NAMESPACE_LABEL] = netset.namespace
            return Item(labels, netset.namespace)
        return None

    def _claim(self, compiled: CompiledRules) -> None:
        """Its chains are written by the next ruleset(), when its sets' names are known."""
        self._unwritten.add(compiled)
        for spec in compiled.specs:
            users = self._spec_users.setdefault(spec, set())
            users.add(compiled)
            if len(users) == 1:
                self._dirty_specs.add(spec)
                if spec.selection:
                    self._specs_by_selection[spec.selection].add(spec)

    def _release(self, compiled: CompiledRules, keep: CompiledRules | None = None) -> None:
        """Drop what compiled holds; with keep (its successor, already claimed), the chains
        they share by name stay."""
        self._unwritten.discard(compiled)
        kept = {name for name, _ in keep.chains.values()} if keep else set()
        for name, _ in compiled.chains.values():
            if name not in kept:
                self._ruleset.chains.pop(name, None)
        for spec in compiled.specs:
            users = self._spec_users[spec]
            users.discard(compiled)
            if not users:
                del self._spec_users[spec]
                set_name = self._set_names.pop(spec, None)
                if set_name is not None:
                    del self._ruleset.sets[set_name]
                if spec.selection:
                    self._specs_by_selection[spec.selection].discard(spec)
                    if not self._specs_by_selection[spec.selection]:
                        del self._specs_by_selection[spec.selection]

    def _change_applied(self, endpoints, policies: set[str], add: bool) -> None:
        for ep in endpoints:
            if ep in self._local:
                if add:
                    self._applied[ep] |= policies
                else:
                    self._applied[ep] -= policies
                self._dirty_interfaces.add(self._local[ep])

    def _update_members(self) -> None:
        used = set(self._specs_by_selection) | set(self._selection_users)
        for selection in set(self._members) - used:
            del self._members[selection]
        bulk = len(self._dirty_items) > BULK
        for selection in used:
            if bulk or selection not in self._members or (self._namespaces_changed and selection.namespace_selector):
                self._set_members(selection, self._evaluate(selection))
            elif self._dirty_items:
                members = self._members[selection]
                now = {
                    key
                    for key in self._dirty_items
                    if key in self.index.items and selection.matches(self.index.items[key], self._namespaces)
                }
                if now or members & self._dirty_items:
                    self._set_members(selection, (members - self._dirty_items) | now)
        self._dirty_items.clear()
        self._namespaces_changed = False

    def _evaluate(self, selection: Selection) -> set[str]:
        ids = self.index.select(parse_selector(selection.selector))
        scope = selection.scoped_namespaces(self._namespaces, self.index.namespaces())
        return ids if scope is None else self.index.in_namespaces(ids, scope)

    def _set_members(self, selection: Selection, members: set[str]) -> None:
        old = self._members.get(selection, set())
        self._members[selection] = members
        touched = (members ^ old) | (members & self._dirty_items)
        if not touched:
            return
        self._dirty_specs |= self._specs_by_selection.get(selection, set())
        users = self._selection_users.get(selection)
        if users:
            self._change_applied(members & touched, users, add=True)
            self._change_applied(old - members, users, add=False)

    def _addresses(self, key: str, family: int) -> tuple[str, ...]:
        return self._ipv6.get(key, ()) if family == 6 else self._ipv4[key]

    def _elements(self, spec: SetSpec) -> frozenset:
        if spec.selection is None:
            return collapse(spec.nets)
        members = self._members.get(spec.selection, ())
        if spec.port_name is None:
            return collapse(n for key in members for n in self._addresses(key, spec.family))
        elements: set[tuple] = set()  # (host, protocol, port)
        for key in members:
            endpoint = self._endpoints.get(key)
            if endpoint is None:
                continue
            ports = [
                port for name, protocol, port in endpoint.ports if name == spec.port_name and protocol == spec.protocol
            ]
            hosts = [
                n.rpartition("/")[0]
                for n in self._addresses(key, spec.family)
                if n.endswith("/32" if spec.family == 4 else "/128")
            ]
            elements.update((host, spec.protocol, port) for host in hosts for port in ports)
        return frozenset(elements)

    def _build_interface(self, interface: str) -> None:
        keys = claimants(self._interfaces, interface)
        for table, direction in ((self._ruleset.to_workload, "Ingress"), (self._ruleset.from_workload, "Egress")):
            old = table.pop(interface, None)
            if old is not None:
                self._chain_users[old] -= 1
                if not self._chain_users[old]:
                    del self._chain_users[old], self._ruleset.chains[old]
            if not keys:
                continue
            owner = min(keys)  # two endpoints claiming one interface: the smallest key wins, whatever the order
            view, name = self._view(owner, direction)
            if name not in self._chain_users:
                self._ruleset.chains[name] = endpoint_chain(view, direction, self._observe)
            self._chain_users[name] = self._chain_users.get(name, 0) + 1
            table[interface] = name
        sources = self._endpoints[min(keys)].networks if keys else None
        if self._ruleset.sources.get(interface) != sources:
            self._sources_changed = True
            if sources is None:
                del self._ruleset.sources[interface]
            else:
                self._ruleset.sources[interface] = sources

    def _view(self, key: str, direction: str) -> tuple[EndpointView, str]:
        """An endpoint's view and chain name, cached by what decides them: endpoints under the
        same policies and profiles share it (the cache is dropped when policies, tiers or
        profiles change)."""
        cache_key = (direction, frozenset(self._applied.get(key, ())), self._endpoints[key].profiles)
        found = self._views.get(cache_key)
        if found is None:
            if len(self._views) > 4 * len(self._chain_users) + 64:
                self._views.clear()
            view = EndpointView(
                self._policy_chains(cache_key[1], direction),
                self._profile_chains(self._endpoints[key], direction),
                self._tier_names(cache_key[1], direction) if self._observe != NO_OBSERVE else (),
            )
            found = self._views[cache_key] = (view, view.chain_name(direction))
        return found

    def _profile_chains(self, endpoint: EndpointFacts, direction: str) -> tuple[str, ...]:
        return tuple(
            self._profile_rules[p].chains[direction][0]
            for p in endpoint.profiles
            if p in self._profile_rules and direction in self._profile_rules[p].chains
        )

    def _policy_chains(self, keys: frozenset[str], direction: str) -> tuple:
        """((tier default action, (policy chain, ...)), ...) in evaluation order, for one direction."""
        tiers: dict[str, list[CompiledPolicy]] = defaultdict(list)
        for key in keys:
            policy = self._policies[key]
            if direction in policy.chains:
                tiers[policy.tier].append(policy)
        return tuple(
            (
                self._tier_default(tier),
                tuple(p.chains[direction][0] for p in sorted(tiers[tier], key=lambda p: p.sort_key)),
            )
            for tier in sorted(tiers, key=self._tier_sort_key)
        )

    def _tier_names(self, keys: frozenset[str], direction: str) -> tuple[str, ...]:
        """The tiers of _policy_chains, in the same order: what a default drop's log names."""
        tiers = {self._policies[key].tier for key in keys if direction in self._policies[key].chains}
        return tuple(sorted(tiers, key=self._tier_sort_key))

    def _tier_sort_key(self, name: str):
        tier = self._tiers.get(name)
        order = tier.spec.order if tier and tier.spec.order is not None else float("inf")
        return (order, name)

    def _tier_default(self, name: str) -> str:
        tier = self._tiers.get(name)
        return tier.spec.defaultAction if tier else "Deny"
