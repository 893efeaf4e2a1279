"""calyx-ipam: Calyx IPAM (policy/datastore/ipam.py) as a CNI IPAM plugin, so calyx-cni, and
other plugins (ptp, bridge), take workload addresses from IPPools.

The handle is `<network name>.<container id>`: ADD for a handle that holds addresses already
(an ADD killed half-way, then retried) returns those instead of leaking them; DEL releases
the handle and is a no-op for one that is gone; GC releases this network's handles whose
container is not among the valid attachments, if they are this node's."""

import ipaddress
import logging
from collections.abc import Callable

from felix.cni.config import IpamConf, NetConf
from felix.cni.identity import ipam_handle
from felix.cni.node import datastore_error, node_name
from felix.cni.protocol import CHECK_FAILED, INVALID_CONFIG, NOT_AVAILABLE, CniError, IPConfig, Request, Result, Route
from policy.datastore.ipam import IPAM, IPAMError
from policy.datastore.kv import KV, KVError
from policy.datastore.store import NotFound, ResourceStore
from policy.model.pools import IPPool
from policy.model.resources import Node, WorkloadEndpoint
from policy.model.selector import parse_selector

log = logging.getLogger(__name__)

POOL_EXHAUSTED = 101


class CalyxIpam:
    def __init__(self, open_kv: Callable[[NetConf], KV]):
        self.open_kv = open_kv

    def run(self, request: Request, conf: NetConf, stdin: bytes) -> dict | None:
        if conf.ipam is None:
            raise CniError(INVALID_CONFIG, "invalid network configuration: ipam is missing")
        handler = {"ADD": self.add, "DEL": self.delete, "CHECK": self.check, "STATUS": self.status, "GC": self.gc}
        kv = self.open_kv(conf)
        try:
            return handler[request.command](request, conf, conf.ipam, IPAM(kv, conf.etcd_prefix))
        except KVError as exc:
            if isinstance(exc, IPAMError):
                raise CniError(POOL_EXHAUSTED, str(exc)) from None
            raise datastore_error(exc, conf, f"IPAM {request.command}") from None
        finally:
            kv.close()

    # -- ADD ------------------------------------------------------------------------------
    def add(self, request: Request, conf: NetConf, ipam_conf: IpamConf, ipam: IPAM) -> dict:
        node = node_name(conf)
        handle = ipam_handle(conf.name, request.container_id)
        record = ipam.handle(handle)
        held: dict[int, str] = {ipaddress.ip_address(a).version: a for a in (record.addresses if record else [])}
        pools = [p for p in ipam.pools() if not p.spec.disabled]
        labels = self._node_labels(ipam, node)
        wanted = []
        if ipam_conf.assign_ipv4 is not False:
            wanted.append((4, self._candidates(pools, ipam_conf.ipv4_pools, 4, node, labels)))
        v6 = self._candidates(pools, ipam_conf.ipv6_pools, 6, node, labels)
        if ipam_conf.assign_ipv6 or (ipam_conf.assign_ipv6 is None and v6):
            wanted.append((6, v6))
        if not wanted:
            raise CniError(INVALID_CONFIG, "invalid network configuration: ipam assigns neither IPv4 nor IPv6")
        addresses = []
        try:
            for version, candidates in wanted:
                addresses.append(held.get(version) or self._allocate(ipam, node, handle, version, candidates))
        except BaseException:
            if addresses and not record:
                ipam.release_handle(handle)
            raise
        if record:
            log.info(
                "IPAM ADD %s: handle held %s already (an earlier ADD): reused", handle, ", ".join(record.addresses)
            )
        log.info("IPAM ADD %s on %s: %s", handle, node, ", ".join(addresses))
        ips = [IPConfig(f"{a}/{ipaddress.ip_address(a).max_prefixlen}") for a in addresses]
        routes = [Route("0.0.0.0/0" if ":" not in a else "::/0") for a in addresses]
        return Result(ips=ips, routes=routes).to_json(conf.cniVersion)

    @staticmethod
    def _node_labels(ipam: IPAM, node: str) -> dict[str, str]:
        try:
            return dict(ipam.store.get(Node, node).metadata.labels)
        except NotFound:
            return {}

    @staticmethod
    def _candidates(pools: list[IPPool], wanted: list[str], version: int, node: str, labels: dict) -> list[str]:
        """CIDRs of the enabled pools to try, in order: those the configuration names (by name or
        CIDR), else every pool of the family whose nodeSelector picks this node."""
        of_family = [p for p in pools if ipaddress.ip_network(p.spec.cidr).version == version]
        if wanted:
            found = []
            for name in wanted:
                match = [p for p in of_family if name in (p.name, p.spec.cidr)]
                if not match:
                    field = "ipv4_pools" if version == 4 else "ipv6_pools"
                    raise CniError(
                        INVALID_CONFIG,
                        f"invalid network configuration: ipam.{field}: no enabled IPv{version} IPPool {name!r}",
                    )
                found += [p.spec.cidr for p in match]
            return found
        return [p.spec.cidr for p in of_family if parse_selector(p.spec.nodeSelector).matches(labels)]

    @staticmethod
    def _allocate(ipam: IPAM, node: str, handle: str, version: int, candidates: list[str]) -> str:
        if not candidates:
            raise CniError(
                POOL_EXHAUSTED,
                f"no enabled IPv{version} IPPool selects node {node}",
                "create one (policyctl apply), or set assign_ipv6: false",
            )
        problems = []
        for cidr in candidates:
            try:
                return ipam.allocate(node, handle, pool=cidr)
            except IPAMError as exc:
                problems.append(f"{cidr}: {exc}")
        raise CniError(POOL_EXHAUSTED, f"no free IPv{version} address for node {node}", "; ".join(problems))

    # -- DEL, CHECK, STATUS ---------------------------------------------------------------
    def delete(self, request: Request, conf: NetConf, ipam_conf: IpamConf, ipam: IPAM) -> None:
        handle = ipam_handle(conf.name, request.container_id)
        if ipam.handle(handle) is None:
            log.info("IPAM DEL %s: no such handle (released already)", handle)
            return None
        freed = ipam.release_handle(handle)
        log.info("IPAM DEL %s: released %s", handle, ", ".join(freed) or "nothing")
        return None

    def check(self, request: Request, conf: NetConf, ipam_conf: IpamConf, ipam: IPAM) -> None:
        handle = ipam_handle(conf.name, request.container_id)
        record = ipam.handle(handle)
        if record is None or not record.addresses:
            raise CniError(CHECK_FAILED, f"IPAM handle {handle} holds no address")
        prev = conf.prev_result()
        expected = {str(ipaddress.ip_interface(ip.address).ip) for ip in (prev.ips if prev else [])}
        if missing := expected - set(record.addresses):
            raise CniError(CHECK_FAILED, f"IPAM handle {handle} does not hold {', '.join(sorted(missing))}")
        return None

    def status(self, request: Request, conf: NetConf, ipam_conf: IpamConf, ipam: IPAM) -> None:
        if not [p for p in ipam.pools() if not p.spec.disabled]:
            raise CniError(NOT_AVAILABLE, "no enabled IPPool: calyx-ipam has no address to give")
        return None

    # -- GC -------------------------------------------------------------------------------
    def gc(self, request: Request, conf: NetConf, ipam_conf: IpamConf, ipam: IPAM) -> None:
        """Release this network's handles of containers not in the valid list, when they are
        this node's: an endpoint on this node has the container, or no endpoint uses the handle's
        addresses and they are all in blocks affine to this node (an ADD that died half-way)."""
        if conf.valid_attachments is None:
            raise CniError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments (an empty list if none is valid)")
        node = node_name(conf)
        valid = {a.containerID for a in conf.valid_attachments}
        prefix = f"{conf.name}."
        endpoints = ResourceStore(ipam.kv, conf.etcd_prefix).list_kind(WorkloadEndpoint)[0]
        local_containers = {e.spec.containerID for e in endpoints if e.spec.node == node}
        used = {str(ipaddress.ip_network(n).network_address) for e in endpoints for n in e.spec.ipNetworks}
        affine = {str(b.address(o)) for b in ipam.blocks() if b.affinity == node for o in b.allocations}
        for name, record in ipam.handles().items():
            container = name.removeprefix(prefix)
            if not name.startswith(prefix) or container in valid:
                continue
            orphan = not (set(record.addresses) & used) and set(record.addresses) <= affine
            if container in local_containers or orphan:
                freed = ipam.release_handle(name)
                log.info("IPAM GC: released %s (%s)", name, ", ".join(freed))
        return None
