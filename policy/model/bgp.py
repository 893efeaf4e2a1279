"""BGPConfiguration and BGPPeer as in Calico v3: what calyx-bgp will render for ExaBGP.

Validated in full at `policyctl apply`, so a bad peer (unknown field, AS out of range, bad
address, peerIP and peerSelector together) is refused there and never reaches a node. Calico
fields Calyx has no meaning for are refused as "not supported by Calyx" (docs/bgp.md)."""

import ipaddress
import math
import re
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from policy.model.base import Model
from policy.model.fields import ASNumber, IPNetwork, ResourceName
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


class SecretKeySelector(Model):
    """Kubernetes' SecretKeySelector: Calyx reads the secret from a file (docs/bgp.md)."""

    name: ResourceName
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    optional: bool = False  # a missing secret then means no password, instead of no session


class BGPPassword(Model):
    secretKeyRef: SecretKeySelector


# Given inline (a Calyx extension, redacted by policyctl) or by reference (Calico's form).
Password = Annotated[str, Field(min_length=1, max_length=80)] | BGPPassword


def _not_the_placeholder(value):
    if value == REDACTED:
        raise ValueError(
            f"{REDACTED} is what `policyctl get` prints in place of a password: give the password itself "
            "(`policyctl get --show-secrets` prints it)"
        )
    return value


def _seconds(value) -> int:
    """A Kubernetes (Go) duration such as `120s`, `2m` or `1m30s`, in whole seconds for ExaBGP."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("give a duration with its unit, such as 120s or 2m")
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not a duration such as 120s, 2m or 1m30s")
    total = sum(
        float(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    )
    if not 1 <= math.ceil(total) <= MAX_RESTART_TIME:
        raise ValueError(f"{value!r} is outside 1s-{MAX_RESTART_TIME}s (a BGP graceful restart time)")
    return math.ceil(total)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
MAX_RESTART_TIME = 4095  # the graceful-restart capability's 12 bits
RestartTime = Annotated[int, BeforeValidator(_seconds)]
PERNODE_PREFIX = "node."
# What a per-node BGPConfiguration (node.<name>) may set, as Calico's confd reads it.
PER_NODE_FIELDS = frozenset({"logSeverityScreen", "listenPort", "communities", "prefixAdvertisements"})


class BGPConfigurationSpec(Model):
    """Unset fields are None, so a per-node configuration says only what it overrides; the plan
    fills in the defaults (AS 64512, mesh on, port 179, Info)."""

    asNumber: ASNumber | None = None
    nodeToNodeMeshEnabled: bool | None = None
    logSeverityScreen: Literal["Debug", "Info", "Warning", "Error", "Fatal"] | None = None
    listenPort: int | None = Field(default=None, ge=1, le=65535)
    communities: list[Community] = Field(default_factory=list)
    prefixAdvertisements: list[PrefixAdvertisement] = Field(default_factory=list)
    nodeMeshPassword: BGPPassword | None = None
    nodeMeshMaxRestartTime: RestartTime | None = None
    # Calyx listens on the node's BGP addresses only, which is Calico's NodeIP.
    bindMode: Literal["NodeIP"] | None = None
    # Interfaces whose routes BIRD must not export: Calyx exports none, so any value holds.
    ignoredInterfaces: list[Annotated[str, Field(min_length=1, max_length=15)]] = Field(default_factory=list)

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
    """`default` holds the cluster's settings; `node.<name>` overrides, for that node only,
    what Calico lets a node override (PER_NODE_FIELDS); any other name is refused."""

    plural: ClassVar[str] = "bgpconfigurations"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("bgpconfig", "bgpconfiguration")

    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)

    @model_validator(mode="after")
    def _named_for_its_scope(self):
        if self.name == "default":
            return self
        if not self.name.startswith(PERNODE_PREFIX) or self.name == PERNODE_PREFIX:
            raise ValueError(f"a BGPConfiguration is named default or {PERNODE_PREFIX}<node name>, not {self.name!r}")
        extra = sorted(
            f for f in self.spec.model_fields_set - PER_NODE_FIELDS if getattr(self.spec, f) not in (None, [])
        )
        if extra:
            raise ValueError(
                f"spec.{extra[0]}: only BGPConfiguration default sets it; a per-node configuration sets "
                f"{', '.join(sorted(PER_NODE_FIELDS))} (a node's own AS is its Node's spec.bgp.asNumber)"
            )
        return self

    @property
    def node(self) -> str | None:
        """The node a per-node configuration is for (None for default)."""
        return self.name[len(PERNODE_PREFIX) :] if self.name.startswith(PERNODE_PREFIX) else None


def peer_address(text: str) -> tuple[str, int | None]:
    """(address, port) of a peerIP: `10.0.0.1`, `10.0.0.1:179`, `fd00::1` or `[fd00::1]:179`."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", text)
    if match is None:
        return text, None
    address, port = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return address, int(port)


def _peer_ip(value):
    if not isinstance(value, str):
        return value
    address, port = peer_address(value)
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address (or address:port, [IPv6]:port)") from None
    if port is None:
        return canonical
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} of {value!r} is out of range 1-65535")
    return f"[{canonical}]:{port}" if ":" in canonical else f"{canonical}:{port}"


class BGPPeerSpec(Model):
    node: ResourceName | None = None  # only this node peers (default: every node)
    nodeSelector: SelectorText | None = None  # or the nodes this selects
    peerIP: Annotated[str, BeforeValidator(_peer_ip)] | None = None  # an address, or address:port
    peerSelector: SelectorText | None = None  # peer with the Calyx nodes this selects
    asNumber: ASNumber | None = None  # none with peerIP: the node's own AS (iBGP), as in Calico
    localASNumber: ASNumber | None = None  # the AS this node presents to this peer
    # TCP MD5 key; repr=False keeps it out of logs, policyctl shows it only with --show-secrets.
    password: Annotated[Password, BeforeValidator(_not_the_placeholder)] | None = Field(default=None, repr=False)
    sourceAddress: Literal["UseNodeIP", "None"] = "UseNodeIP"
    # Calyx announces only its own prefixes, whose next hop is the node itself in every mode.
    keepOriginalNextHop: bool = False
    nextHopMode: Literal["Auto", "Self", "Keep"] | None = None
    maxRestartTime: RestartTime | None = None
    ttlSecurity: int | None = Field(default=None, ge=0, le=255)  # GTSM: hops between the peers

    @model_validator(mode="after")
    def _one_peer_kind(self):
        if (self.peerIP is None) == (self.peerSelector is None):
            raise ValueError("give exactly one of peerIP or peerSelector")
        if self.node and self.nodeSelector:
            raise ValueError("give node or nodeSelector, not both")
        return self


class BGPPeer(Resource):
    plural: ClassVar[str] = "bgppeers"
    namespaced: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ("bgppeer", "peer", "peers")

    kind: Literal["BGPPeer"] = "BGPPeer"
    spec: BGPPeerSpec
