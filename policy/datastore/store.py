"""Typed resources over the KV seam: JSON values under <prefix>/v1/..., revisions as resourceVersion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from policy.datastore.keys import DEFAULT_PREFIX, key_of, kind_prefix, parse_key, resource_key
from policy.datastore.kv import ABSENT, ANY, KV, PRESENT, Conflict, KVError, Write
from policy.model.documents import DocumentError, Problem, parse_resource
from policy.model.resources import Resource

# etcd refuses transactions of more than 128 operations by default (--max-txn-ops).
MAX_TXN_OPS = 128

R = TypeVar("R", bound=Resource)


class NotFound(KVError):
    pass


class WriteMode(Enum):
    CREATE = "create"  # must not exist
    REPLACE = "replace"  # must exist (and match resourceVersion when given)
    APPLY = "apply"  # create or update (compare resourceVersion when given)


@dataclass(frozen=True)
class Ref:
    model: type[Resource]
    name: str
    namespace: str | None = None
    resource_version: str | None = None


def encode(resource: Resource) -> bytes:
    """The stored form: the whole resource, minus the revision (etcd keeps that)."""
    data = resource.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    data["metadata"].pop("resourceVersion", None)
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def decode(prefix: str, key: str, value: bytes, mod_revision: int) -> Resource:
    """Parse a stored value; DocumentError when it is not a valid resource for its key."""
    try:
        model, namespace, name = parse_key(prefix, key)
        data = json.loads(value)
    except ValueError as exc:
        raise DocumentError(key, None, [Problem("", str(exc))]) from None
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        data["metadata"]["resourceVersion"] = str(mod_revision)
    resource = parse_resource(data, source=key)
    if type(resource) is not model or resource.name != name or resource.namespace != namespace:
        raise DocumentError(key, None, [Problem("metadata", "kind, namespace or name disagree with the key")])
    return resource


def _decode_as(model: type[R], prefix: str, key: str, value: bytes, mod_revision: int) -> R:
    """decode() for a key read under `model`'s own prefix: the resource is of that kind."""
    resource = decode(prefix, key, value, mod_revision)
    if not isinstance(resource, model):  # decode checks the type against the key, which is model's
        raise DocumentError(key, None, [Problem("kind", f"not a {model.__name__}")])
    return resource


def _expectation(mode: WriteMode, resource_version: str | None) -> int | None:
    if mode is WriteMode.CREATE:
        return ABSENT
    if resource_version:
        return int(resource_version)
    return PRESENT if mode is WriteMode.REPLACE else ANY


class ResourceStore:
    def __init__(self, kv: KV, prefix: str = DEFAULT_PREFIX):
        self.kv, self.prefix = kv, prefix

    def get(self, model: type[R], name: str, namespace: str | None = None) -> R:
        key = resource_key(self.prefix, model, name, namespace)
        item = self.kv.get(key)
        if item is None:
            raise NotFound(
                f"{model.model_fields['kind'].default} {name!r} not found"
                + (f" in namespace {namespace!r}" if model.namespaced else "")
            )
        return _decode_as(model, self.prefix, item.key, item.value, item.mod_revision)

    def list_kind(self, model: type[R], namespace: str | None = None) -> tuple[list[R], list[DocumentError]]:
        """Every stored resource of a kind (one namespace or all), plus what could not be read."""
        resources: list[R] = []
        bad: list[DocumentError] = []
        for page, _ in self.kv.pages(kind_prefix(self.prefix, model, namespace)):
            for item in page:
                try:
                    resources.append(_decode_as(model, self.prefix, item.key, item.value, item.mod_revision))
                except DocumentError as exc:
                    bad.append(exc)
        return resources, bad

    def write(self, resources: Sequence[Resource], mode: WriteMode) -> int:
        """Write in as few transactions as etcd allows; each one is all or nothing."""
        writes = [
            Write(key_of(self.prefix, r), encode(r), _expectation(mode, r.metadata.resourceVersion)) for r in resources
        ]
        return self._commit(writes)

    def delete(self, refs: Sequence[Ref]) -> int:
        writes = []
        for ref in refs:
            expect = int(ref.resource_version) if ref.resource_version else PRESENT
            writes.append(Write(resource_key(self.prefix, ref.model, ref.name, ref.namespace), None, expect))
        try:
            return self._commit(writes)
        except Conflict as exc:
            if all(failure.endswith("does not exist") for failure in exc.failures):
                raise NotFound("; ".join(exc.failures)) from None
            raise

    def _commit(self, writes: list[Write]) -> int:
        """One transaction per MAX_TXN_OPS writes, in order: a failure after the first leaves the
        earlier ones written, and says so (PartiallyWritten) instead of passing for all-or-nothing."""
        revision = 0
        for start in range(0, len(writes), MAX_TXN_OPS):
            try:
                revision = self.kv.commit(writes[start : start + MAX_TXN_OPS])
            except KVError as exc:
                if start == 0:
                    raise
                raise PartiallyWritten(start, len(writes), exc) from exc
        return revision


def transactions_for(count: int) -> int:
    """How many etcd transactions a write of `count` resources takes."""
    return max(1, -(-count // MAX_TXN_OPS))


class PartiallyWritten(KVError):
    """A write larger than one etcd transaction failed after some transactions were committed."""

    def __init__(self, written: int, total: int, cause: KVError):
        self.written, self.total, self.cause = written, total, cause
        super().__init__(
            f"only the first {written} of {total} resources were written (etcd takes at most {MAX_TXN_OPS} "
            f"operations per transaction, so this input was written in {transactions_for(total)} "
            f"transactions); the rest were not: {cause}"
        )
