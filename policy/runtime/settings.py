"""Datastore settings shared by every Calyx command: one declaration gives flag, env var and default."""

import functools
import socket

import click

from policy.datastore.etcd import EtcdSettings
from policy.datastore.keys import DEFAULT_PREFIX

ETCD_OPTIONS = [
    click.option(
        "--etcd-endpoints",
        envvar="ETCD_ENDPOINTS",
        default="http://127.0.0.1:2379",
        show_default=True,
        help="Comma-separated etcd URLs, tried in order (failover).",
    ),
    click.option(
        "--etcd-ca-cert-file", envvar="ETCD_CA_CERT_FILE", default=None, help="CA bundle for https endpoints."
    ),
    click.option("--etcd-cert-file", envvar="ETCD_CERT_FILE", default=None, help="Client certificate (TLS auth)."),
    click.option("--etcd-key-file", envvar="ETCD_KEY_FILE", default=None, help="Client key (TLS auth)."),
    click.option(
        "--etcd-timeout",
        envvar="CALYX_ETCD_TIMEOUT",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds per etcd request.",
    ),
    click.option(
        "--etcd-prefix",
        envvar="CALYX_ETCD_PREFIX",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Key prefix, so several clusters (or tests) can share one etcd.",
    ),
]


def etcd_options(command):
    """Decorate a click command with the datastore options (outermost first in --help)."""
    return functools.reduce(lambda cmd, option: option(cmd), reversed(ETCD_OPTIONS), command)


def etcd_settings(
    etcd_endpoints: str, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout: float
) -> EtcdSettings:
    endpoints = tuple(url.strip() for url in etcd_endpoints.split(",") if url.strip())
    return EtcdSettings(endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout)


NODE_NAME_OPTION = click.option(
    "--node-name",
    envvar=["CALYX_NODE_NAME", "NODENAME"],
    default=socket.gethostname,
    show_default="hostname",
    help="This node's name, as its Node resource and WorkloadEndpoints name it.",
)


def daemon_options(env_prefix: str, health_port: int) -> list:
    """Settings every node daemon has (felix: CALYX_, 9099; calyx-bgp: CALYX_BGP_, 9098)."""
    return [
        click.option(
            "--health-host",
            envvar=f"{env_prefix}HEALTH_HOST",
            default="0.0.0.0",
            show_default=True,
            help="Address for /livez, /readyz and /metrics.",
        ),
        click.option(
            "--health-port",
            envvar=f"{env_prefix}HEALTH_PORT",
            type=int,
            default=health_port,
            show_default=True,
            help="Port for /livez, /readyz and /metrics (0 disables).",
        ),
        click.option(
            "--route-refresh-interval",
            envvar=f"{env_prefix}ROUTE_REFRESH_INTERVAL",
            type=float,
            default=90.0,
            show_default=True,
            help="Seconds between full re-reads of the kernel's routes.",
        ),
        click.option(
            "--etcd-backoff-max",
            envvar="CALYX_ETCD_BACKOFF_MAX",
            type=float,
            default=2.0,
            show_default=True,
            help="Longest wait, in seconds, between attempts to reach etcd.",
        ),
        click.option(
            "--log-level",
            envvar="CALYX_LOG_LEVEL",
            default="INFO",
            show_default=True,
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        ),
    ]
