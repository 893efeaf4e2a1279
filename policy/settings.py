"""Datastore settings shared by every Calyx command: one declaration gives flag, env var and default."""

import functools

import click

from policy.etcd import EtcdSettings
from policy.kinds import DEFAULT_PREFIX

ETCD_OPTIONS = [
    click.option("--etcd-endpoints", envvar="ETCD_ENDPOINTS", default="http://127.0.0.1:2379", show_default=True,
                 help="Comma-separated etcd URLs, tried in order (failover)."),
    click.option("--etcd-ca-cert-file", envvar="ETCD_CA_CERT_FILE", default=None, help="CA bundle for https endpoints."),
    click.option("--etcd-cert-file", envvar="ETCD_CERT_FILE", default=None, help="Client certificate (TLS auth)."),
    click.option("--etcd-key-file", envvar="ETCD_KEY_FILE", default=None, help="Client key (TLS auth)."),
    click.option("--etcd-timeout", envvar="CALYX_ETCD_TIMEOUT", type=float, default=5.0, show_default=True,
                 help="Seconds per etcd request."),
    click.option("--etcd-prefix", envvar="CALYX_ETCD_PREFIX", default=DEFAULT_PREFIX, show_default=True,
                 help="Key prefix, so several clusters (or tests) can share one etcd."),
]


def etcd_options(command):
    """Decorate a click command with the datastore options (outermost first in --help)."""
    return functools.reduce(lambda cmd, option: option(cmd), reversed(ETCD_OPTIONS), command)


def etcd_settings(etcd_endpoints: str, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout: float) -> EtcdSettings:
    endpoints = tuple(url.strip() for url in etcd_endpoints.split(",") if url.strip())
    return EtcdSettings(endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout)
