"""IPPool: where workload addresses come from, cut into blocks that nodes claim."""

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from policy.model.base import Model
from policy.model.fields import IPNetwork
from policy.model.resources import Resource
from policy.model.rules import SelectorText

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
PoolUse = Literal["Workload", "Tunnel"]
POOL_USES: tuple[PoolUse, ...] = ("Workload", "Tunnel")  # Calico's default


def _never_encapsulated(value):
    if value != "Never":
        raise ValueError(f"{value!r} is not supported by Calyx: Calyx routes without encapsulation, use Never")
    return value


def _automatic(value):
    if value != "Automatic":
        raise ValueError(f"{value!r} is not supported by Calyx: its IPAM assigns from every pool, use Automatic")
    return value


class IPPoolSpec(Model):
    cidr: IPNetwork
    blockSize: int | None = Field(default=None, ge=0, le=128)
    disabled: bool = False
    nodeSelector: SelectorText = "all()"
    disableBGPExport: bool = False
    # Masquerade what the pool's workloads send beyond every pool (felix, policy/compiler/nat.py).
    natOutgoing: bool = False
    # Calyx never tunnels: Calico's encapsulation fields are accepted only as "Never".
    ipipMode: Annotated[Literal["Never"], BeforeValidator(_never_encapsulated)] = "Never"
    vxlanMode: Annotated[Literal["Never"], BeforeValidator(_never_encapsulated)] = "Never"
    # Workload addresses only: a pool reserved for tunnel addresses would never be used.
    allowedUses: list[PoolUse] = Field(default_factory=lambda: list(POOL_USES))
    # IPAM assigns from every pool automatically; Manual pools (addresses only on request) it has not.
    assignmentMode: Annotated[Literal["Automatic"], BeforeValidator(_automatic)] = "Automatic"
    # A Calyx extension (Calico keeps it in IPAMConfig): never borrow from another node's block.
    strictAffinity: bool = False

    @model_validator(mode="after")
    def _for_workloads(self):
        if "Workload" not in self.allowedUses:
            raise ValueError(
                "allowedUses: not supported by Calyx without Workload: Calyx has no tunnels to take addresses from it"
            )
        return self

    @model_validator(mode="after")
    def _block_fits(self):
        network = ipaddress.ip_network(self.cidr)
        size = self.blockSize
        if size is None:
            size = max(DEFAULT_BLOCK_SIZE[network.version], network.prefixlen)
            object.__setattr__(self, "blockSize", size)
        if not network.prefixlen <= size <= network.max_prefixlen:
            raise ValueError(
                f"blockSize {self.blockSize} must be between the pool's prefix length "
                f"{network.prefixlen} and {network.max_prefixlen}"
            )
        return self


class IPPool(Resource):
    plural: ClassVar[str] = "ippools"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("ippool", "pool", "pools")

    kind: Literal["IPPool"] = "IPPool"
    spec: IPPoolSpec
