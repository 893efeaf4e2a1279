"""Every etcd key layout Calyx uses, in one place.

<prefix>/v1/<plural>/[<namespace>/]<name>    resources (the tree the daemons watch)
<prefix>/v1/ipam/blocks/<cidr, '/' as '-'>    IPAM blocks
<prefix>/v1/ipam/handles/<handle>             IPAM handles
<prefix>/status/<node>/<topic>                per-node status (bgp, policies), outside the watched
                                              tree so no daemon receives another node's writes"""

from policy.model.kinds import DEFAULT_NAMESPACE, KINDS
from policy.model.resources import Resource

DEFAULT_PREFIX = "/calyx"


def resources_root(prefix: str) -> str:
    """The tree every daemon watches: resources and IPAM, never status."""
    return f"{prefix.rstrip('/')}/v1/"


def kind_prefix(prefix: str, model: type[Resource], namespace: str | None = None) -> str:
    base = f"{resources_root(prefix)}{model.plural}/"
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
    root = resources_root(prefix)
    if not key.startswith(root):
        raise ValueError(f"key {key!r} is not under {root!r}")
    parts = key[len(root) :].split("/")
    for model in KINDS.values():
        if parts[0] != model.plural:
            continue
        if model.namespaced and len(parts) == 3 and all(parts[1:]):
            return model, parts[1], parts[2]
        if not model.namespaced and len(parts) == 2 and parts[1]:
            return model, None, parts[1]
        break
    raise ValueError(f"key {key!r} is not a resource key")


def ipam_blocks_prefix(prefix: str) -> str:
    return f"{resources_root(prefix)}ipam/blocks/"


def ipam_block_key(prefix: str, cidr: str) -> str:
    return f"{ipam_blocks_prefix(prefix)}{cidr.replace('/', '-')}"


def ipam_handles_prefix(prefix: str) -> str:
    return f"{resources_root(prefix)}ipam/handles/"


def ipam_handle_key(prefix: str, handle: str) -> str:
    return f"{ipam_handles_prefix(prefix)}{handle}"


def status_root(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/status/"


def status_key(prefix: str, node: str, topic: str) -> str:
    """`topic` is `bgp` (calyx-bgp's sessions) or `policies` (felix's drop-all policies)."""
    return f"{status_root(prefix)}{node}/{topic}"


def parse_status_key(prefix: str, key: str) -> tuple[str, str] | None:
    """(node, topic) of a status key, None for anything else."""
    root = status_root(prefix)
    parts = key[len(root) :].split("/") if key.startswith(root) else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None
