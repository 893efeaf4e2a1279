"""How policyctl prints resources: a table by default, wide, YAML or JSON."""

import json

from policy.model.bgp import REDACTED, BGPConfiguration, BGPPeer
from policy.model.policies import GlobalNetworkPolicy, GlobalNetworkSet, NetworkPolicy, NetworkSet, Profile, Tier
from policy.model.pools import IPPool
from policy.model.resources import Namespace, Node, Resource, WorkloadEndpoint
from policy.model.yaml_codec import dump_all


def _labels(resource: Resource) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(resource.metadata.labels.items())) or "<none>"


# Per kind: (heading, value) for the default table, then the extra ones -o wide adds.
COLUMNS = {
    WorkloadEndpoint: (
        [
            ("NODE", lambda r: r.spec.node),
            ("INTERFACE", lambda r: r.spec.interfaceName),
            ("NETWORKS", lambda r: ",".join(r.spec.ipNetworks) or "<none>"),
        ],
        [
            ("WORKLOAD", lambda r: r.spec.workload or ""),
            ("PROFILES", lambda r: ",".join(r.spec.profiles)),
            ("LABELS", _labels),
        ],
    ),
    Node: (
        [
            ("ASN", lambda r: str(r.spec.bgp.asNumber or "") if r.spec.bgp else ""),
            ("IPV4", lambda r: (r.spec.bgp.ipv4Address or "") if r.spec.bgp else ""),
            ("IPV6", lambda r: (r.spec.bgp.ipv6Address or "") if r.spec.bgp else ""),
        ],
        [("LABELS", _labels)],
    ),
    Namespace: ([("LABELS", _labels)], []),
    Tier: ([("ORDER", lambda r: _order(r.spec.order)), ("DEFAULT", lambda r: r.spec.defaultAction)], []),
    NetworkSet: ([("NETS", lambda r: ",".join(r.spec.nets) or "<none>")], [("LABELS", _labels)]),
    GlobalNetworkSet: ([("NETS", lambda r: ",".join(r.spec.nets) or "<none>")], [("LABELS", _labels)]),
    Profile: (
        [("INGRESS", lambda r: str(len(r.spec.ingress))), ("EGRESS", lambda r: str(len(r.spec.egress)))],
        [("LABELS-TO-APPLY", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r.spec.labelsToApply.items())))],
    ),
    IPPool: (
        [
            ("CIDR", lambda r: r.spec.cidr),
            ("BLOCK", lambda r: f"/{r.spec.blockSize}"),
            ("DISABLED", lambda r: str(r.spec.disabled).lower()),
        ],
        [
            ("SELECTOR", lambda r: r.spec.nodeSelector),
            ("STRICT", lambda r: str(r.spec.strictAffinity).lower()),
            ("BGP-EXPORT", lambda r: str(not r.spec.disableBGPExport).lower()),
        ],
    ),
    BGPConfiguration: (
        [
            ("ASN", lambda r: str(r.spec.asNumber or "")),
            (
                "MESH",
                lambda r: "" if r.spec.nodeToNodeMeshEnabled is None else str(r.spec.nodeToNodeMeshEnabled).lower(),
            ),
        ],
        [("ADVERTISEMENTS", lambda r: ",".join(a.cidr for a in r.spec.prefixAdvertisements))],
    ),
    BGPPeer: (
        [
            ("PEER", lambda r: r.spec.peerIP or r.spec.peerSelector),
            ("ASN", lambda r: str(r.spec.asNumber or "")),
            ("NODE", lambda r: r.spec.node or r.spec.nodeSelector or "(all)"),
        ],
        [("KEEP-NEXT-HOP", lambda r: str(r.spec.keepOriginalNextHop).lower())],
    ),
}
_POLICY_COLUMNS = (
    [
        ("TIER", lambda r: r.spec.tier),
        ("ORDER", lambda r: _order(r.spec.order)),
        ("SELECTOR", lambda r: r.spec.selector),
    ],
    [
        ("TYPES", lambda r: ",".join(r.spec.types)),
        ("INGRESS", lambda r: str(len(r.spec.ingress))),
        ("EGRESS", lambda r: str(len(r.spec.egress))),
    ],
)
COLUMNS[NetworkPolicy] = COLUMNS[GlobalNetworkPolicy] = _POLICY_COLUMNS


def _order(order: float | None) -> str:
    if order is None:
        return "<none>"
    return str(int(order)) if order == int(order) else str(order)


# Per kind: the paths of fields that hold secrets, printed as <redacted> unless asked for.
SECRETS: dict[type[Resource], list[tuple[str, ...]]] = {BGPPeer: [("spec", "password")]}
CHANGED = f"{REDACTED} (changed)"


def to_document(resource: Resource) -> dict:
    """The resource as stored, secrets included (what writes and comparisons use)."""
    return resource.model_dump(mode="json", exclude_none=True)


def redacted(resource: Resource, document: dict, other: Resource | None = None) -> dict:
    """`document` (of `resource`) with each secret replaced by <redacted>, or by
    "<redacted> (changed)" where `other` (the same resource, another version) has a different
    value, so a diff still shows that a secret changed."""
    for path in SECRETS.get(type(resource), []):
        parent: object = document
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get(path[-1]), str):
            continue  # absent, or a reference (secretKeyRef), which is no secret
        changed = other is not None and _value_at(other, path) != _value_at(resource, path)
        parent[path[-1]] = CHANGED if changed else REDACTED
    return document


def _value_at(resource: Resource, path: tuple[str, ...]):
    value: object = resource
    for part in path:
        value = getattr(value, part, None)
    return value


def shown(resource: Resource, show_secrets: bool = False) -> dict:
    """The document policyctl prints for a resource."""
    document = to_document(resource)
    return document if show_secrets else redacted(resource, document)


def render_table(
    model: type[Resource],
    resources: list[Resource],
    wide: bool,
    all_namespaces: bool,
    status: dict[str, str] | None = None,
) -> str:
    basic, extra = COLUMNS[model]
    columns = [("NAME", lambda r: r.name)] + basic + (extra if wide else [])
    if status is not None:
        columns.append(("STATUS", lambda r: status[r.name + (r.namespace or "")]))
    if model.namespaced and all_namespaces:
        columns.insert(0, ("NAMESPACE", lambda r: r.namespace))
    rows = [[heading for heading, _ in columns]] + [[value(r) for _, value in columns] for r in resources]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def render(
    model: type[Resource],
    resources: list[Resource],
    fmt: str,
    all_namespaces: bool,
    single: bool,
    status: dict[str, str] | None = None,
    show_secrets: bool = False,
) -> str:
    """Tables never hold secrets; YAML and JSON show them as <redacted> unless show_secrets."""
    if fmt == "yaml":
        return dump_all([shown(r, show_secrets) for r in resources]).rstrip()
    if fmt == "json":
        docs = [shown(r, show_secrets) for r in resources]
        return json.dumps(docs[0] if single else {"kind": "List", "items": docs}, indent=2)
    return render_table(model, resources, wide=fmt == "wide", all_namespaces=all_namespaces, status=status)
