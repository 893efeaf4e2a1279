"""Every calyx-bgp setting, declared once: flag, environment variable and default."""

from dataclasses import dataclass
from pathlib import Path

import click

from policy.datastore.etcd import EtcdSettings
from policy.runtime.settings import NODE_NAME_OPTION, daemon_options

BGP_OPTIONS = [
    NODE_NAME_OPTION,
    click.option(
        "--ip",
        "ipv4",
        envvar="CALYX_IP",
        default=None,
        help="This node's IPv4 BGP address, as address/prefix-length (wins over the Node resource).",
    ),
    click.option("--ip6", "ipv6", envvar="CALYX_IP6", default=None, help="This node's IPv6 BGP address."),
    click.option(
        "--ip-autodetection-method",
        "ipv4_method",
        envvar="CALYX_IP_AUTODETECTION_METHOD",
        default=None,
        help="When neither --ip nor the Node resource gives one: interface=<regex>, cidr=<cidr> "
        "or can-reach=<address>.",
    ),
    click.option(
        "--ip6-autodetection-method",
        "ipv6_method",
        envvar="CALYX_IP6_AUTODETECTION_METHOD",
        default=None,
        help="The same for IPv6.",
    ),
    click.option(
        "--as-number",
        envvar="CALYX_AS_NUMBER",
        type=click.IntRange(1, 4294967295),
        default=None,
        help="This node's AS, recorded in its Node resource (default: BGPConfiguration's asNumber).",
    ),
    click.option(
        "--graceful-restart-time",
        envvar="CALYX_GRACEFUL_RESTART_TIME",
        type=click.IntRange(1, 4095),
        default=120,
        show_default=True,
        help="Seconds peers keep our routes while we restart; also how long routes found in the kernel "
        "at start are kept.",
    ),
    click.option(
        "--hold-time",
        envvar="CALYX_HOLD_TIME",
        type=click.IntRange(3, 65535),
        default=90,
        show_default=True,
        help="BGP hold time offered to peers, in seconds.",
    ),
    click.option(
        "--run-dir",
        envvar="CALYX_BGP_RUN_DIR",
        type=click.Path(path_type=Path),
        default=Path("/run/calyx/bgp"),
        show_default=True,
        help="Where ExaBGP's configuration and API socket live.",
    ),
    click.option(
        "--exabgp",
        "exabgp_path",
        envvar="CALYX_EXABGP",
        default="exabgp",
        show_default=True,
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
    exabgp_path: str = "exabgp"
    health_host: str = "0.0.0.0"
    health_port: int = 9098
    route_refresh_interval: float = 90.0
    etcd_backoff_max: float = 2.0
    log_level: str = "INFO"
