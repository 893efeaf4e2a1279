"""Endpoint chains: tiers of policies in order, then profiles.  Endpoints whose policies and
profiles are the same share one chain, so 10,000 endpoints under 1,000 policies need about
as many chains as there are distinct policy combinations, not 20,000.

A policy chain marks Allow and Pass and returns; the endpoint chain reads the mark: accepted
ends the evaluation, passed skips to the next tier; an applied tier's end drops (or passes).
Anti-spoofing is per interface, so it lives in the base chains (see ruleset.py)."""

import hashlib
from dataclasses import dataclass

from policy.compiler.matches import ACCEPT_MARK, PASS_MARK, clear_mark, mark_is, match
from policy.compiler.observe import NO_OBSERVE, Observe

_INVALID = [match({"ct": {"key": "state"}}, ["invalid"], "in"), {"drop": None}]


@dataclass(frozen=True)
class EndpointView:
    """What an endpoint's chain in one direction depends on, and nothing else."""

    policies: tuple  # ((tier default action, (policy chain, ...)), ...) in evaluation order
    profiles: tuple[str, ...]  # profile chains with rules in this direction
    tiers: tuple[str, ...] = ()  # the names of policies' tiers, only when default drops are logged

    def chain_name(self, direction: str) -> str:
        named = (self.policies, self.profiles, self.tiers) if self.tiers else (self.policies, self.profiles)
        digest = hashlib.sha1(repr(named).encode()).hexdigest()[:16]
        return f"ep-{'in' if direction == 'Ingress' else 'out'}-{digest}"


def endpoint_chain(view: EndpointView, direction: str = "Ingress", observe: Observe = NO_OBSERVE) -> tuple:
    rules = [_INVALID, [clear_mark(ACCEPT_MARK | PASS_MARK)]]
    for position, (default_action, chains) in enumerate(view.policies):
        for chain in chains:
            rules.append([mark_is(PASS_MARK, False), {"jump": {"target": chain}}])
            rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
        if default_action == "Deny":
            tier = view.tiers[position] if view.tiers else ""
            rules.append([mark_is(PASS_MARK, False), *observe.drop(direction, f"tier/{tier}")])
        rules.append([clear_mark(PASS_MARK)])
    for chain in view.profiles:
        rules.append([{"jump": {"target": chain}}])
        rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
    if view.profiles:
        rules.append(observe.drop(direction, "profiles"))
    return tuple(rules)
