"""Datastore settings shared by every Calyx command: one declaration gives flag, env var and default.

Every setting is validated where it is declared, so a bad value stops the command at once with
exit code 2 and a message naming the flag (and the environment variable, when it came from
one). One rule for empty values, the same for felix, calyx-bgp and policyctl: an environment
variable set to the empty string counts as not set (the default applies); any other value, from
a flag or the environment, must be valid (`--etcd-endpoints ""`, `ETCD_ENDPOINTS=" "` and
`--node-name ""` are refused)."""

import functools
import ipaddress
import math
import os
import socket

import click
import pydantic
from click.core import ParameterSource

from policy.datastore.etcd import EtcdSettings, parse_endpoint
from policy.datastore.keys import DEFAULT_PREFIX
from policy.model.fields import ResourceName
from policy.runtime.private_files import warn_if_exposed

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"

# Bounds of the timing settings: a zero, negative or NaN wait makes a daemon spin.
MAX_ETCD_TIMEOUT = 3600.0
MIN_BACKOFF, MAX_BACKOFF = 0.1, 3600.0  # 0.1 s is the first retry delay
MIN_REFRESH, MAX_REFRESH = 1.0, 86400.0


class Setting(click.Option):
    """A click option whose bad value is reported with the environment variable it came from."""

    def process_value(self, ctx: click.Context, value):
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            envvar = environment_source(ctx, self)
            if envvar is None:
                raise
            raise click.BadParameter(
                f"{exc.message.rstrip('.')} (from environment variable {envvar})", ctx=ctx, param=self
            ) from None


def setting(*param_decls: str, **attrs):
    """click.option for a setting (see Setting)."""
    return click.option(*param_decls, cls=Setting, **attrs)


def environment_source(ctx: click.Context, param: click.Parameter) -> str | None:
    """The environment variable the parameter's value came from, or None."""
    if ctx.get_parameter_source(param.name or "") is not ParameterSource.ENVIRONMENT:
        return None
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    return next((name for name in names if os.environ.get(name)), None)


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Callback refusing NaN and infinities (click's ranges let NaN through)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def check_etcd_endpoints(ctx: click.Context, param: click.Parameter, value: str) -> str:
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if not urls:
        raise click.BadParameter(f"{value!r} names no etcd endpoint (leave it unset for {DEFAULT_ENDPOINTS})")
    for url in urls:
        try:
            parse_endpoint(url)
        except ValueError as exc:
            text = str(exc)
            raise click.BadParameter(text if url in text else f"invalid etcd endpoint {url!r}: {text}") from None
    return ",".join(urls)


def check_etcd_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/"):
        raise click.BadParameter(f"{value!r} must start with '/' (e.g. {DEFAULT_PREFIX})")
    return value


_FILE = click.Path(exists=True, dir_okay=False, readable=True)

ETCD_OPTIONS = [
    setting(
        "--etcd-endpoints",
        envvar="ETCD_ENDPOINTS",
        default=DEFAULT_ENDPOINTS,
        show_default=True,
        callback=check_etcd_endpoints,
        help="Comma-separated etcd URLs, tried in order (failover).",
    ),
    setting(
        "--etcd-ca-cert-file",
        envvar="ETCD_CA_CERT_FILE",
        type=_FILE,
        default=None,
        help="CA bundle for https endpoints.",
    ),
    setting(
        "--etcd-cert-file", envvar="ETCD_CERT_FILE", type=_FILE, default=None, help="Client certificate (TLS auth)."
    ),
    setting(
        "--etcd-key-file",
        envvar="ETCD_KEY_FILE",
        type=_FILE,
        default=None,
        help="Client key (TLS auth); should be mode 0600 (a warning is logged otherwise).",
    ),
    setting(
        "--etcd-timeout",
        envvar="CALYX_ETCD_TIMEOUT",
        type=click.FloatRange(min=0, min_open=True, max=MAX_ETCD_TIMEOUT),
        callback=finite,
        default=5.0,
        show_default=True,
        help="Seconds per etcd request.",
    ),
    setting(
        "--etcd-prefix",
        envvar="CALYX_ETCD_PREFIX",
        default=DEFAULT_PREFIX,
        show_default=True,
        callback=check_etcd_prefix,
        help="Key prefix, so several clusters (or tests) can share one etcd.",
    ),
]


def etcd_options(command):
    """Decorate a click command with the datastore options (outermost first in --help)."""
    return functools.reduce(lambda cmd, option: option(cmd), reversed(ETCD_OPTIONS), command)


def etcd_settings(
    etcd_endpoints: str, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout: float
) -> EtcdSettings:
    """The datastore settings; warns (logs) when the client key file is open to group or others."""
    endpoints = tuple(url.strip() for url in etcd_endpoints.split(",") if url.strip())
    warn_if_exposed(etcd_key_file, "etcd key file (--etcd-key-file)")
    return EtcdSettings(endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_timeout)


_NODE_NAME = pydantic.TypeAdapter(ResourceName)


def _node_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty")
    if value != value.strip():
        raise click.BadParameter(f"{value!r} has leading or trailing whitespace")
    try:
        _NODE_NAME.validate_python(value)
    except pydantic.ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        if ctx.get_parameter_source(param.name or "") is ParameterSource.DEFAULT:
            message += " (it is this host's name, the default: give --node-name)"
        raise click.BadParameter(message) from None
    return value


NODE_NAME_OPTION = setting(
    "--node-name",
    envvar=["CALYX_NODE_NAME", "NODENAME"],
    default=socket.gethostname,
    show_default="hostname",
    callback=_node_name,
    help="This node's name, as its Node resource and WorkloadEndpoints name it.",
)


def _health_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an IP address (give this node's own address, 127.0.0.1, or 0.0.0.0 for all)"
        ) from None


def health_options(env_prefix: str, health_port: int) -> list:
    """Where a daemon serves /livez, /readyz and /metrics."""
    return [
        setting(
            "--health-host",
            envvar=f"{env_prefix}HEALTH_HOST",
            default="0.0.0.0",
            show_default=True,
            callback=_health_host,
            help="IP address for /livez, /readyz and /metrics (this node's own address or 127.0.0.1 keeps them "
            "away from workloads; 0.0.0.0 or :: is every address).",
        ),
        setting(
            "--health-port",
            envvar=f"{env_prefix}HEALTH_PORT",
            type=click.IntRange(0, 65535),
            default=health_port,
            show_default=True,
            help="Port for /livez, /readyz and /metrics (0 disables).",
        ),
    ]


BACKOFF_OPTION = setting(
    "--etcd-backoff-max",
    envvar="CALYX_ETCD_BACKOFF_MAX",
    type=click.FloatRange(min=MIN_BACKOFF, max=MAX_BACKOFF),
    callback=finite,
    default=2.0,
    show_default=True,
    help="Longest wait, in seconds, between attempts to reach etcd.",
)
LOG_LEVEL_OPTION = setting(
    "--log-level",
    envvar="CALYX_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)


def daemon_options(env_prefix: str, health_port: int) -> list:
    """Settings every node daemon has (felix: CALYX_, 9099; calyx-bgp: CALYX_BGP_, 9098)."""
    return [
        *health_options(env_prefix, health_port),
        setting(
            "--route-refresh-interval",
            envvar=f"{env_prefix}ROUTE_REFRESH_INTERVAL",
            type=click.FloatRange(min=MIN_REFRESH, max=MAX_REFRESH),
            callback=finite,
            default=90.0,
            show_default=True,
            help="Seconds between full re-reads of the kernel's routes.",
        ),
        BACKOFF_OPTION,
        LOG_LEVEL_OPTION,
    ]
