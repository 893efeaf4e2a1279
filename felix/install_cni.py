"""`calyx-install-cni`: put the CNI plugins, their network configuration and credentials on the host.

It runs as the calyx-node DaemonSet's init container, at every start of the pod. Every file goes
to a temporary name in its own directory and is renamed into place, so a container runtime
reading the plugin or configuration directory sees the old file or the new one, never half of
one; a file that is already as wanted is not rewritten (no needless reload by the runtime).
The plugins, the kubeconfig and the TLS files are in place before the conflist names them.
`--uninstall` removes what it installs, the conflist first."""

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from policy.datastore.keys import DEFAULT_PREFIX
from policy.runtime import private_files
from policy.runtime.settings import (
    DEFAULT_ENDPOINTS,
    NODE_NAME_OPTION,
    check_etcd_endpoints,
    check_etcd_prefix,
    setting,
)

KUBECONFIG_NAME = "calyx-kubeconfig"
TLS_DIR_NAME = "calyx-tls"
TLS_FILES = {"etcd_ca_cert_file": "etcd-ca", "etcd_cert_file": "etcd-cert", "etcd_key_file": "etcd-key"}
PLACEHOLDER = re.compile(r"^__[A-Z0-9_]+__$")


class InstallError(Exception):
    """Bad input or a file that cannot be written: reported in one line, exit code 1."""


@dataclass(frozen=True)
class HostPaths:
    """Where files go as this container sees them (`bin_dir`, `net_dir`) and how the host's runtime
    names the network directory (`host_net_dir`), which is what the conflist must say."""

    bin_dir: Path
    net_dir: Path
    host_net_dir: Path
    conf_name: str

    @property
    def conflist(self) -> Path:
        return self.net_dir / self.conf_name

    @property
    def kubeconfig(self) -> Path:
        return self.net_dir / KUBECONFIG_NAME

    @property
    def tls_dir(self) -> Path:
        return self.net_dir / TLS_DIR_NAME


def render_conflist(template: str, values: dict[str, Any]) -> str:
    """The template (JSON) with every string that is exactly `__NAME__` replaced by values[NAME],
    typed (the MTU stays a number). An unknown placeholder is an error, not left for the plugin."""
    try:
        document = json.loads(template)
    except json.JSONDecodeError as exc:
        raise InstallError(f"network config: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None

    def fill(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {key: fill(value, f"{where}.{key}") for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value, f"{where}[{index}]") for index, value in enumerate(node)]
        if isinstance(node, str) and PLACEHOLDER.match(node):
            name = node.strip("_")
            if name not in values:
                known = ", ".join(f"__{key}__" for key in sorted(values))
                raise InstallError(f"network config {where}: unknown placeholder {node} (known: {known})")
            return values[name]
        return node

    document = fill(document, "$")
    plugins = document.get("plugins") if isinstance(document, dict) else None
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) and p.get("type") for p in plugins):
        raise InstallError("network config: not a conflist (a 'plugins' list of objects with a 'type')")
    return json.dumps(document, indent=2) + "\n"


def render_kubeconfig(server: str, ca_cert: bytes, token: str) -> str:
    """A kubeconfig the plugin uses to reach the API server with this pod's service-account token."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_cert).decode()},
            }
        ],
        "users": [{"name": "calyx-cni", "user": {"token": token}}],
        "contexts": [{"name": "calyx-cni", "context": {"cluster": "local", "user": "calyx-cni"}}],
        "current-context": "calyx-cni",
    }
    return json.dumps(document, indent=2) + "\n"  # JSON is YAML: any kubeconfig reader takes it


def api_server_url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def write_atomic(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` to `path` with `mode` by temp file and rename in the same directory; False
    (nothing written) when the file already holds exactly that with that mode."""
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o7777) == mode and not path.is_symlink():
            return False
    except OSError:
        pass  # missing or unreadable: write it
    try:
        private_files.write_atomic(path, data, mode)
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def _report(path: Path, written: bool) -> None:
    click.echo(f"{'installed' if written else 'unchanged'} {path}")


def install_plugins(bin_dir: Path, plugins: dict[str, bytes]) -> None:
    for name, data in plugins.items():
        _report(bin_dir / name, write_atomic(bin_dir / name, data, 0o755))


def tls_sources(files: dict[str, Path]) -> dict[str, bytes]:
    try:
        return {option: path.read_bytes() for option, path in files.items()}
    except OSError as exc:
        raise InstallError(f"cannot read etcd TLS file: {exc.strerror or exc}") from None


def install_tls(paths: HostPaths, files: dict[str, bytes]) -> None:
    """The etcd TLS files on the host: 0600 in a 0700 directory."""
    if not files:
        return
    try:
        paths.tls_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(paths.tls_dir, 0o700)
    except OSError as exc:
        raise InstallError(f"cannot create {paths.tls_dir}: {exc.strerror or exc}") from None
    for option, data in files.items():
        target = paths.tls_dir / TLS_FILES[option]
        _report(target, write_atomic(target, data, 0o600))


def uninstall(paths: HostPaths, plugin_names: list[str]) -> None:
    """Remove the conflist (first, so the runtime stops calling the plugin), the kubeconfig, the
    TLS files and the plugins; what is already gone is fine."""
    targets = [paths.conflist, paths.kubeconfig, *(paths.tls_dir / name for name in TLS_FILES.values())]
    targets += [paths.bin_dir / name for name in plugin_names]
    for target in targets:
        try:
            target.unlink()
            click.echo(f"removed {target}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InstallError(f"cannot remove {target}: {exc.strerror or exc}") from None
    try:
        paths.tls_dir.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InstallError(f"cannot remove {paths.tls_dir}: {exc.strerror or exc}") from None


def _plugin_sources(names: list[str], source_dir: Path) -> dict[str, bytes]:
    """Each plugin's bytes, from source_dir: the static C client (one file, no interpreter), never
    the image's Python entry points, whose interpreter the host does not have."""
    sources = {}
    for name in names:
        found = source_dir / name
        try:
            sources[name] = found.read_bytes()
        except FileNotFoundError:
            raise InstallError(f"CNI plugin {name} is not in {source_dir} (make cni-client builds it)") from None
        except OSError as exc:
            raise InstallError(f"cannot read plugin {found}: {exc.strerror or exc}") from None
        if sources[name].startswith(b"#!"):
            raise InstallError(f"{found} is a script: the host may not have its interpreter; install the C client")
    return sources


def read_kubeconfig(account_dir: Path, host: str | None, port: int) -> str | None:
    """The plugin's kubeconfig when this runs in a pod (a token is mounted), else None."""
    token_file = account_dir / "token"
    if not token_file.is_file():
        click.echo(f"no service-account token at {token_file}: no kubeconfig for the plugin")
        return None
    if not host:
        raise InstallError(f"{token_file} exists but KUBERNETES_SERVICE_HOST is not set")
    try:
        token, ca_cert = token_file.read_text().strip(), (account_dir / "ca.crt").read_bytes()
    except OSError as exc:
        raise InstallError(f"cannot read the service account in {account_dir}: {exc.strerror or exc}") from None
    return render_kubeconfig(api_server_url(host, port), ca_cert, token)


def _template(text: str | None, file: Path | None) -> str:
    if text and file:
        raise click.UsageError("give --network-config or --network-config-file, not both")
    if file:
        try:
            return file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InstallError(f"cannot read network config {file}: {exc}") from None
    if not text:
        raise click.UsageError("give the conflist template: --network-config or --network-config-file")
    return text


_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@setting(
    "--cni-bin-dir",
    envvar="CALYX_CNI_BIN_DIR",
    type=_DIR,
    default=Path("/host/opt/cni/bin"),
    show_default=True,
    help="The host's CNI plugin directory, as mounted in this container.",
)
@setting(
    "--cni-net-dir",
    envvar="CALYX_CNI_NET_DIR",
    type=_DIR,
    default=Path("/host/etc/cni/net.d"),
    show_default=True,
    help="The host's CNI configuration directory, as mounted in this container.",
)
@setting(
    "--host-cni-net-dir",
    envvar="CALYX_HOST_CNI_NET_DIR",
    type=_DIR,
    default=Path("/etc/cni/net.d"),
    show_default=True,
    help="The same directory as the host names it (the conflist's paths point there).",
)
@setting(
    "--cni-conf-name",
    envvar="CALYX_CNI_CONF_NAME",
    default="10-calyx.conflist",
    show_default=True,
    help="File name of the conflist (runtimes take the first in lexical order).",
)
@setting(
    "--network-config",
    envvar="CALYX_CNI_NETWORK_CONFIG",
    default=None,
    help="The conflist template (JSON with __PLACEHOLDERS__).",
)
@setting(
    "--network-config-file",
    envvar="CALYX_CNI_NETWORK_CONFIG_FILE",
    type=_FILE,
    default=None,
    help="The conflist template, from a file.",
)
@setting(
    "--plugins",
    envvar="CALYX_CNI_PLUGINS",
    default="calyx-cni,calyx-ipam",
    show_default=True,
    help="Comma-separated executables to copy from --plugin-source-dir into --cni-bin-dir.",
)
@setting(
    "--plugin-source-dir",
    envvar="CALYX_CNI_PLUGIN_SOURCE_DIR",
    type=_DIR,
    default=Path("/opt/calyx/cni-client"),
    show_default=True,
    help="Where the plugins are: the image's static C client of calyx-cni-server.",
)
@setting(
    "--mtu",
    envvar="CALYX_CNI_MTU",
    type=click.IntRange(68, 65535),
    default=1500,
    show_default=True,
    help="Workload interface MTU (__CNI_MTU__).",
)
@setting(
    "--cni-log-level",
    envvar="CALYX_CNI_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="The plugin's log level (__LOG_LEVEL__).",
)
@NODE_NAME_OPTION
@setting(
    "--etcd-endpoints",
    envvar="ETCD_ENDPOINTS",
    default=DEFAULT_ENDPOINTS,
    show_default=True,
    callback=check_etcd_endpoints,
    help="etcd URLs for the plugin (__ETCD_ENDPOINTS__).",
)
@setting(
    "--etcd-prefix",
    envvar="CALYX_ETCD_PREFIX",
    default=DEFAULT_PREFIX,
    show_default=True,
    callback=check_etcd_prefix,
    help="Key prefix for the plugin (__ETCD_PREFIX__).",
)
@setting(
    "--etcd-ca-cert-file",
    envvar="ETCD_CA_CERT_FILE",
    type=_FILE,
    default=None,
    help="CA bundle, copied to <net dir>/calyx-tls/etcd-ca (__ETCD_CA_CERT_FILE__).",
)
@setting(
    "--etcd-cert-file",
    envvar="ETCD_CERT_FILE",
    type=_FILE,
    default=None,
    help="Client certificate, copied to calyx-tls/etcd-cert (__ETCD_CERT_FILE__).",
)
@setting(
    "--etcd-key-file",
    envvar="ETCD_KEY_FILE",
    type=_FILE,
    default=None,
    help="Client key, copied to calyx-tls/etcd-key, mode 0600 (__ETCD_KEY_FILE__).",
)
@setting(
    "--service-account-dir",
    envvar="CALYX_SERVICE_ACCOUNT_DIR",
    type=_DIR,
    default=Path("/var/run/secrets/kubernetes.io/serviceaccount"),
    show_default=True,
    help="This pod's token and ca.crt, for the plugin's kubeconfig (__KUBECONFIG_FILEPATH__).",
)
@setting(
    "--kubernetes-service-host",
    envvar="KUBERNETES_SERVICE_HOST",
    default=None,
    help="The API server's address (the kubelet sets the variable in every pod).",
)
@setting(
    "--kubernetes-service-port",
    envvar="KUBERNETES_SERVICE_PORT",
    type=click.IntRange(1, 65535),
    default=443,
    show_default=True,
    help="The API server's port.",
)
@click.option("--uninstall", is_flag=True, help="Remove the conflist, kubeconfig, TLS files and plugins instead.")
def cli(**options):
    """Install the Calyx CNI plugins and their configuration on this host (idempotent; atomic files)."""
    paths = HostPaths(
        options["cni_bin_dir"], options["cni_net_dir"], options["host_cni_net_dir"], options["cni_conf_name"]
    )
    names = [name.strip() for name in options["plugins"].split(",") if name.strip()]
    try:
        if options["uninstall"]:
            uninstall(paths, names)
            return
        # Everything is read and rendered before anything is written: bad input writes nothing.
        template = _template(options["network_config"], options["network_config_file"])
        for directory in (paths.bin_dir, paths.net_dir):
            if not directory.is_dir():
                raise InstallError(f"{directory} does not exist (mount the host's CNI directories there)")
        plugins = _plugin_sources(names, options["plugin_source_dir"])
        tls = tls_sources({key: options[key] for key in TLS_FILES if options[key]})
        kubeconfig = read_kubeconfig(
            options["service_account_dir"], options["kubernetes_service_host"], options["kubernetes_service_port"]
        )
        host_tls = paths.host_net_dir / TLS_DIR_NAME
        values = {
            "ETCD_ENDPOINTS": options["etcd_endpoints"],
            "ETCD_PREFIX": options["etcd_prefix"],
            **{option.upper(): str(host_tls / TLS_FILES[option]) if option in tls else "" for option in TLS_FILES},
            "NODENAME": options["node_name"],
            "CNI_MTU": options["mtu"],
            "KUBECONFIG_FILEPATH": str(paths.host_net_dir / KUBECONFIG_NAME) if kubeconfig else "",
            "LOG_LEVEL": options["cni_log_level"].lower(),
        }
        conflist = render_conflist(template, values)
        install_plugins(paths.bin_dir, plugins)
        install_tls(paths, tls)
        if kubeconfig:
            _report(paths.kubeconfig, write_atomic(paths.kubeconfig, kubeconfig.encode(), 0o600))
        _report(paths.conflist, write_atomic(paths.conflist, conflist.encode(), 0o600))
    except InstallError as exc:
        raise click.ClickException(str(exc)) from None


def main():
    cli(prog_name="calyx-install-cni")


if __name__ == "__main__":
    main()
