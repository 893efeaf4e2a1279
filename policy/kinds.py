"""Kind lookup and the etcd key layout: <prefix>/v1/<plural>/[<namespace>/]<name>."""

from policy.bgp_resources import BGPConfiguration, BGPPeer
from policy.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.pools import IPPool
from policy.resources import Namespace, Node, Resource, WorkloadEndpoint

KINDS: dict[str, type[Resource]] = {
    model.model_fields["kind"].default: model
    for model in (Node, WorkloadEndpoint, Namespace, Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
                  GlobalNetworkSet, Profile, IPPool, BGPConfiguration, BGPPeer)
}

DEFAULT_PREFIX = "/calyx"
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


def kind_prefix(prefix: str, model: type[Resource], namespace: str | None = None) -> str:
    base = f"{prefix.rstrip('/')}/v1/{model.plural}/"
    if model.namespaced and namespace:
        return f"{base}{namespace}/"
    return base


def resource_key(prefix: str, model: type[Resource], name: str, namespace: str | None = None) -> str:
    if model.namespaced:
        return f"{kind_prefix(prefix, model)}{namespace or DEFAULT_NAMESPACE}/{name}"
    return f"{kind_prefix(prefix, model)}{name}"


def key_of(prefix: str, resource: Resource) -> str:
    return resource_key(prefix, type(resource), resource.name, resource.namespace)


def parse_key(prefix: str, key: str) -> tuple[type[Resource], str | None, str]:
    """Split a key back into (kind, namespace, name); ValueError when it is not one of ours."""
    root = f"{prefix.rstrip('/')}/v1/"
    if not key.startswith(root):
        raise ValueError(f"key {key!r} is not under {root!r}")
    parts = key[len(root):].split("/")
    for model in KINDS.values():
        if parts[0] != model.plural:
            continue
        if model.namespaced and len(parts) == 3 and all(parts[1:]):
            return model, parts[1], parts[2]
        if not model.namespaced and len(parts) == 2 and parts[1]:
            return model, None, parts[1]
        break
    raise ValueError(f"key {key!r} is not a resource key")
