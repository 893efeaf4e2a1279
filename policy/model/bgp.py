"""BGPConfiguration and BGPPeer as in Calico v3: what calyx-bgp will render for ExaBGP.

Validated in full at `policyctl apply`, so a bad peer (unknown field, AS out of range, bad
address, peerIP and peerSelector together) is refused there and never reaches a node."""

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from policy.model.base import Model
from policy.model.fields import ASNumber, IPAddress, IPNetwork, ResourceName
from policy.model.resources import Resource
from policy.model.rules import SelectorText

DEFAULT_AS_NUMBER = 64512
REDACTED = "<redacted>"  # what policyctl prints in place of a secret
_COMMUNITY = r"^(\d{1,5}:\d{1,5}|\d{1,10}:\d{1,10}:\d{1,10})$"


class Community(Model):
    name: ResourceName
    value: str = Field(pattern=_COMMUNITY, description="standard aa:nn or large aa:nn:mm")


class PrefixAdvertisement(Model):
    cidr: IPNetwork
    communities: list[str] = Field(default_factory=list)


class BGPConfigurationSpec(Model):
    asNumber: ASNumber = DEFAULT_AS_NUMBER
    nodeToNodeMeshEnabled: bool = True
    logSeverityScreen: Literal["Debug", "Info", "Warning", "Error", "Fatal"] = "Info"
    listenPort: int = Field(default=179, ge=1, le=65535)
    communities: list[Community] = Field(default_factory=list)
    prefixAdvertisements: list[PrefixAdvertisement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _communities_known(self):
        named = {c.name for c in self.communities}
        for advertisement in self.prefixAdvertisements:
            for community in advertisement.communities:
                if community not in named and not _is_literal_community(community):
                    raise ValueError(
                        f"prefixAdvertisements {advertisement.cidr}: community {community!r} is neither "
                        "a name from communities nor a value like 65000:100"
                    )
        return self


def _is_literal_community(value: str) -> bool:
    return re.match(_COMMUNITY, value) is not None


class BGPConfiguration(Resource):
    plural: ClassVar[str] = "bgpconfigurations"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("bgpconfig", "bgpconfiguration")

    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)


class BGPPeerSpec(Model):
    node: ResourceName | None = None  # only this node peers (default: every node)
    nodeSelector: SelectorText | None = None  # or the nodes this selects
    peerIP: IPAddress | None = None
    peerSelector: SelectorText | None = None  # peer with the Calyx nodes this selects
    asNumber: ASNumber | None = None
    # TCP MD5 key; repr=False keeps it out of logs, policyctl shows it only with --show-secrets.
    password: str | None = Field(default=None, min_length=1, max_length=80, repr=False)
    sourceAddress: Literal["UseNodeIP", "None"] = "UseNodeIP"
    keepOriginalNextHop: bool = False

    @field_validator("password")
    @classmethod
    def _not_the_placeholder(cls, value: str | None) -> str | None:
        if value == REDACTED:
            raise ValueError(
                f"{REDACTED} is what `policyctl get` prints in place of a password: give the password itself "
                "(`policyctl get --show-secrets` prints it)"
            )
        return value

    @model_validator(mode="after")
    def _one_peer_kind(self):
        if (self.peerIP is None) == (self.peerSelector is None):
            raise ValueError("give exactly one of peerIP (with asNumber) or peerSelector")
        if self.peerIP is not None and self.asNumber is None:
            raise ValueError("peerIP needs asNumber")
        if self.node and self.nodeSelector:
            raise ValueError("give node or nodeSelector, not both")
        return self


class BGPPeer(Resource):
    plural: ClassVar[str] = "bgppeers"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "peer", "peers")

    kind: Literal["BGPPeer"] = "BGPPeer"
    spec: BGPPeerSpec
