"""The network configuration calyx-cni and calyx-ipam read on stdin, with Calico's field names,
so a Calico conflist converts by changing `type` (see docs/cni.md).

Fields Calico has and Calyx does not use (`datastore_type`, `container_settings`, ...) are
ignored and logged, so a converted conflist works; a known field with a bad value is an
error naming the field (CNI code 7)."""

import ipaddress
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from felix.cni.protocol import DECODING_FAILURE, INVALID_CONFIG, CniError, Result

log = logging.getLogger(__name__)

DEFAULT_NODENAME_FILE = "/var/lib/calyx/nodename"
DEFAULT_LOG_FILE = "/var/log/calyx/cni/cni.log"
DEFAULT_FELIX_HEALTH_URL = "http://127.0.0.1:9099"
DEFAULT_SOCKET = "/run/calyx/cni.sock"
SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "warn": "WARNING", "error": "ERROR"}


class _Section(BaseModel):
    """A part of the configuration: unknown keys are Calico's (or a runtime's) and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _tri_state(value: Any) -> bool | None:
    """Calico writes `assign_ipv4: "true"` as a string; booleans are accepted too."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError('must be true or false (or "true"/"false")')


class IpamConf(_Section):
    type: str
    ipv4_pools: list[str] = Field(default_factory=list)  # pool names or CIDRs, tried in order
    ipv6_pools: list[str] = Field(default_factory=list)
    assign_ipv4: bool | None = None  # default: yes
    assign_ipv6: bool | None = None  # default: when a v6 pool selects this node (or ipv6_pools is given)

    @field_validator("assign_ipv4", "assign_ipv6", mode="before")
    @classmethod
    def _assign(cls, value: Any) -> bool | None:
        return _tri_state(value)

    @field_validator("type")
    @classmethod
    def _plugin_name(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("must name an IPAM plugin executable in CNI_PATH (no '/')")
        return value


class PolicyConf(_Section):
    type: str = ""


class KubernetesConf(_Section):
    kubeconfig: str | None = None


class DnsConf(_Section):
    nameservers: list[str] = Field(default_factory=list)
    domain: str = ""
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)

    def result_json(self) -> dict:
        return self.model_dump(exclude_defaults=True)


class Attachment(_Section):
    containerID: str
    ifname: str


class CniArgLabel(_Section):
    key: str
    value: str


class CniArgs(_Section):
    labels: list[CniArgLabel] = Field(default_factory=list)


class Args(_Section):
    """`args` of the configuration; `args.cni.labels` is CNI's convention for workload labels."""

    cni: CniArgs = Field(default_factory=CniArgs)


class NetConf(_Section):
    cniVersion: str
    name: str
    type: str = "calyx-cni"
    etcd_endpoints: str = "http://127.0.0.1:2379"
    etcd_key_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_ca_cert_file: str | None = None
    etcd_prefix: str = "/calyx"
    etcd_timeout: float = Field(default=5.0, gt=0, le=60)
    nodename: str | None = None
    nodename_file: str = DEFAULT_NODENAME_FILE
    mtu: int = Field(default=1500, ge=68, le=65535)
    log_level: str = "INFO"
    log_file_path: str = DEFAULT_LOG_FILE
    policy: PolicyConf = Field(default_factory=PolicyConf)
    kubernetes: KubernetesConf = Field(default_factory=KubernetesConf)
    ipam: IpamConf | None = None
    dns: DnsConf = Field(default_factory=DnsConf)
    felix_health_url: str = DEFAULT_FELIX_HEALTH_URL
    cni_socket: str = DEFAULT_SOCKET  # calyx-cni-server's; the host's C client reads it (client/calyx-cni.c)
    policy_setup_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    namespace: str = "default"  # of endpoints created outside Kubernetes
    args: Args = Field(default_factory=Args)
    prevResult: dict | None = None
    valid_attachments: list[Attachment] | None = Field(default=None, alias="cni.dev/valid-attachments")

    @field_validator("name")
    @classmethod
    def _network_name(cls, value: str) -> str:
        if not _NETWORK_NAME.match(value):
            raise ValueError("a network name starts with a letter or digit, then letters, digits, '_', '.' or '-'")
        return value

    @field_validator("etcd_key_file", "etcd_cert_file", "etcd_ca_cert_file", "nodename", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # install-cni renders unused settings as ""

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(sorted(set(_LOG_LEVELS) - {'warn'}))}")
        return _LOG_LEVELS[value.lower()]

    @field_validator("etcd_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/' (e.g. /calyx)")
        return value

    @field_validator("cni_socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (e.g. /run/calyx/cni.sock)")
        if len(value.encode()) > SOCKET_PATH_MAX:
            raise ValueError(f"is {len(value.encode())} bytes; a unix socket path holds at most {SOCKET_PATH_MAX}")
        if '"' in value or "\\" in value:
            raise ValueError("must not contain quotes or backslashes (the C client reads it unescaped)")
        return value

    @field_validator("etcd_endpoints")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        if not [url for url in value.split(",") if url.strip()]:
            raise ValueError("names no etcd endpoint")
        return value

    @field_validator("mtu", mode="before")
    @classmethod
    def _mtu_default(cls, value: Any) -> Any:
        return 1500 if value in (0, None) else value  # Calico: 0 means the default

    @field_validator("dns", mode="after")
    @classmethod
    def _nameservers(cls, value: DnsConf) -> DnsConf:
        for server in value.nameservers:
            ipaddress.ip_address(server)
        return value

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(url.strip() for url in self.etcd_endpoints.split(",") if url.strip())

    @property
    def kubernetes_mode(self) -> bool:
        return self.policy.type == "k8s"

    def prev_result(self) -> Result | None:
        return Result.from_json(self.prevResult) if self.prevResult is not None else None

    def labels(self) -> dict[str, str]:
        return {label.key: label.value for label in self.args.cni.labels}


def read_version(stdin: bytes) -> str:
    """Only cniVersion, for VERSION (whose input may be nothing else)."""
    data = _json(stdin)
    version = data.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise CniError(DECODING_FAILURE, "cniVersion must be a string")
    return version


def parse_netconf(stdin: bytes) -> NetConf:
    data = _json(stdin)
    try:
        conf = NetConf.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        raise CniError(INVALID_CONFIG, f"invalid network configuration: {where}: {message}") from None
    unknown = sorted(
        set(data) - set(NetConf.model_fields) - {"cni.dev/valid-attachments", "runtimeConfig", "capabilities"}
    )
    if unknown:
        log.info("network %s: ignoring fields calyx-cni does not use: %s", conf.name, ", ".join(unknown))
    return conf


def _json(stdin: bytes) -> dict:
    try:
        data = json.loads(stdin or b"")
    except ValueError as exc:
        raise CniError(DECODING_FAILURE, f"the network configuration on stdin is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CniError(DECODING_FAILURE, "the network configuration on stdin is not a JSON object")
    return data
