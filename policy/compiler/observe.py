"""What the compiler adds to a ruleset so verdicts can be seen: an nflog group on the drops that
policy decides (denied flows, read by felix/nflog.py) and a counter on every policy rule.

The default, `Observe()`, adds nothing: the ruleset is byte for byte the one without it. The
log prefix and the counter comment name what decided, in one format written and read here:

    calyx-rule <direction> <rule index or -> <origin>

origin is a policy's key below `<prefix>/v1/` (`networkpolicies/shop/db-only`), `profiles/<name>`
for a profile's rule, `tier/<name>` for a tier's default Deny, or `profiles` for the drop after
the last profile. The index comes before the origin so that a prefix nft cuts at 127 characters
loses the end of a long name, never the rule."""

from dataclasses import dataclass

PREFIX_MAX = 127  # nft's log prefix and our comments: NF_LOG_PREFIXLEN - 1
_TAG = "calyx-rule"
_VERDICT_LENGTH = {"Allow": 2, "Pass": 2, "Deny": 1, "Log": 1}  # trailing statements of matches.verdict


def policy_origin(key: str) -> str:
    """`/calyx/v1/networkpolicies/shop/x` -> `networkpolicies/shop/x` (the prefix says nothing)."""
    return key.partition("/v1/")[2] or key


def origin_text(direction: str, index: int | None, origin: str) -> str:
    return f"{_TAG} {direction.lower()} {'-' if index is None else index} {origin}"[:PREFIX_MAX]


@dataclass(frozen=True)
class Origin:
    """What a log prefix or counter comment names."""

    direction: str  # ingress | egress
    rule: int | None  # the rule's index in that direction's rules; None for a default
    origin: str

    @property
    def reason(self) -> str:
        """rule, profile-rule, tier-default or profile-default: the words `policyctl explain` uses."""
        if self.origin == "profiles":
            return "profile-default"
        if self.origin.startswith("tier/"):
            return "tier-default"
        return "profile-rule" if self.origin.startswith("profiles/") else "rule"


def parse_origin(text: str) -> Origin | None:
    """The inverse of origin_text; None for a prefix that is not ours."""
    parts = text.rstrip("\0").split(" ", 3)
    if len(parts) != 4 or parts[0] != _TAG or parts[1] not in ("ingress", "egress"):
        return None
    _, direction, index, origin = parts
    if index == "-":
        return Origin(direction, None, origin)
    if not index.isdigit() or not origin:
        return None
    return Origin(direction, int(index), origin)


@dataclass(frozen=True)
class Observe:
    deny_log_group: int | None = None  # nflog group of the drops policy decides; None: silent drops
    counters: bool = False  # a counter on every policy rule and default drop (costs per packet)

    def rules(self, compiled: list[list[dict]], action: str, direction: str, index: int, origin: str) -> list[list]:
        """The nft rules of one policy rule, with the log and counter asked for."""
        if not self.counters and (self.deny_log_group is None or action != "Deny"):
            return compiled
        cut = _VERDICT_LENGTH[action]
        text = origin_text(direction, index, origin)
        return [self._tail(rule[:-cut], rule[-cut:], text) for rule in compiled]

    def drop(self, direction: str, origin: str) -> list[dict]:
        """A default drop's statements (after its matches)."""
        return self._tail([], [{"drop": None}], origin_text(direction, None, origin))

    def _tail(self, matches: list[dict], verdict: list[dict], text: str) -> list[dict]:
        if self.deny_log_group is not None and verdict == [{"drop": None}]:
            verdict = [{"log": {"prefix": text, "group": self.deny_log_group}}, *verdict]
        if self.counters:
            return [*matches, {"counter": None}, *verdict, {"comment": text}]
        return [*matches, *verdict]


NO_OBSERVE = Observe()
