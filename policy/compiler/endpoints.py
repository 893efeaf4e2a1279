"""Per-endpoint chains: anti-spoofing, then tiers of policies in order, then profiles.

A policy chain marks Allow and Pass and returns; the endpoint chain reads the mark: accepted
ends the evaluation, passed skips to the next tier; an applied tier's end drops (or passes)."""

from dataclasses import dataclass

from policy.compiler.matches import ACCEPT_MARK, PASS_MARK, clear_mark, mark_is, match
from policy.compiler.ruleset import element

_NFPROTO = {"meta": {"key": "nfproto"}}
_INVALID = [match({"ct": {"key": "state"}}, ["invalid"], "in"), {"drop": None}]


@dataclass(frozen=True)
class EndpointView:
    addresses: tuple[str, ...]
    policies: dict[str, tuple]  # direction -> ((tier default action, (policy chain, ...)), ...)
    profiles: dict[str, tuple[str, ...]]  # direction -> profile chains with rules in that direction


def _anti_spoofing(addresses: tuple[str, ...]) -> list[list]:
    """A workload may only send from its own addresses; a family it has none of, it cannot send."""
    rules = []
    for family, proto in ((4, "ip"), (6, "ip6")):
        own = sorted(a for a in addresses if (":" in a) == (family == 6))
        source = {"payload": {"protocol": proto, "field": "saddr"}}
        if own:
            rules.append([match(source, {"set": [element(a.removesuffix("/32") if family == 4 else a.removesuffix("/128"))
                                                 for a in own]}, "!="), {"drop": None}])
        else:
            rules.append([match(_NFPROTO, f"ipv{family}"), {"drop": None}])
    return rules


def endpoint_chain(view: EndpointView, direction: str) -> tuple:
    rules = [_INVALID, [clear_mark(ACCEPT_MARK | PASS_MARK)]]
    if direction == "Egress":
        rules += _anti_spoofing(view.addresses)
    for default_action, chains in view.policies[direction]:
        for chain in chains:
            rules.append([mark_is(PASS_MARK, False), {"jump": {"target": chain}}])
            rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
        if default_action == "Deny":
            rules.append([mark_is(PASS_MARK, False), {"drop": None}])
        rules.append([clear_mark(PASS_MARK)])
    profiles = view.profiles[direction]
    for chain in profiles:
        rules.append([{"jump": {"target": chain}}])
        rules.append([mark_is(ACCEPT_MARK, True), {"return": None}])
    if profiles:
        rules.append([{"drop": None}])
    return tuple(rules)
