"""Every felix setting, declared once: flag, environment variable and default."""

from dataclasses import dataclass
from pathlib import Path

import click

from felix.flows import FlowLogSettings
from policy.compiler.observe import NO_OBSERVE, Observe
from policy.compiler.ruleset import DEFAULT_HOST_ACCESS, HostAccess
from policy.datastore.etcd import EtcdSettings
from policy.runtime.settings import NODE_NAME_OPTION, daemon_options, setting


def _host_ports(ctx: click.Context, param: click.Parameter, value: str) -> tuple[tuple[int, int], ...]:
    """`udp:53,tcp:53` -> ((17, 53), (6, 53))."""
    found = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        protocol, _, port = item.partition(":")
        number = {"tcp": 6, "udp": 17, "sctp": 132}.get(protocol.lower())
        if number is None or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise click.BadParameter(f"{item!r} is not <tcp|udp|sctp>:<port>")
        found.append((number, int(port)))
    return tuple(found)


HOST_ACCESS_OPTIONS = [
    setting(
        "--default-endpoint-to-host-action",
        envvar="CALYX_DEFAULT_ENDPOINT_TO_HOST_ACTION",
        type=click.Choice(["Drop", "Accept", "Return"]),
        default="Drop",
        show_default=True,
        help="Workload traffic to this host, after the workload's egress policy: Drop, Accept, or Return "
        "(on to the host's own firewall).",
    ),
    setting(
        "--endpoint-to-host-allow",
        envvar="CALYX_ENDPOINT_TO_HOST_ALLOW",
        default="",
        callback=_host_ports,
        help="Host ports workloads may reach even under Drop, e.g. udp:53,tcp:53 for node-local DNS.",
    ),
]
RUN_DIR_OPTION = setting(
    "--run-dir",
    envvar="CALYX_RUN_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/run/calyx/felix"),
    show_default=True,
    help="Locked while felix runs, so a second felix on this host is refused (one per node's kernel).",
)
DEFAULT_NODENAME_FILE = Path("/var/lib/calyx/nodename")
NODENAME_FILE_OPTION = setting(
    "--nodename-file",
    envvar="CALYX_NODENAME_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_NODENAME_FILE,
    show_default=True,
    help="Where felix records its node name at start, for calyx-cni to name endpoints after this node.",
)
OBSERVE_OPTIONS = [
    setting(
        "--flow-logs/--no-flow-logs",
        envvar="CALYX_FLOW_LOGS",
        default=True,
        show_default=True,
        help="Log the packets policy denies to an nflog group and keep the denied flows (/flows, metrics). "
        "Costs nothing on allowed packets.",
    ),
    setting(
        "--flow-log-group",
        envvar="CALYX_FLOW_LOG_GROUP",
        type=click.IntRange(0, 65535),
        default=20,
        show_default=True,
        help="The nflog group of denied packets (no other program on the host may read it).",
    ),
    setting(
        "--flow-log-capacity",
        envvar="CALYX_FLOW_LOG_CAPACITY",
        type=click.IntRange(1, 1_000_000),
        default=FlowLogSettings.capacity,
        show_default=True,
        help="Denied flows kept in memory for /flows (about 1 KiB each).",
    ),
    setting(
        "--flow-log-rate",
        envvar="CALYX_FLOW_LOG_RATE",
        type=click.IntRange(1, 1_000_000),
        default=int(FlowLogSettings.rate),
        show_default=True,
        help="Denied packets read per second at most; beyond it the kernel drops them (counted as lost).",
    ),
    setting(
        "--policy-counters/--no-policy-counters",
        envvar="CALYX_POLICY_COUNTERS",
        default=False,
        show_default=True,
        help="A packet counter on every policy rule, as metrics per rule (off by default; measured at under 1% per "
        "packet: docs/benchmarks.md).",
    ),
]
AGENT_OPTIONS = [
    NODE_NAME_OPTION,
    *daemon_options("CALYX_", 9099),
    *HOST_ACCESS_OPTIONS,
    RUN_DIR_OPTION,
    NODENAME_FILE_OPTION,
    *OBSERVE_OPTIONS,
]


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    etcd: EtcdSettings
    etcd_prefix: str
    health_host: str = "0.0.0.0"
    health_port: int = 9099
    route_refresh_interval: float = 90.0
    etcd_backoff_max: float = 2.0
    log_level: str = "INFO"
    host_access: HostAccess = DEFAULT_HOST_ACCESS
    run_dir: Path = Path("/run/calyx/felix")
    nodename_file: Path = DEFAULT_NODENAME_FILE
    observe: Observe = NO_OBSERVE  # deny logging and counters (the command turns deny logging on)
    flow_log: FlowLogSettings = FlowLogSettings()
