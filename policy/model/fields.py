"""Validated scalar types shared by the resource models (names, labels, addresses)."""

import decimal
import ipaddress
import math
import re
import struct
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from policy.model.names import HOST_INTERFACE_PREFIX

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IFNAME_FORBIDDEN = re.compile(r"[\s/:]")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _resource_name(value: str) -> str:
    if value.isascii() and value.isalnum() and value.islower() and len(value) <= 253:
        return value  # [a-z0-9]+ with a letter (most names): the regex says the same, ~10x slower
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return value


def _label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {value!r} has an invalid prefix {prefix!r}")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(f"label key {value!r} is not a valid label name")
    return value


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"label value {value!r} is not valid (at most 63 characters of [A-Za-z0-9-_.])")
    return value


def _interface_name(value: str) -> str:
    if not value or len(value) > 15 or _IFNAME_FORBIDDEN.search(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a valid Linux interface name (1-15 characters, no '/', ':' or spaces)")
    return value


def _workload_interface_name(value: str) -> str:
    """felix configures (proxy ARP, forwarding, routes, policy) only interfaces of this prefix:
    an endpoint naming eth0 would otherwise turn the node's uplink into a workload port."""
    _interface_name(value)
    if not value.startswith(HOST_INTERFACE_PREFIX) or len(value) == len(HOST_INTERFACE_PREFIX):
        raise ValueError(
            f"{value!r} is not a workload interface: host ends of workloads are named "
            f"{HOST_INTERFACE_PREFIX}<suffix> (see docs/workloads.md)"
        )
    return value


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_HOST_V4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}/32")


def _ip_network(value: str) -> str:
    """Canonical text of a CIDR; host bits must be zero, a bare address means /32 or /128.

    An IPv4 /32 already in canonical text (every pod's address) is returned as it is: the
    ipaddress round trip was a third of decoding a WorkloadEndpoint at felix's start."""
    if _CANONICAL_HOST_V4.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR: {exc}") from None


def _network_of(value: str) -> str:
    """A CIDR as Calico and Kubernetes take it in rules, network sets and ipBlocks: host bits
    are allowed and dropped (10.0.0.1/24 is 10.0.0.0/24); a bare address means /32 or /128."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR: {exc}") from None


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None


def _ip_interface(value: str) -> str:
    """An address with its subnet length, as a node's BGP address is written (10.0.0.1/24)."""
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid address/prefix-length") from None


def _mac(value: str) -> str:
    if not _MAC.match(value):
        raise ValueError(f"{value!r} is not a MAC address like ee:ee:ee:ee:ee:ee")
    return value.lower()


def _port_name(value: str) -> str:
    if len(value) > 15 or not _PORT_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid port name (at most 15 lowercase letters, digits and '-')")
    return value


def case_mistake(value: Any, names: Any) -> str | None:
    """The message for a name given in the wrong case: Calico's protocol names are case-sensitive."""
    if isinstance(value, str) and value not in names:
        for name in names:
            if isinstance(name, str) and name.lower() == value.lower():
                return f"{value!r} is not valid: protocol names are case-sensitive (as in Calico), use {name!r}"
    return None


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _go_float_text(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'g', -1, 32): shortest float32 digits, exponent from 1e+06."""
    if math.isnan(value):
        return "NaN"
    try:
        single = _float32(value)
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isinf(single):
        return "+Inf" if single > 0 else "-Inf"
    for digits in range(1, 10):
        text = f"{single:.{digits - 1}e}"
        if _float32(float(text)) == single:
            break
    mantissa, exponent = text.split("e")
    if -4 <= int(exponent) < 6:
        return format(decimal.Decimal(text), "f")
    return f"{mantissa}e{exponent}"


def _calico_string(value: Any) -> Any:
    """The string Calico's YAML decoder makes of an unquoted scalar in a string field."""
    if value is None:
        return ""  # Go decodes a null map or list element of type string as ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float_text(value)
    return value


def _label_strings(value: Any) -> Any:
    """Unquoted `true`, `5` or `1.5` as a label key or value means the string, as in Calico."""
    if not isinstance(value, dict):
        return value
    labels: dict = {}
    for key, item in value.items():
        text = _calico_string(key)
        if text in labels:
            raise ValueError(f"label {text!r} is given twice")
        labels[text] = _calico_string(item)
    return labels


def _value_strings(value: Any) -> Any:
    return [_calico_string(item) for item in value] if isinstance(value, list) else value


ResourceName = Annotated[str, AfterValidator(_resource_name)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
# Label maps (metadata.labels, matchLabels, labelsToApply) and string maps (annotations) read
# unquoted scalars as Calico does; other fields keep YAML's types, so `name: 5` stays an error.
Labels = Annotated[dict[LabelKey, LabelValue], BeforeValidator(_label_strings)]
LabelValues = Annotated[list[LabelValue], BeforeValidator(_value_strings)]
StringMap = Annotated[dict[str, str], BeforeValidator(_label_strings)]
WorkloadInterfaceName = Annotated[str, AfterValidator(_workload_interface_name)]
IPNetwork = Annotated[str, AfterValidator(_ip_network)]
MatchNetwork = Annotated[str, AfterValidator(_network_of)]  # what a rule or network set matches
IPAddress = Annotated[str, AfterValidator(_ip_address)]
IPInterface = Annotated[str, AfterValidator(_ip_interface)]
MACAddress = Annotated[str, AfterValidator(_mac)]
PortName = Annotated[str, AfterValidator(_port_name)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
ASNumber = Annotated[int, Field(ge=1, le=4294967295)]
