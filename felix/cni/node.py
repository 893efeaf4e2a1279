"""What both plugins need of the node: its name, the datastore, and errors a person can act on."""

import socket
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from felix.cni.config import NetConf
from felix.cni.protocol import INVALID_CONFIG, TRY_AGAIN_LATER, CniError
from policy.datastore.etcd import EtcdKV, EtcdSettings
from policy.datastore.kv import KVError, Unavailable
from policy.model.fields import ResourceName

_NODE_NAME = TypeAdapter(ResourceName)


def node_name(conf: NetConf) -> str:
    """`nodename` from the configuration, else what felix recorded on this host, else the hostname."""
    name, source = conf.nodename, "nodename"
    if not name:
        try:
            name, source = Path(conf.nodename_file).read_text().strip(), conf.nodename_file
        except OSError:
            name, source = socket.gethostname(), "the hostname"
    try:
        return _NODE_NAME.validate_python(name)
    except ValidationError:
        raise CniError(
            INVALID_CONFIG, f"node name {name!r} (from {source}) is not a valid node name", "set nodename"
        ) from None


def open_datastore(conf: NetConf) -> EtcdKV:
    try:
        return EtcdKV(
            EtcdSettings(
                conf.endpoints, conf.etcd_ca_cert_file, conf.etcd_cert_file, conf.etcd_key_file, conf.etcd_timeout
            )
        )
    except ValueError as exc:
        raise CniError(INVALID_CONFIG, f"invalid network configuration: etcd: {exc}") from None


def datastore_error(exc: KVError, conf: NetConf, doing: str) -> CniError:
    """etcd down is transient (the runtime retries); anything else etcd says is reported as is."""
    if isinstance(exc, Unavailable):
        return CniError(
            TRY_AGAIN_LATER,
            f"cannot reach etcd at {conf.etcd_endpoints} while {doing}: {exc}",
            "is etcd up, and are etcd_endpoints and the etcd_*_file settings right?",
        )
    return CniError(TRY_AGAIN_LATER, f"etcd refused {doing}: {exc}")
