"""`policyctl workload add|remove`: attach a bare-metal workload as a container runtime would.

Both run the calyx-cni plugin (ADD, DEL) with a network configuration made from the flags, so a
workload started by a script gets exactly what a pod gets: an address from IPAM, the veth of the
workload recipe, its WorkloadEndpoint, and a return only once felix has programmed it; on any
failure ADD undoes all of it. The plugin is run, not imported: policy never imports felix.

An address given with --ip is reserved in IPAM under the attachment's handle first; the IPAM
plugin hands an ADD the addresses its handle already holds, and DEL releases them."""

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import click

from policy.ctl.errors import run_datastore as _run
from policy.datastore.ipam import IPAM

CNI_VERSION = "1.0.0"
PLUGIN_TIMEOUT = 180.0  # the plugin bounds its own waits (felix, etcd); this only stops a hung one


def _labels(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value")
        labels[key] = value
    return labels


def _name(ctx, param, value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise click.BadParameter(f"{value!r} is not NAMESPACE/NAME")
    return namespace, name


def _address(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


def _plugin_dir(value: str | None) -> str:
    if value:
        return value
    found = shutil.which("calyx-cni")
    if found is None:
        raise click.UsageError("calyx-cni is not on PATH: give --cni-path (the directory holding calyx-cni)")
    return str(Path(found).parent)


def netconf(etcd: dict, network: str, node: str, namespace: str, labels: dict[str, str], **options) -> dict:
    """The configuration a runtime would hand calyx-cni for this workload."""
    conf = {
        "cniVersion": CNI_VERSION,
        "name": network,
        "type": "calyx-cni",
        "etcd_endpoints": etcd["etcd_endpoints"],
        "etcd_prefix": etcd["etcd_prefix"],
        "etcd_timeout": etcd["etcd_timeout"],
        **{key: etcd[key] for key in ("etcd_ca_cert_file", "etcd_cert_file", "etcd_key_file") if etcd[key]},
        "nodename": node,
        "namespace": namespace,
        "mtu": options["mtu"],
        "log_file_path": options["log_file"],
        "felix_health_url": options["felix_health_url"],
        "policy_setup_timeout_seconds": options["felix_timeout"],
        "ipam": {"type": "calyx-ipam"},
        "args": {"cni": {"labels": [{"key": k, "value": v} for k, v in sorted(labels.items())]}},
    }
    address = options.get("address")
    if address:  # only the family given: a v4 address alone does not also draw a v6 one
        conf["ipam"]["assign_ipv4" if ipaddress.ip_address(address).version == 6 else "assign_ipv6"] = False
    return conf


def run_plugin(command: str, conf: dict, name: str, netns: str, cni_path: str) -> dict:
    """Run calyx-cni as the CNI spec says; its error (code, msg) becomes a one-line failure."""
    env = {
        **os.environ,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": name,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path,
        "CNI_ARGS": "",
    }
    plugin = str(Path(cni_path.split(":")[0]) / "calyx-cni")
    try:
        done = subprocess.run(
            [plugin], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=PLUGIN_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise click.ClickException(f"cannot run {plugin}: {exc}") from None
    output = done.stdout.decode(errors="replace").strip()
    try:
        result = json.loads(output) if output else {}
    except ValueError:
        result = {"msg": output[:500]}
    if done.returncode != 0:
        details = f" ({result['details']})" if result.get("details") else ""
        raise click.ClickException(f"{command} failed: {result.get('msg', 'no message')}{details}")
    return result


_common = [
    click.option("--node", required=True, help="The node the workload runs on (its felix programs it)."),
    click.option("--name", "workload", required=True, callback=_name, help="NAMESPACE/NAME of the workload."),
    click.option("--network", default="calyx", show_default=True, help="Network name (the IPAM handle's prefix)."),
    click.option("--cni-path", default=None, help="Directory holding calyx-cni and calyx-ipam (default: from PATH)."),
    click.option("--mtu", type=click.IntRange(68, 65535), default=1500, show_default=True),
    click.option("--log-file", default="/var/log/calyx/cni/cni.log", show_default=True, help="The plugin's log file."),
    click.option("--felix-health-url", default="http://127.0.0.1:9099", show_default=True),
    click.option(
        "--felix-timeout",
        type=click.FloatRange(min=1, max=600),
        default=30.0,
        show_default=True,
        help="Seconds to wait for felix to program the workload.",
    ),
]


def _with_common(command):
    for option in reversed(_common):
        command = option(command)
    return command


@click.group()
def workload():
    """Attach and detach bare-metal workloads (a network namespace each) like the CNI plugin does."""


@workload.command()
@click.option("--netns", required=True, type=click.Path(exists=True, dir_okay=False), help="The workload's netns.")
@click.option("--label", "labels", multiple=True, callback=_labels, help="key=value, repeatable.")
@click.option("--ip", "address", default=None, callback=_address, help="This address instead of one from IPAM.")
@_with_common
@click.pass_context
def add(ctx, netns, labels, address, node, workload, network, cni_path, **options):
    """Give the workload an address, its veth and endpoint; return once felix has programmed it."""
    etcd = ctx.find_root().params
    namespace, name = workload
    path = _plugin_dir(cni_path)
    conf = netconf(etcd, network, node, namespace, labels, address=address, **options)
    if address:
        manager = IPAM(ctx.obj.store.kv, ctx.obj.store.prefix)
        _run(lambda: manager.allocate(node, f"{network}.{name}", address=address))
    try:
        result = run_plugin("ADD", conf, name, netns, path)
    except click.ClickException:
        handle = f"{network}.{name}"
        if address and _run(lambda: manager.handle(handle)):  # the plugin's undo may have released it
            _run(lambda: manager.release_handle(handle))
        raise
    interface = next((i["name"] for i in result.get("interfaces", []) if not i.get("sandbox")), "?")
    addresses = ", ".join(ip["address"] for ip in result.get("ips", []))
    click.echo(f"workload {namespace}/{name} on {node}: {addresses} via {interface}")


@workload.command()
@click.option("--netns", default="", help="The workload's netns, if it still exists.")
@_with_common
@click.pass_context
def remove(ctx, netns, node, workload, network, cni_path, **options):
    """Remove the workload's endpoint, veth and addresses; a workload already gone is fine."""
    etcd = ctx.find_root().params
    namespace, name = workload
    conf = netconf(etcd, network, node, namespace, {}, **options)
    run_plugin("DEL", conf, name, netns, _plugin_dir(cni_path))
    click.echo(f"workload {namespace}/{name} removed from {node}")
