"""Policy rules as in Calico v3: action, protocol, ICMP, and a source and destination match.

Cross-field checks live here so that a rule which validates always compiles: ports only with
TCP/UDP/SCTP/UDPLite, ICMP fields only with ICMP/ICMPv6, one IP version per rule."""

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from policy.model.base import Model
from policy.model.fields import MatchNetwork, case_mistake
from policy.model.resources import SERVICE_ACCOUNT_LABEL
from policy.model.selector import SelectorError, parse_selector, with_key_prefix

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
PORT_PROTOCOLS = {"TCP", "UDP", "SCTP", "UDPLite", 6, 17, 132, 136}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _selector(value: str) -> str:
    try:
        parse_selector(value)
    except SelectorError as exc:
        raise ValueError(f"invalid selector: {exc}") from None
    return value


def _protocol(value):
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool):
        raise ValueError("protocol must be a name or a number")
    if isinstance(value, int):
        if not 1 <= value <= 255:
            raise ValueError(f"protocol number {value} is out of range 1-255")
        return value
    if isinstance(value, str) and value in PROTOCOL_NUMBERS:
        return value
    mistake = case_mistake(value, PROTOCOL_NUMBERS)
    if mistake:
        raise ValueError(mistake)
    raise ValueError(f"unknown protocol {value!r} (use {', '.join(PROTOCOL_NUMBERS)} or a number 1-255)")


def _port(value):
    """80, "80", "1000:2000" or a named port ("http")."""
    if isinstance(value, bool):
        raise ValueError("a port must be a number, a range 'min:max' or a port name")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is out of range 1-65535")
        return value
    if isinstance(value, str) and ":" in value:
        low, _, high = value.partition(":")
        if not (low.isdigit() and high.isdigit()) or not 1 <= int(low) <= int(high) <= 65535:
            raise ValueError(f"port range {value!r} must be 'min:max' with 1 <= min <= max <= 65535")
        return f"{int(low)}:{int(high)}"
    if isinstance(value, str) and len(value) <= 15 and _PORT_NAME.match(value):
        return value
    raise ValueError(f"{value!r} is not a port number, a range 'min:max' or a port name")


SelectorText = Annotated[str, AfterValidator(_selector)]
Protocol = Annotated[int | str, BeforeValidator(_protocol)]
Port = Annotated[int | str, BeforeValidator(_port)]
Action = Literal["Allow", "Deny", "Log", "Pass"]


# A service account's labels reach its endpoints as Calico carries them: calyx-kube-controllers
# writes Profile ksa.<namespace>.<name> with each label as pcsa.<key> in labelsToApply, and the
# endpoint names that profile; serviceAccounts.selector is matched with its keys so prefixed.
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."


class ServiceAccountMatch(Model):
    names: list[str] = Field(default_factory=list)
    selector: SelectorText | None = None

    def terms(self) -> list[str]:
        """Selector terms over endpoint labels, ANDed: the names by the service account label,
        the selector over the labels the account's profile applies (pcsa.<key>)."""
        terms = []
        if self.names:
            names = ", ".join(f"'{n}'" for n in sorted(set(self.names)))
            terms.append(f"{SERVICE_ACCOUNT_LABEL} in {{{names}}}")
        if self.selector is not None:
            terms.append(f"({with_key_prefix(parse_selector(self.selector), SERVICE_ACCOUNT_LABEL_PREFIX)})")
        return terms


class ICMPMatch(Model):
    type: int | None = Field(default=None, ge=0, le=254)
    code: int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="after")
    def _code_needs_type(self):
        if self.code is not None and self.type is None:
            raise ValueError("icmp code needs a type")
        return self


class EntityRule(Model):
    nets: list[MatchNetwork] = Field(default_factory=list)
    notNets: list[MatchNetwork] = Field(default_factory=list)
    selector: SelectorText | None = None
    notSelector: SelectorText | None = None
    namespaceSelector: SelectorText | None = None
    ports: list[Port] = Field(default_factory=list)
    notPorts: list[Port] = Field(default_factory=list)
    serviceAccounts: ServiceAccountMatch | None = None

    def versions(self) -> set[int]:
        """IP versions the nets restrict this side to (empty: no restriction)."""
        return {ipaddress.ip_network(n).version for n in self.nets}


class Rule(Model):
    action: Action
    ipVersion: Literal[4, 6] | None = None
    protocol: Protocol | None = None
    notProtocol: Protocol | None = None
    icmp: ICMPMatch | None = None
    notICMP: ICMPMatch | None = None
    source: EntityRule = Field(default_factory=EntityRule)
    destination: EntityRule = Field(default_factory=EntityRule)
    metadata: dict[str, dict[str, str]] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        for side in ("source", "destination"):
            entity = getattr(self, side)
            if (entity.ports or entity.notPorts) and self.protocol not in PORT_PROTOCOLS:
                raise ValueError(f"{side}.ports needs protocol TCP, UDP, SCTP or UDPLite")
        if (self.icmp or self.notICMP) and self.protocol not in ("ICMP", "ICMPv6", 1, 58):
            raise ValueError("icmp and notICMP need protocol ICMP or ICMPv6")
        implied = {"ICMP": 4, 1: 4, "ICMPv6": 6, 58: 6}.get(self.protocol)
        if implied and self.ipVersion not in (None, implied):
            raise ValueError(f"protocol {self.protocol} contradicts ipVersion {self.ipVersion}")
        for side in ("source", "destination"):
            versions = getattr(self, side).versions()
            wanted = self.ipVersion or implied
            if wanted and versions and wanted not in versions:
                raise ValueError(f"{side}.nets has no IPv{wanted} network, but the rule is IPv{wanted} only")
        return self
