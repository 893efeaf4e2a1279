"""A small Kubernetes API server for tests: the wire protocol the official client speaks, for
the kinds calyx-kube-controllers reads (docs/kubernetes.md says what it covers and what not).

- GET a collection: a list with metadata.resourceVersion, paged by `limit` and `continue`
  (each page from the first page's snapshot); `?watch=true&resourceVersion=N`: a chunked stream
  of JSON lines (ADDED, MODIFIED, DELETED after N; BOOKMARK every `bookmark_interval` when
  `allowWatchBookmarks`), ended after `timeoutSeconds`; an ERROR event with a 410 Status for an
  N older than the history kept (`expire()` drops it all and ends open watches).
- GET, POST, PUT (with optimistic concurrency on metadata.resourceVersion), PATCH (JSON merge
  patch) and DELETE of single objects; POST of core/v1 Events.
- Every request is recorded (verb, group, resource, namespace, user agent) for the RBAC test.

It binds where it is told (127.0.0.1 in unit tests, a lab namespace's address otherwise) and
keeps everything in memory; tests can also drive the store directly (create, patch, delete)."""

import bisect
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# resource -> (group path, kind, namespaced)
RESOURCES = {
    "namespaces": ("api/v1", "Namespace", False),
    "nodes": ("api/v1", "Node", False),
    "pods": ("api/v1", "Pod", True),
    "serviceaccounts": ("api/v1", "ServiceAccount", True),
    "events": ("api/v1", "Event", True),
    "networkpolicies": ("apis/networking.k8s.io/v1", "NetworkPolicy", True),
}
API_VERSIONS = {"api/v1": "v1", "apis/networking.k8s.io/v1": "networking.k8s.io/v1"}
HISTORY = 10_000  # watch events kept; older resourceVersions get 410


@dataclass(frozen=True)
class Call:
    verb: str  # get, list, watch, create, update, patch, delete (RBAC verbs)
    group: str  # "" (core) or networking.k8s.io
    resource: str
    namespace: str | None
    user_agent: str


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def merge_patch(target, patch):
    """RFC 7386: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class KubeStore:
    """The objects, one resourceVersion counter for all kinds, and the watch history."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str | None, str], dict]] = {r: {} for r in RESOURCES}
        self.version = 1
        self.history: list[tuple[int, str, str, dict]] = []  # (version, resource, type, object)
        self.oldest = 1  # a watch from an older version is 410
        self.generation = 0  # bumped to end every open watch
        self.paused = False  # open watches deliver nothing (a partition) until this is cleared
        self.cond = threading.Condition()

    def _bump(self, resource: str, kind: str, obj: dict) -> dict:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, resource, kind, copy.deepcopy(obj)))
        if len(self.history) > HISTORY:
            dropped = self.history[: len(self.history) - HISTORY]
            del self.history[: len(dropped)]
            self.oldest = dropped[-1][0]
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def create(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        group, kind, namespaced = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (meta.get("namespace") if namespaced else None, meta.get("name"))
        obj.setdefault("apiVersion", API_VERSIONS[group])
        obj.setdefault("kind", kind)
        with self.cond:
            if key in self.objects[resource]:
                raise ApiError(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self.objects[resource][key] = obj
            return self._bump(resource, "ADDED", obj)

    def get(self, resource: str, namespace: str | None, name: str) -> dict:
        with self.cond:
            obj = self.objects[resource].get((namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return copy.deepcopy(obj)

    def update(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        namespaced = RESOURCES[resource][2]
        meta = obj.get("metadata") or {}
        key = (namespace or meta.get("namespace") if namespaced else None, meta.get("name"))
        with self.cond:
            current = self.objects[resource].get(key)
            if current is None:
                raise ApiError(404, "NotFound", f'{resource} "{key[1]}" not found')
            asked = meta.get("resourceVersion")
            if asked and asked != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified; please apply your changes again")
            obj = copy.deepcopy(obj)
            for field in ("uid", "creationTimestamp", "namespace"):
                if field in current["metadata"]:
                    obj["metadata"][field] = current["metadata"][field]
            obj.setdefault("apiVersion", current.get("apiVersion"))
            obj.setdefault("kind", current.get("kind"))
            self.objects[resource][key] = obj
            return self._bump(resource, "MODIFIED", obj)

    def patch(self, resource: str, namespace: str | None, name: str, patch: dict) -> dict:
        with self.cond:
            current = self.get(resource, namespace, name)
            patched = merge_patch(current, patch)
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(resource, patched, namespace)

    def delete(self, resource: str, namespace: str | None, name: str) -> dict:
        with self.cond:
            obj = self.objects[resource].pop((namespace, name), None)
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return self._bump(resource, "DELETED", obj)

    def snapshot(self, resource: str, namespace: str | None) -> tuple[list[dict], str]:
        with self.cond:
            items = [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.objects[resource].items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
                if namespace is None or ns == namespace
            ]
            return items, str(self.version)

    def after(self, version: int, resource: str) -> list[tuple[int, str, dict]]:
        """(version, type, object) of the resource's events after `version` (lock held)."""
        start = bisect.bisect_right(self.history, version, key=lambda event: event[0])
        return [(v, t, o) for v, r, t, o in self.history[start:] if r == resource]

    def expire(self) -> None:
        """Forget all history and end every open watch: the next watch from an old version gets 410."""
        with self.cond:
            self.history.clear()
            self.version += 1  # a list now gives a version a watch can start from
            self.oldest = self.version
            self.generation += 1
            self.cond.notify_all()

    def end_watches(self) -> None:
        """End every open watch (as an API server restart would), history kept."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()


class KubeAPIServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, bookmark_interval: float = 1.0):
        self.store = KubeStore()
        self.calls: list[Call] = []
        self.bookmark_interval = bookmark_interval
        self._pages: dict[str, tuple[list[dict], str]] = {}
        self._calls_lock = threading.Lock()
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kube-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "KubeAPIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.store.end_watches()
        self.httpd.shutdown()
        self.httpd.server_close()

    def write_kubeconfig(self, path) -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": self.url}}],
            "users": [{"name": "lab", "user": {"token": "lab-token"}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
            "current-context": "lab",
        }
        with open(path, "w") as f:
            json.dump(config, f)
        return str(path)

    def record(self, call: Call) -> None:
        with self._calls_lock:
            self.calls.append(call)

    def calls_by(self, user_agent_prefix: str) -> list[Call]:
        with self._calls_lock:
            return [c for c in self.calls if c.user_agent.startswith(user_agent_prefix)]

    def page(self, items: list[dict], version: str, limit: int) -> tuple[list[dict], str | None]:
        """The first `limit` items, and a continue token for the rest (of the same snapshot)."""
        if not limit or len(items) <= limit:
            return items, None
        token = uuid.uuid4().hex
        with self._calls_lock:
            self._pages[token] = (items[limit:], version)
        return items[:limit], token

    def continued(self, token: str) -> tuple[list[dict], str]:
        with self._calls_lock:
            found = self._pages.pop(token, None)
        if found is None:
            raise ApiError(410, "Expired", "the continue token is no longer valid")
        return found


class _Handler(BaseHTTPRequestHandler):
    api: KubeAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- routing --------------------------------------------------------------------------
    def _route(self):
        """(group path, resource, namespace, name, query) of the request; ApiError if none."""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        for group in ("api/v1", "apis/networking.k8s.io/v1"):
            prefix = group.split("/")
            if segments[: len(prefix)] != prefix:
                continue
            rest = segments[len(prefix) :]
            namespace = None
            if len(rest) >= 3 and rest[0] == "namespaces":
                namespace, rest = rest[1], rest[2:]
            elif len(rest) == 2 and rest[0] == "namespaces" and group == "api/v1":
                return group, "namespaces", None, rest[1], query
            if rest and rest[0] in RESOURCES and RESOURCES[rest[0]][0] == group and len(rest) <= 2:
                return group, rest[0], namespace, rest[1] if len(rest) == 2 else None, query
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({parts.path})")

    def _record(self, verb: str, group: str, resource: str, namespace: str | None) -> None:
        api_group = "" if group == "api/v1" else group.split("/")[1]
        self.api.record(Call(verb, api_group, resource, namespace, self.headers.get("User-Agent", "")))

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body is not an object")
        return body

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        try:
            group, resource, namespace, name, query = self._route()
            store = self.api.store
            if method == "GET" and name is None and query.get("watch") in ("true", "1"):
                self._record("watch", group, resource, namespace)
                return self._watch(resource, namespace, query)
            if method == "GET" and name is None:
                self._record("list", group, resource, namespace)
                return self._list(group, resource, namespace, query)
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            self._record(verb, group, resource, namespace)
            if method == "GET":
                return self._send(200, store.get(resource, namespace, name))
            if method == "POST" and name is None:
                return self._send(201, store.create(resource, self._body(), namespace))
            if method == "PUT" and name:
                return self._send(200, store.update(resource, self._body(), namespace))
            if method == "PATCH" and name:
                return self._send(200, store.patch(resource, namespace, name, self._body()))
            if method == "DELETE" and name:
                return self._send(200, store.delete(resource, namespace, name))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        except ApiError as exc:
            self._send(exc.code, exc.status())

    do_GET = lambda self: self._serve("GET")  # noqa: E731
    do_POST = lambda self: self._serve("POST")  # noqa: E731
    do_PUT = lambda self: self._serve("PUT")  # noqa: E731
    do_PATCH = lambda self: self._serve("PATCH")  # noqa: E731
    do_DELETE = lambda self: self._serve("DELETE")  # noqa: E731

    def _list(self, group: str, resource: str, namespace: str | None, query: dict) -> None:
        token = query.get("continue")
        items, version = self.api.continued(token) if token else self.api.store.snapshot(resource, namespace)
        items, rest = self.api.page(items, version, int(query.get("limit") or 0))
        kind = RESOURCES[resource][1]
        meta = {"resourceVersion": version, **({"continue": rest} if rest else {})}
        self._send(200, {"kind": f"{kind}List", "apiVersion": API_VERSIONS[group], "metadata": meta, "items": items})

    # -- watch ----------------------------------------------------------------------------
    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, resource: str, namespace: str | None, query: dict) -> None:
        store = self.api.store
        kind = RESOURCES[resource][1]
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")  # a stream is not reused for the next request
        self.end_headers()
        try:
            with store.cond:
                since = int(query.get("resourceVersion") or 0)
                generation = store.generation
                if since and since < store.oldest:
                    expired = ApiError(410, "Expired", f"too old resource version: {since} ({store.oldest})")
                    self._chunk({"type": "ERROR", "object": expired.status()})
                    return self._end()
                if not since:  # "watch from now, with the current state as ADDED first"
                    pending = [("ADDED", o) for o in store.snapshot(resource, namespace)[0]]
                    since = store.version
                else:
                    pending = []
            next_bookmark = time.monotonic() + self.api.bookmark_interval
            while time.monotonic() < deadline:
                for event_type, obj in pending:
                    self._chunk({"type": event_type, "object": obj})
                with store.cond:
                    if store.generation != generation:
                        break
                    if store.paused:
                        store.cond.wait(0.1)
                        pending = []
                        continue
                    events = store.after(since, resource)
                    if not events and not (bookmarks and time.monotonic() >= next_bookmark):
                        store.cond.wait(0.1)
                        if store.generation != generation:
                            break
                        events = store.after(since, resource)
                    pending = [
                        (t, o) for _, t, o in events if namespace is None or o["metadata"].get("namespace") == namespace
                    ]
                    since = max([since] + [v for v, _, _ in events])
                    current = store.version
                if bookmarks and time.monotonic() >= next_bookmark and not pending:
                    bookmark = {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(current)}}
                    self._chunk({"type": "BOOKMARK", "object": bookmark})
                    since = max(since, current)
                    next_bookmark = time.monotonic() + self.api.bookmark_interval
            self._end()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True
