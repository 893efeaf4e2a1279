"""The CNI execution protocol (containernetworking/cni SPEC.md): the environment a runtime sets,
the error codes, and the result types, rendered in the shape of the requested cniVersion.

0.3.x and 0.4.0 results carry `version` ("4"/"6") on each IP; 1.0.0 dropped it; 1.1.0 adds
STATUS and GC and optional route attributes. Everything here is pure data in, data out."""

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")

# Error codes of the spec ("Error" in section 5); 100+ are ours.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
CHECK_FAILED = 100  # CHECK found the attachment not as ADD left it
INTERNAL = 999

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# What each command needs from the environment (the spec's "required environment parameters").
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_IFNAME_FORBIDDEN = re.compile(r"[/:\s]")


class CniError(Exception):
    """An error result: printed on stdout as the spec's error object, exit code 1."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str) -> dict:
        body: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return body


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise CniError(DECODING_FAILURE, f"cniVersion {version!r} is not a version (e.g. 1.0.0)") from None


def check_version(command: str, version: str) -> None:
    """The configuration's cniVersion must be one we speak, and new enough for the command."""
    version_key(version)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"this plugin speaks {', '.join(SUPPORTED_VERSIONS)}",
        )
    minimum = MIN_VERSION.get(command)
    if minimum and version_key(version) < version_key(minimum):
        raise CniError(INCOMPATIBLE_VERSION, f"config version {version} does not allow {command} (needs {minimum}+)")


@dataclass(frozen=True)
class Request:
    """One invocation: the CNI_* environment, parsed and checked."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict)  # passed on, whole, to delegated plugins

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Request":
        command = environ.get("CNI_COMMAND", "")
        if command not in COMMANDS:
            raise CniError(
                INVALID_ENVIRONMENT,
                f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}"
                if command
                else "CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime",
            )
        missing = [name for name in REQUIRED_ENV[command] if not environ.get(name)]
        if missing:
            raise CniError(INVALID_ENVIRONMENT, f"required environment variables missing: {', '.join(missing)}")
        container_id, ifname = environ.get("CNI_CONTAINERID", ""), environ.get("CNI_IFNAME", "")
        if container_id and not _CONTAINER_ID.match(container_id):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id!r} has invalid characters")
        if ifname and (len(ifname) > 15 or _IFNAME_FORBIDDEN.search(ifname) or ifname in (".", "..")):
            raise CniError(
                INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} is not a Linux interface name (1-15 characters)"
            )
        return cls(
            command,
            container_id,
            environ.get("CNI_NETNS", ""),
            ifname,
            parse_cni_args(environ.get("CNI_ARGS", "")),
            tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
            dict(environ),
        )


def parse_cni_args(text: str) -> dict[str, str]:
    """`K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web` -> a dict; a pair without '=' is refused."""
    found = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {pair!r} is not KEY=VALUE")
        found[key] = value
    return found


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class IPConfig:
    address: str  # CIDR, e.g. 10.64.0.5/32
    gateway: str = ""
    interface: int | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str = ""


@dataclass
class Result:
    """An ADD result (or an IPAM plugin's, without interfaces), version-independent."""

    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: dict = field(default_factory=dict)

    def to_json(self, version: str) -> dict:
        legacy = version_key(version) < (1, 0, 0)
        body: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            body["interfaces"] = [_interface_json(i) for i in self.interfaces]
        body["ips"] = [_ip_json(ip, legacy) for ip in self.ips]
        if self.routes:
            body["routes"] = [{"dst": r.dst, **({"gw": r.gw} if r.gw else {})} for r in self.routes]
        body["dns"] = self.dns
        return body

    @classmethod
    def from_json(cls, data: object, what: str = "prevResult") -> "Result":
        """Any supported version's result (prevResult, or what an IPAM plugin printed)."""
        if not isinstance(data, dict):
            raise CniError(DECODING_FAILURE, f"{what} is not a JSON object")
        try:
            interfaces = [
                Interface(str(i["name"]), str(i.get("mac", "")), str(i.get("sandbox", "")), int(i.get("mtu", 0)))
                for i in data.get("interfaces") or []
            ]
            ips = []
            for ip in data.get("ips") or []:
                ipaddress.ip_interface(ip["address"])
                index = ip.get("interface")
                ips.append(
                    IPConfig(
                        str(ip["address"]), str(ip.get("gateway") or ""), int(index) if index is not None else None
                    )
                )
            routes = [Route(str(r["dst"]), str(r.get("gw") or "")) for r in data.get("routes") or []]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CniError(DECODING_FAILURE, f"{what} is not a CNI result: {type(exc).__name__}: {exc}") from None
        dns = data.get("dns") or {}
        return cls(interfaces, ips, routes, dns if isinstance(dns, dict) else {})


def _interface_json(interface: Interface) -> dict:
    body: dict[str, Any] = {"name": interface.name}
    if interface.mac:
        body["mac"] = interface.mac
    if interface.mtu:
        body["mtu"] = interface.mtu
    if interface.sandbox:
        body["sandbox"] = interface.sandbox
    return body


def _ip_json(ip: IPConfig, legacy: bool) -> dict:
    body: dict[str, Any] = {"address": ip.address}
    if legacy:
        body = {"version": str(ip.version), **body}
    if ip.gateway:
        body["gateway"] = ip.gateway
    if ip.interface is not None:
        body["interface"] = ip.interface
    return body


def version_result(version: str) -> dict:
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
