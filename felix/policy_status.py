"""Publishes which policies this node had to compile as drop-all, for `policyctl get -o wide`.

One key per node, <prefix>/v1/status/<node>/policies, a JSON object {policy key: reason};
written only when it changes, deleted when every policy compiles."""

import json
import logging

from policy.kv import ANY, KV, KVError, Write

log = logging.getLogger(__name__)


def status_key(prefix: str, node: str) -> str:
    return f"{prefix.rstrip('/')}/v1/status/{node}/policies"


class PolicyStatusWriter:
    def __init__(self, kv: KV, prefix: str, node: str):
        self._kv, self._key = kv, status_key(prefix, node)
        self._written: dict[str, str] | None = None

    def due(self, errors: dict[str, str]) -> bool:
        return errors != self._written

    def write(self, errors: dict[str, str]) -> None:
        value = json.dumps(errors, sort_keys=True).encode() if errors else None
        try:
            self._kv.commit([Write(self._key, value, ANY)])
        except KVError as exc:
            log.warning("could not publish policy status (will retry): %s", exc)
            return
        self._written = dict(errors)
