"""Calico v3 fields Calyx refuses, with why: reported as "not supported by Calyx: <why>", never as
an unknown field, so a Calico user learns the field was understood and what to do instead.
docs/policy.md lists every Calico field of every kind with its status."""

_HOST_ENDPOINTS = "it applies to host endpoints, which Calyx does not have"
_NO_TUNNELS = "Calyx routes without tunnels"
_RULE = {
    "http": "HTTP matches need an application-layer proxy; Calyx filters at layers 3 and 4",
    "services": "Calyx has no Kubernetes Services to match; select the endpoints behind them",
}
NOT_SUPPORTED: dict[str, dict[str, str]] = {
    "NetworkPolicy": _RULE,
    "GlobalNetworkPolicy": _RULE,
    "Profile": _RULE,
    "WorkloadEndpoint": {
        "ipNATs": "Calyx has no 1:1 NAT (floating IPs) for workloads",
        "allowSpoofedSourcePrefixes": "a workload may send only from its own addresses (anti-spoofing)",
        "qosControls": "Calyx does not shape workload traffic",
    },
    "Node": {
        "ipv4VXLANTunnelAddr": _NO_TUNNELS,
        "ipv6VXLANTunnelAddr": _NO_TUNNELS,
        "vxlanTunnelMACAddr": _NO_TUNNELS,
        "vxlanTunnelMACAddrV6": _NO_TUNNELS,
        "ipv4IPIPTunnelAddr": _NO_TUNNELS,
        "wireguard": "Calyx does not encrypt traffic between nodes",
        "interfaces": "calyx-bgp records the node's BGP addresses only (spec.bgp)",
    },
    "IPPool": {
        "namespaceSelector": "Calyx's IPAM picks pools by node (nodeSelector), not by namespace",
    },
    "BGPPeer": {
        "keepaliveTime": "ExaBGP keeps alive at a third of the hold time (calyx-bgp --hold-time)",
        "numAllowedLocalASNumbers": "ExaBGP 4.2 has no allowas-in",
        "reachableBy": "calyx-bgp installs no static route to a peer: it must be on a connected network",
        "filters": "Calyx has no BGPFilter kind: it announces only its own prefixes and installs what peers send",
        "localWorkloadSelector": "Calyx does not peer with workloads",
        "reversePeering": "Calyx does not peer with workloads",
    },
    "BGPConfiguration": {
        "serviceClusterIPs": "Calyx does not advertise Service addresses",
        "serviceExternalIPs": "Calyx does not advertise Service addresses",
        "serviceLoadBalancerIPs": "Calyx does not advertise Service addresses",
        "serviceLoadBalancerAggregation": "Calyx does not advertise Service addresses",
        "localWorkloadPeeringIPV4": "Calyx does not peer with workloads",
        "localWorkloadPeeringIPV6": "Calyx does not peer with workloads",
        "programClusterRoutes": "calyx-bgp always installs the routes its peers send",
        "ipv4NormalRoutePriority": "calyx-bgp's routes are told apart by protocol (77), not priority",
        "ipv6NormalRoutePriority": "calyx-bgp's routes are told apart by protocol (77), not priority",
    },
}


def not_supported(kind: str, field: str) -> str | None:
    """The message for a Calico field of `kind` Calyx refuses, or None for a truly unknown one."""
    reason = NOT_SUPPORTED.get(kind, {}).get(field)
    return f"not supported by Calyx: {reason}" if reason else None
