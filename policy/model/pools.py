"""IPPool: where workload addresses come from, cut into blocks that nodes claim."""

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from policy.model.base import Model
from policy.model.fields import IPNetwork
from policy.model.resources import Resource
from policy.model.rules import SelectorText

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}


class IPPoolSpec(Model):
    cidr: IPNetwork
    blockSize: int | None = Field(default=None, ge=0, le=128)
    disabled: bool = False
    nodeSelector: SelectorText = "all()"
    disableBGPExport: bool = False
    # Calyx never tunnels: Calico's encapsulation fields are accepted only as "Never".
    ipipMode: Literal["Never"] = "Never"
    vxlanMode: Literal["Never"] = "Never"
    # A Calyx extension (Calico keeps it in IPAMConfig): never borrow from another node's block.
    strictAffinity: bool = False

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
