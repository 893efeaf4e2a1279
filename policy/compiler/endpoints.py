"""Endpoint chains: tiers of policies in order, then profiles.  Endpoints whose policies and
profiles are the same share one chain, so 10,000 endpoints under 1,000 policies need about
as many chains as there are distinct policy combinations, not 20,000.

A policy chain marks Allow and Pass and returns; the endpoint chain reads the mark: accepted
ends the evaluation, passed skips to the next tier; an applied tier's end drops (or passes).
Anti-spoofing is per interface, so it lives in the base chains (see ruleset.py)."""

import hashlib
from dataclasses import dataclass

from policy.compiler.matches import ACCEPT_MARK, PASS_MARK, clear_mark, mark_is, match

_INVALID = [match({"ct": {"key": "state"}}, ["invalid"], "in"), {"drop": None}]


@dataclass(frozen=True)
class EndpointView:
    """What an endpoint's chain in one direction depends on, and nothing else."""

    policies: tuple  # ((tier default action, (policy chain, ...)), ...) in evaluation order
    profiles: tuple[str, ...]  # profile chains with rules in this direction

    def chain_name(self, direction: str) -> str:
        digest = hashlib.sha1(repr((self.policies, self.profiles)).encode()).hexdigest()[:16]
        return f"ep-{'in' if direction == 'Ingress' else 'out'}-{digest}"


def endpoint_chain(view: EndpointView) -> tuple:
    rules = [_INVALID, [clear_mark(ACCEPT_MARK | PASS_MARK)]]
    for default_action, chains in view.policies:
        for chain in chains:
            rules.append([mark_is(PASS_MARK, False), {"jump": {"target": chain}}])
            rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
        if default_action == "Deny":
            rules.append([mark_is(PASS_MARK, False), {"drop": None}])
        rules.append([clear_mark(PASS_MARK)])
    for chain in view.profiles:
        rules.append([{"jump": {"target": chain}}])
        rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
    if view.profiles:
        rules.append([{"drop": None}])
    return tuple(rules)
