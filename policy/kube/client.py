"""The seam at the Kubernetes API, on the official `kubernetes` client.

Lists and watch streams are read as JSON (`_preload_content=False`) rather than through the
client's generated models: 10,000 pods decoded into V1Pod objects cost seconds and hundreds of
megabytes, and only a few fields of each are used. The client still does everything else:
kubeconfig or in-cluster configuration, authentication, TLS, URLs and parameters."""

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

USER_AGENT = "calyx-kube-controllers"
PAGE_SIZE = 500
WATCH_TIMEOUT = 300  # seconds the server keeps a watch open; then it is re-opened from where it was
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 90.0  # a silent watch (no event, no bookmark) for 90 s is broken


class KubeError(Exception):
    """The API could not be reached or refused a request; the caller backs off and retries."""


class Expired(KubeError):
    """410 Gone: the resourceVersion is older than the server keeps; list again."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict


@dataclass(frozen=True)
class Kind:
    """A watched kind: its name in the API (the RBAC resource), group, and client calls."""

    resource: str  # pods, namespaces, serviceaccounts, nodes, networkpolicies
    api: str  # CoreV1Api, NetworkingV1Api
    list_call: str  # the all-namespaces list function
    get_call: str  # the single-object read
    namespaced: bool


KINDS = {
    "namespaces": Kind("namespaces", "CoreV1Api", "list_namespace", "read_namespace", False),
    "pods": Kind("pods", "CoreV1Api", "list_pod_for_all_namespaces", "read_namespaced_pod", True),
    "serviceaccounts": Kind(
        "serviceaccounts",
        "CoreV1Api",
        "list_service_account_for_all_namespaces",
        "read_namespaced_service_account",
        True,
    ),
    "nodes": Kind("nodes", "CoreV1Api", "list_node", "read_node", False),
    "networkpolicies": Kind(
        "networkpolicies",
        "NetworkingV1Api",
        "list_network_policy_for_all_namespaces",
        "read_namespaced_network_policy",
        True,
    ),
}


class KubeSource(Protocol):
    def list(self, resource: str) -> tuple[list[dict], str]:
        """Every object of a kind (one consistent snapshot) and the resourceVersion to watch from."""
        ...

    def watch(self, resource: str, resource_version: str, stop: threading.Event) -> Iterator[WatchEvent]:
        """Events after resource_version; returns when the server ends the watch or stop is set.
        Raises Expired (410) or KubeError."""
        ...

    def create_event(self, namespace: str, event: dict) -> None: ...


def api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """From a kubeconfig file, or (None) the pod's service account (in-cluster)."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    configuration.retries = False  # retry policy is the reflector's, with backoff
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = USER_AGENT
    return client


def _error(exc: Exception) -> KubeError:
    if isinstance(exc, ApiException):
        if exc.status == 410:
            return Expired(f"410 Gone: {exc.reason}")
        return KubeError(f"API server answered {exc.status} {exc.reason}")
    return KubeError(f"API server unreachable: {exc}")


class KubeClient:
    def __init__(self, client: kubernetes.client.ApiClient):
        self._core = kubernetes.client.CoreV1Api(client)
        self._apis = {"CoreV1Api": self._core, "NetworkingV1Api": kubernetes.client.NetworkingV1Api(client)}

    def _call(self, resource: str, name: str):
        kind = KINDS[resource]
        return getattr(self._apis[kind.api], name)

    def list(self, resource: str) -> tuple[list[dict], str]:
        call = self._call(resource, KINDS[resource].list_call)
        items: list[dict] = []
        token, version = None, ""
        try:
            while True:
                response = call(
                    limit=PAGE_SIZE,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                )
                page = json.loads(response.data)
                items += [item for item in page.get("items") or [] if isinstance(item, dict)]
                meta = page.get("metadata") or {}
                version = version or str(meta.get("resourceVersion") or "")
                token = meta.get("continue")
                if not token:
                    return items, version
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise _error(exc) from None

    def watch(self, resource: str, resource_version: str, stop: threading.Event) -> Iterator[WatchEvent]:
        call = self._call(resource, KINDS[resource].list_call)
        try:
            response = call(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_TIMEOUT,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from None
        done = threading.Event()

        def close_on_stop() -> None:
            while not done.wait(0.2):
                if stop.is_set():
                    response.shutdown()
                    return

        threading.Thread(target=close_on_stop, name=f"watch-{resource}-stop", daemon=True).start()
        try:
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event = _event(line)
                if event.type == "ERROR":
                    code = event.object.get("code")
                    reason = f"{event.object.get('reason')}: {event.object.get('message')}"
                    raise Expired(reason) if code == 410 else KubeError(f"watch error {code} {reason}")
                yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if not stop.is_set():
                raise _error(exc) from None
        finally:
            done.set()
            response.release_conn()

    def create_event(self, namespace: str, event: dict) -> None:
        body = kubernetes.client.CoreV1Event.model_validate(event)
        try:
            self._core.create_namespaced_event(namespace, body, _preload_content=False)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from None


def _event(line: str) -> WatchEvent:
    try:
        data = json.loads(line)
    except ValueError:
        raise KubeError(f"watch sent a line that is not JSON: {line[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not isinstance(data.get("object"), dict):
        raise KubeError(f"watch sent an event without type or object: {line[:200]!r}")
    return WatchEvent(data["type"], data["object"])
