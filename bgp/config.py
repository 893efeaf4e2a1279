"""Every calyx-bgp setting, declared once: flag, environment variable and default."""

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import click

from policy.datastore.etcd import EtcdSettings
from policy.runtime.settings import NODE_NAME_OPTION, daemon_options, setting


def _address(version: int):
    """Callback: an IPv<version> address/prefix-length (a bare address means /32 or /128)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            interface = ipaddress.ip_interface(value.strip())
        except ValueError:
            interface = None
        if interface is None or interface.version != version:
            raise click.BadParameter(f"{value!r} is not an IPv{version} address/prefix-length")
        return str(interface)

    return check


def _method(version: int):
    """Callback: interface=<regex>, cidr=<cidr> or can-reach=<address>, well formed (what it
    finds is only known at run time)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        kind, _, argument = value.partition("=")
        try:
            if kind == "interface" and argument:
                re.compile(argument)
            elif kind == "cidr" and argument:
                if ipaddress.ip_network(argument, strict=False).version != version:
                    raise ValueError(f"{argument} is not an IPv{version} network")
            elif kind == "can-reach" and argument:
                if ipaddress.ip_address(argument).version != version:
                    raise ValueError(f"{argument} is not an IPv{version} address")
            else:
                raise ValueError("use interface=<regex>, cidr=<cidr> or can-reach=<address>")
        except (ValueError, re.error) as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from None
        return value

    return check


def _non_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty")
    return value


BGP_OPTIONS = [
    NODE_NAME_OPTION,
    setting(
        "--ip",
        "ipv4",
        envvar="CALYX_IP",
        default=None,
        callback=_address(4),
        help="This node's IPv4 BGP address, as address/prefix-length (wins over the Node resource).",
    ),
    setting(
        "--ip6", "ipv6", envvar="CALYX_IP6", default=None, callback=_address(6), help="This node's IPv6 BGP address."
    ),
    setting(
        "--ip-autodetection-method",
        "ipv4_method",
        envvar="CALYX_IP_AUTODETECTION_METHOD",
        default=None,
        callback=_method(4),
        help="When neither --ip nor the Node resource gives one: interface=<regex>, cidr=<cidr> "
        "or can-reach=<address>.",
    ),
    setting(
        "--ip6-autodetection-method",
        "ipv6_method",
        envvar="CALYX_IP6_AUTODETECTION_METHOD",
        default=None,
        callback=_method(6),
        help="The same for IPv6.",
    ),
    setting(
        "--as-number",
        envvar="CALYX_AS_NUMBER",
        type=click.IntRange(1, 4294967295),
        default=None,
        help="This node's AS, recorded in its Node resource (default: BGPConfiguration's asNumber).",
    ),
    setting(
        "--graceful-restart-time",
        envvar="CALYX_GRACEFUL_RESTART_TIME",
        type=click.IntRange(1, 4095),
        default=120,
        show_default=True,
        help="Seconds peers keep our routes while we restart; also how long routes found in the kernel "
        "at start are kept.",
    ),
    setting(
        "--hold-time",
        envvar="CALYX_HOLD_TIME",
        type=click.IntRange(3, 65535),
        default=90,
        show_default=True,
        help="BGP hold time offered to peers, in seconds.",
    ),
    setting(
        "--run-dir",
        envvar="CALYX_BGP_RUN_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("/run/calyx/bgp"),
        show_default=True,
        help="Where ExaBGP's configuration (mode 0600: it holds the BGP passwords) and API socket live; "
        "made mode 0700.",
    ),
    setting(
        "--secrets-dir",
        envvar="CALYX_BGP_SECRETS_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("/etc/calyx/secrets"),
        show_default=True,
        help="Where a BGP password given as secretKeyRef {name, key} is read from: the file <name>/<key> "
        "(one trailing newline dropped).",
    ),
    setting(
        "--exabgp",
        "exabgp_path",
        envvar="CALYX_EXABGP",
        default="exabgp",
        show_default=True,
        callback=_non_empty,
        help="The ExaBGP executable (4.2 is supported).",
    ),
    *daemon_options("CALYX_BGP_", 9098),
]


@dataclass(frozen=True)
class BgpConfig:
    node_name: str
    etcd: EtcdSettings
    etcd_prefix: str
    ipv4: str | None = None
    ipv6: str | None = None
    ipv4_method: str | None = None
    ipv6_method: str | None = None
    as_number: int | None = None
    graceful_restart_time: int = 120
    hold_time: int = 90
    run_dir: Path = Path("/run/calyx/bgp")
    secrets_dir: Path = Path("/etc/calyx/secrets")
    exabgp_path: str = "exabgp"
    health_host: str = "0.0.0.0"
    health_port: int = 9098
    route_refresh_interval: float = 90.0
    etcd_backoff_max: float = 2.0
    log_level: str = "INFO"
