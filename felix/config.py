"""Every felix setting, declared once: flag, environment variable and default."""

from dataclasses import dataclass

from policy.datastore.etcd import EtcdSettings
from policy.runtime.settings import NODE_NAME_OPTION, daemon_options

AGENT_OPTIONS = [NODE_NAME_OPTION, *daemon_options("CALYX_", 9099)]


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
