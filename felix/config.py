"""Every felix setting, declared once: flag, environment variable and default."""

import socket
from dataclasses import dataclass

import click

from policy.etcd import EtcdSettings

AGENT_OPTIONS = [
    click.option("--node-name", envvar=["CALYX_NODE_NAME", "NODENAME"], default=socket.gethostname, show_default="hostname",
                 help="This node's name, as WorkloadEndpoints' spec.node names it."),
    click.option("--health-host", envvar="CALYX_HEALTH_HOST", default="0.0.0.0", show_default=True,
                 help="Address for /livez, /readyz and /metrics."),
    click.option("--health-port", envvar="CALYX_HEALTH_PORT", type=int, default=9099, show_default=True,
                 help="Port for /livez, /readyz and /metrics (0 disables)."),
    click.option("--route-refresh-interval", envvar="CALYX_ROUTE_REFRESH_INTERVAL", type=float, default=90.0,
                 show_default=True, help="Seconds between full re-reads of the kernel's routes."),
    click.option("--etcd-backoff-max", envvar="CALYX_ETCD_BACKOFF_MAX", type=float, default=2.0, show_default=True,
                 help="Longest wait, in seconds, between attempts to reach etcd."),
    click.option("--log-level", envvar="CALYX_LOG_LEVEL", default="INFO", show_default=True,
                 type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)),
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
