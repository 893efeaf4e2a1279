"""python-etcd3 0.12 only works with protobuf 3.x: guard the pin that keeps it importable."""

from importlib.metadata import version


def test_protobuf_is_below_4():
    assert int(version("protobuf").split(".")[0]) < 4, "python-etcd3 0.12 breaks with protobuf 4+"


def test_etcd3_generated_messages_round_trip():
    from etcd3 import etcdrpc

    request = etcdrpc.RangeRequest(key=b"/calyx/v1/", range_end=b"/calyx/v10", limit=10, revision=7)
    parsed = etcdrpc.RangeRequest.FromString(request.SerializeToString())
    assert (parsed.key, parsed.limit, parsed.revision) == (b"/calyx/v1/", 10, 7)
    assert version("etcd3") == "0.12.0"
