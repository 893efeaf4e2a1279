"""Every resource kind by name, and the lookup that accepts kinds as users type them."""

from policy.model.bgp import BGPConfiguration, BGPPeer
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.pools import IPPool
from policy.model.resources import Namespace, Node, Resource, WorkloadEndpoint

KINDS: dict[str, type[Resource]] = {
    model.model_fields["kind"].default: model
    for model in (
        Node,
        WorkloadEndpoint,
        Namespace,
        Tier,
        NetworkPolicy,
        GlobalNetworkPolicy,
        NetworkSet,
        GlobalNetworkSet,
        Profile,
        IPPool,
        BGPConfiguration,
        BGPPeer,
    )
}

DEFAULT_NAMESPACE = "default"


class UnknownKind(ValueError):
    pass


def resolve_kind(word: str) -> type[Resource]:
    """Accept a kind as users type it: `WorkloadEndpoint`, `workloadendpoints`, `wep`."""
    lowered = word.lower()
    for model in KINDS.values():
        names = {model.model_fields["kind"].default.lower(), model.plural, *model.aliases}
        if lowered in names:
            return model
    known = ", ".join(sorted(KINDS))
    raise UnknownKind(f"unknown kind {word!r} (known kinds: {known})")
