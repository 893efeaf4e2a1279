"""The KV seam implemented on python-etcd3: failover across endpoints, TLS, paged lists, CAS.

python-etcd3 0.12's own watcher re-opens a failed stream in a tight loop with no backoff and
can hang when a watch is created on a compacted revision, so `watch` drives the Watch RPC
itself through the library's generated stubs and leaves retry policy to the caller."""

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import etcd3
import grpc
from etcd3 import etcdrpc
from etcd3.utils import increment_last_byte

from policy.datastore.kv import (
    ABSENT,
    ANY,
    LIST_PAGE_SIZE,
    PRESENT,
    Change,
    Compacted,
    Conflict,
    KeyValue,
    KVError,
    Unavailable,
    Write,
    key_bytes,
    key_text,
)

log = logging.getLogger(__name__)

# Detect a silently dead peer within ~15 s and reconnect quickly after an etcd restart.
# (grpc.min_reconnect_backoff_ms is left alone: grpc uses it as the connect timeout.)
# Pings only while a call is open (felix always has its watch): etcd forbids pings on an idle
# connection and answers them with GOAWAY "too_many_pings".
_GRPC_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a list page larger than this is asked for again in smaller pages
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    timeout: float = 5.0


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """'https://[fd00::1]:2379' -> ('https', 'fd00::1', 2379); scheme defaults to http."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid etcd endpoint {url!r}: expected http(s)://host:port")
    return parts.scheme, parts.hostname, parts.port or 2379


class ResponseTooLarge(KVError):
    """A response over the client's receive limit (gRPC RESOURCE_EXHAUSTED)."""


def _rpc_error(exc: grpc.RpcError) -> KVError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:  # gRPC's own words
        return ResponseTooLarge(f"etcd error {code.name}: {details}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return Compacted(0)
    if code in _RETRYABLE:
        return Unavailable(f"{code.name}: {details}")
    return KVError(f"etcd error {code.name}: {details}")


class EtcdKV:
    def __init__(self, settings: EtcdSettings, max_response_bytes: int = MAX_RESPONSE_BYTES):
        self._settings = settings
        self._grpc_options = [*_GRPC_OPTIONS, ("grpc.max_receive_message_length", max_response_bytes)]
        self._endpoints = [parse_endpoint(url) for url in settings.endpoints]
        if not self._endpoints:
            raise ValueError("no etcd endpoints configured")
        if any(scheme == "https" for scheme, _, _ in self._endpoints) and not settings.ca_cert_file:
            raise ValueError("https etcd endpoints need a CA certificate (ETCD_CA_CERT_FILE)")
        if bool(settings.cert_file) != bool(settings.key_file):
            raise ValueError("a client certificate needs both ETCD_CERT_FILE and ETCD_KEY_FILE")
        self._lock = threading.Lock()
        self._index = 0
        self._client: etcd3.Etcd3Client | None = None

    @property
    def endpoint(self) -> str:
        scheme, host, port = self._endpoints[self._index]
        return f"{scheme}://{host}:{port}"

    def _connect(self) -> etcd3.Etcd3Client:
        with self._lock:
            if self._client is None:
                scheme, host, port = self._endpoints[self._index]
                tls = scheme == "https"
                host = f"[{host}]" if ":" in host else host
                self._client = etcd3.Etcd3Client(
                    host=host,
                    port=port,
                    ca_cert=self._settings.ca_cert_file if tls else None,
                    cert_key=self._settings.key_file if tls else None,
                    cert_cert=self._settings.cert_file if tls else None,
                    timeout=self._settings.timeout,
                    grpc_options=self._grpc_options,
                )
            return self._client

    def _fail_over(self, client: etcd3.Etcd3Client) -> None:
        """Drop a broken connection and move to the next endpoint (a fresh channel, no stale backoff)."""
        with self._lock:
            if self._client is client:
                self._client = None
                self._index = (self._index + 1) % len(self._endpoints)
        client.close()

    def _call(self, method: str, request):
        last: KVError | None = None
        for _ in range(len(self._endpoints)):
            client = self._connect()
            try:
                stub_call = getattr(client.kvstub, method)
                return stub_call(
                    request, self._settings.timeout, credentials=client.call_credentials, metadata=client.metadata
                )
            except grpc.RpcError as exc:
                error = _rpc_error(exc)
                if not isinstance(error, Unavailable):
                    raise error from None
                log.warning("etcd endpoint %s unavailable: %s", self.endpoint, error)
                self._fail_over(client)
                last = error
        raise last or Unavailable("no etcd endpoint")

    def get(self, key: str) -> KeyValue | None:
        response = self._call("Range", etcdrpc.RangeRequest(key=key_bytes(key)))
        if not response.kvs:
            return None
        kv = response.kvs[0]
        return _key_value(kv)

    def pages(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[tuple[list[KeyValue], int]]:
        """A page too large to receive is asked for again a quarter the size, down to one key;
        after a page that came, the size doubles back towards page_size."""
        start, end = prefix.encode(), increment_last_byte(prefix.encode())
        revision, size = 0, page_size
        while True:
            request = etcdrpc.RangeRequest(key=start, range_end=end, limit=size, revision=revision)
            try:
                response = self._call("Range", request)
            except ResponseTooLarge as exc:
                if size == 1:
                    raise ResponseTooLarge(
                        f"the first key from {key_text(start)} alone is over the receive limit: {exc}"
                    ) from None
                size = max(1, size // 4)
                log.info("a list page of %s from %s was too large: asking for %d keys", prefix, key_text(start), size)
                continue
            size = min(page_size, size * 2)
            revision = revision or response.header.revision
            yield (
                [KeyValue(key_text(kv.key), kv.value, kv.mod_revision, kv.create_revision) for kv in response.kvs],
                revision,
            )
            if not response.more or not response.kvs:
                return
            start = response.kvs[-1].key + b"\0"

    def prefix_state(self, prefix: str) -> tuple[int, int]:
        start, end = prefix.encode(), increment_last_byte(prefix.encode())
        count = self._call("Range", etcdrpc.RangeRequest(key=start, range_end=end, count_only=True)).count
        newest = self._call(
            "Range",
            etcdrpc.RangeRequest(
                key=start,
                range_end=end,
                limit=1,
                keys_only=True,
                sort_order=etcdrpc.RangeRequest.DESCEND,
                sort_target=etcdrpc.RangeRequest.MOD,
            ),
        ).kvs
        return count, (newest[0].mod_revision if newest else 0)

    def commit(self, writes: Sequence[Write]) -> int:
        compares, success = [], []
        for write in writes:
            key = key_bytes(write.key)
            if write.expect == PRESENT:
                compares.append(
                    etcdrpc.Compare(result=etcdrpc.Compare.GREATER, target=etcdrpc.Compare.VERSION, key=key, version=0)
                )
            elif write.expect is not ANY:
                compares.append(
                    etcdrpc.Compare(
                        result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD, key=key, mod_revision=write.expect
                    )
                )
            if write.value is None:
                success.append(etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key)))
            else:
                success.append(etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=write.value)))
        response = self._call("Txn", etcdrpc.TxnRequest(compare=compares, success=success))
        if not response.succeeded:
            raise Conflict(self._explain(writes))
        return response.header.revision

    def _explain(self, writes: Sequence[Write]) -> list[str]:
        failures = []
        for write in writes:
            if write.expect is ANY:
                continue
            current = self.get(write.key)
            if write.expect == ABSENT and current is not None:
                failures.append(f"{write.key} already exists")
            elif write.expect == PRESENT and current is None:
                failures.append(f"{write.key} does not exist")
            elif write.expect > 0 and (current is None or current.mod_revision != write.expect):
                now = "deleted" if current is None else f"at revision {current.mod_revision}"
                failures.append(f"{write.key} was modified (expected revision {write.expect}, now {now})")
        return failures or ["a precondition failed (the data changed meanwhile)"]

    def compact(self, revision: int) -> None:
        """Forget the history before `revision` (calyx-kube-controllers does this periodically,
        as Calico's controllers do, so a long-lived cluster's etcd does not grow without bound)."""
        self._call("Compact", etcdrpc.CompactionRequest(revision=revision))

    def watch(self, prefix: str, start_revision: int, stop: threading.Event) -> Iterator[tuple[list[Change], int]]:
        client = self._connect()
        create = etcdrpc.WatchCreateRequest(
            key=prefix.encode(), range_end=increment_last_byte(prefix.encode()), start_revision=start_revision
        )
        call_holder: list = []
        finished = threading.Event()

        def requests():
            """Keep the request side open; cancel the stream promptly once asked to stop."""
            yield etcdrpc.WatchRequest(create_request=create)
            while not finished.wait(0.2):
                if stop.is_set():
                    call_holder[0].cancel()
                    return

        call = etcdrpc.WatchStub(client.channel).Watch(
            requests(), credentials=client.call_credentials, metadata=client.metadata
        )
        call_holder.append(call)
        try:
            for response in call:
                if response.compact_revision:
                    raise Compacted(response.compact_revision)
                if response.canceled:
                    raise Unavailable(f"watch cancelled by etcd: {response.cancel_reason}")
                if response.created:
                    log.debug("watch %d created on %s from revision %d", response.watch_id, prefix, start_revision)
                if not response.events:
                    continue
                changes = [
                    Change(
                        key_text(ev.kv.key),
                        None if ev.type == ev.DELETE else ev.kv.value,
                        ev.kv.mod_revision,
                        ev.kv.create_revision,
                    )
                    for ev in response.events
                ]
                yield changes, response.header.revision
            if not stop.is_set():
                raise Unavailable("etcd closed the watch stream")
        except grpc.RpcError as exc:
            if stop.is_set():
                return
            self._fail_over(client)
            raise Unavailable(f"watch stream broke: {_rpc_error(exc)}") from None
        finally:
            finished.set()
            call.cancel()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _key_value(kv) -> KeyValue:
    return KeyValue(key_text(kv.key), kv.value, kv.mod_revision, kv.create_revision)
