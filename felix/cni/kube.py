"""Kubernetes mode (`policy: {type: k8s}` with `kubernetes.kubeconfig`): ADD reads the pod's
labels, named ports and service account from the API, so its endpoint is selected by the
policies that name it from the first packet. The client is imported only in this mode."""

import logging

from felix.cni.config import NetConf
from felix.cni.identity import K8S, Workload
from felix.cni.plugin import PodInfo
from felix.cni.protocol import INVALID_CONFIG, TRY_AGAIN_LATER, CniError
from policy.model.resources import EndpointPort

log = logging.getLogger(__name__)

API_TIMEOUT = 5.0


def pod_info(conf: NetConf, workload: Workload) -> PodInfo:
    if workload.orchestrator != K8S or not conf.kubernetes_mode or not conf.kubernetes.kubeconfig:
        return PodInfo(labels=conf.labels())
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        api = client.CoreV1Api(config.new_client_from_config(config_file=conf.kubernetes.kubeconfig))
    except Exception as exc:  # the loader raises ConfigException, OSError, YAML errors...
        raise CniError(
            INVALID_CONFIG, f"cannot load kubernetes.kubeconfig {conf.kubernetes.kubeconfig}: {exc}"
        ) from None
    where = f"pod {workload.namespace}/{workload.workload}"
    try:
        pod = api.read_namespaced_pod(workload.workload, workload.namespace, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        raise CniError(
            TRY_AGAIN_LATER, f"the Kubernetes API refused to give {where}: {exc.status} {exc.reason}"
        ) from None
    except Exception as exc:  # urllib3's connection errors
        raise CniError(
            TRY_AGAIN_LATER, f"cannot reach the Kubernetes API for {where}: {exc}", "is the API server up?"
        ) from None
    return pod_info_of(pod)


def pod_info_of(pod) -> PodInfo:
    """Labels, named ports and service account of a V1Pod."""
    ports = []
    for container in pod.spec.containers or []:
        for port in container.ports or []:
            if port.name:
                ports.append(EndpointPort(name=port.name, protocol=port.protocol or "TCP", port=port.container_port))
    return PodInfo(dict(pod.metadata.labels or {}), tuple(ports), pod.spec.service_account_name or None)
