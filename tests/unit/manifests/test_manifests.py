"""The Kubernetes manifests, checked without a cluster: calyx.yaml is generated from its parts,
every document passes kubernetes-validate --strict for each supported Kubernetes version, every
command, flag and environment variable a container uses is declared by the click command it
runs, probes reach where the daemons listen, RBAC grants what the code calls, and the conflist
install-cni renders from the ConfigMap is accepted by calyx-cni's parser."""

import importlib
import importlib.util
import json
import tomllib
from functools import cache
from pathlib import Path

import click
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from felix.install_cni import render_conflist

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
FILES = [MANIFESTS / "calyx.yaml", *sorted((MANIFESTS / "parts").glob("*.yaml"))]
OLDEST_SUPPORTED = (1, 30)


def supported_versions() -> list[str]:
    """Every Kubernetes minor version from 1.30 that this kubernetes-validate has schemas for."""
    versions = sorted({tuple(int(part) for part in major_minor(v).split(".")) for v in all_versions()})
    return [f"{major}.{minor}.0" for major, minor in versions if (major, minor) >= OLDEST_SUPPORTED]


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def calyx() -> list[dict]:
    return documents(MANIFESTS / "calyx.yaml")


def find(kind: str, name: str) -> dict:
    (found,) = [d for d in calyx() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def containers() -> list[tuple[str, dict]]:
    """(workload/container, container) for every init container and container of every workload."""
    found = []
    for doc in calyx():
        if doc["kind"] in ("DaemonSet", "Deployment"):
            spec = doc["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                found.append((f"{doc['metadata']['name']}/{container['name']}", container))
    return found


@cache
def scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def click_command(name: str) -> click.Command:
    """The click command object behind an installed command name (module:main -> module.cli)."""
    assert name in scripts(), f"{name}: no such command in pyproject.toml [project.scripts]"
    module = importlib.import_module(scripts()[name].split(":")[0])
    commands = [value for value in vars(module).values() if isinstance(value, click.Command)]
    assert len(commands) == 1, f"{name}: expected one click command in {module.__name__}, found {len(commands)}"
    return commands[0]


def options(command: click.Command) -> dict[str, click.Option]:
    """Every flag and every environment variable of the command, to its option."""
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for flag in param.opts + param.secondary_opts:
                found[flag] = param
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            for envvar in envvars:
                found[envvar] = param
    return found


def test_calyx_yaml_is_generated_from_the_parts():
    spec = importlib.util.spec_from_file_location("generate", MANIFESTS / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert (MANIFESTS / "calyx.yaml").read_text() == generate.render(), "run `make manifests` and commit calyx.yaml"
    assert len(calyx()) == sum(len(documents(part)) for part in FILES[1:])


def test_the_supported_versions_span_1_30_to_1_34_at_least():
    versions = supported_versions()
    print("Kubernetes versions validated:", ", ".join(versions))
    assert {"1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"} <= set(versions)


@pytest.mark.parametrize("version", supported_versions())
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_document_is_valid_kubernetes_strictly(path, version):
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_refuses_an_unknown_field():
    daemonset = find("DaemonSet", "calyx-node")
    daemonset["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, supported_versions()[-1], strict=True)


@pytest.mark.parametrize(("where", "container"), containers(), ids=[where for where, _ in containers()])
def test_commands_flags_and_environment_exist(where, container):
    command = container["command"]
    declared = options(click_command(command[0]))
    flags = [arg.split("=")[0] for arg in command[1:] + container.get("args", []) if arg.startswith("-")]
    unknown = [flag for flag in flags if flag not in declared]
    unknown += [env["name"] for env in container.get("env", []) if env["name"] not in declared]
    assert not unknown, f"{where}: {command[0]} declares no {', '.join(unknown)}"


def _effective(container: dict, command: click.Command, flag: str) -> str:
    """The value the daemon gets for a setting: the manifest's env value, else the default."""
    option = options(command)[flag]
    for env in container.get("env", []):
        if env["name"] in (option.envvar if isinstance(option.envvar, list) else [option.envvar]):
            return env["value"]
    return str(option.default)


@pytest.mark.parametrize(("where", "container"), containers(), ids=[where for where, _ in containers()])
def test_probes_reach_where_the_daemon_listens(where, container):
    """On a hostNetwork pod the kubelet probes the node IP unless the probe names a host: a daemon
    on 127.0.0.1 needs `host: 127.0.0.1`; one without a host must listen on every address."""
    probes = [container[p]["httpGet"] for p in ("livenessProbe", "readinessProbe") if "httpGet" in container.get(p, {})]
    if "initContainers" in where or not probes:
        return
    command = click_command(container["command"][0])
    host, port = _effective(container, command, "--health-host"), _effective(container, command, "--health-port")
    for probe in probes:
        assert str(probe["port"]) == port, f"{where}: probe on {probe['port']}, daemon on {port}"
        assert probe.get("host", "0.0.0.0") == host or (host == "0.0.0.0" and "host" not in probe), where


def test_every_container_is_probed_but_install_cni():
    for where, container in containers():
        if where != "calyx-node/install-cni":
            assert {"livenessProbe", "readinessProbe"} <= set(container), where


def test_kube_controllers_may_list_and_watch_what_it_mirrors_and_nothing_more():
    from policy.kube.client import KINDS

    rules = find("ClusterRole", "calyx-kube-controllers")["rules"]
    granted = {(group, resource, verb) for r in rules for group in r["apiGroups"] for resource in r["resources"]
               for verb in r["verbs"]}  # fmt: skip
    wanted = {("" if kind.api == "CoreV1Api" else "networking.k8s.io", kind.resource, verb)
              for kind in KINDS.values() for verb in ("list", "watch")}  # fmt: skip
    assert granted - {("", "events", "create")} == wanted


def test_the_node_account_may_only_read_pods_for_the_cni_plugin():
    """felix and calyx-bgp never call the API; calyx-cni reads the pod it attaches (felix/cni/kube.py)."""
    assert find("ClusterRole", "calyx-node")["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]


def test_the_node_pod_gets_the_privileges_it_justifies_and_no_more():
    spec = find("DaemonSet", "calyx-node")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] and spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    by_name = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    assert by_name["felix"]["securityContext"] == {"privileged": True}
    assert by_name["calyx-bgp"]["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "NET_BIND_SERVICE"],
    }
    assert by_name["install-cni"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert by_name["cni-server"]["securityContext"] == {"privileged": True}
    host_paths = sorted(v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v)
    assert host_paths == ["/etc/cni/net.d", "/opt/cni/bin", "/run/calyx", "/var/log/calyx/cni", "/var/run/netns"]


def test_the_cni_server_sees_the_runtime_namespaces_and_answers_on_the_conflist_socket():
    """The host's C client finds the server by the conflist's cni_socket; the server opens each
    pod's CNI_NETNS, which the runtime mounts after the pod started (HostToContainer)."""
    spec = find("DaemonSet", "calyx-node")["spec"]["template"]["spec"]
    (server,) = [c for c in spec["containers"] if c["name"] == "cni-server"]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["netns"]["mountPath"] == "/var/run/netns" and mounts["netns"]["mountPropagation"] == "HostToContainer"
    assert mounts["cni-net-dir"] == {"name": "cni-net-dir", "mountPath": "/etc/cni/net.d", "readOnly": True}
    socket_dir = {v["name"]: v for v in spec["volumes"]}[mounts["run-calyx"]["name"]]["hostPath"]["path"]
    assert mounts["run-calyx"]["mountPath"] == socket_dir == "/run/calyx"
    (socket_env,) = [e["value"] for e in server["env"] if e["name"] == "CALYX_CNI_SOCKET"]
    assert rendered_conflist()["plugins"][0]["cni_socket"] == socket_env == "/run/calyx/cni.sock"
    for probe in ("livenessProbe", "readinessProbe"):
        assert server[probe]["exec"]["command"] == ["calyx-cni-server", "--check"]


def rendered_conflist() -> dict:
    template = find("ConfigMap", "calyx-config")["data"]["cni_network_config"]
    values = {
        "ETCD_ENDPOINTS": "https://10.0.0.5:2379",
        "ETCD_PREFIX": "/calyx",
        "ETCD_CA_CERT_FILE": "/etc/cni/net.d/calyx-tls/etcd-ca",
        "ETCD_CERT_FILE": "",
        "ETCD_KEY_FILE": "",
        "NODENAME": "node-1",
        "CNI_MTU": 1500,
        "KUBECONFIG_FILEPATH": "/etc/cni/net.d/calyx-kubeconfig",
        "LOG_LEVEL": "info",
    }
    return json.loads(render_conflist(template, values))


def test_the_rendered_conflist_is_accepted_by_calyx_cni():
    config = pytest.importorskip("felix.cni.config", reason="felix/cni/ (calyx-cni) is not in the tree yet")
    conflist = rendered_conflist()
    (plugin,) = conflist["plugins"]
    # The runtime hands each plugin its own entry with the list's name and cniVersion added.
    netconf = config.parse_netconf(
        json.dumps({**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}).encode()
    )
    assert netconf.type == "calyx-cni" and netconf.ipam and netconf.ipam.type == "calyx-ipam"
    assert netconf.endpoints == ("https://10.0.0.5:2379",) and netconf.mtu == 1500 and netconf.nodename == "node-1"
    assert netconf.kubernetes_mode and netconf.kubernetes.kubeconfig == "/etc/cni/net.d/calyx-kubeconfig"
    assert {"calyx-cni", "calyx-ipam"} <= set(scripts()), "the conflist's plugin types must be installed commands"
