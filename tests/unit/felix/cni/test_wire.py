"""The Python side of the client/server wire format: what the C client sends parses back, and
every malformed or oversized request is refused by name before more than its limit is read."""

import struct

import pytest

from felix.cni.wire import MAX_ENV, WireError, encode_answer, encode_request, read_answer, read_request


def reader(data: bytes):
    offset = 0

    def read(n: int) -> bytes:
        nonlocal offset
        offset += n
        return data[offset - n : offset]

    return read


def field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def test_a_request_round_trips_with_only_cni_variables():
    data = encode_request("calyx-ipam", {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=b=c", "PATH": "/bin"}, b'{"x": 1}')
    request = read_request(reader(data))
    assert request.program == "calyx-ipam"
    assert request.environ == {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=b=c"}
    assert request.stdin == b'{"x": 1}'


def test_an_answer_round_trips():
    assert read_answer(reader(encode_answer(7, b"{}\n"))) == (7, b"{}\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 GET /", "bad magic"),
        (b"CXC1" + field(b"sh"), "program 'sh'"),
        (b"CXC1" + field(b"calyx-cni") + struct.pack(">I", MAX_ENV + 1), "too many environment variables"),
        (b"CXC1" + field(b"calyx-cni") + struct.pack(">I", 1) + field(b"PATH=/bin"), "not a CNI_ variable"),
        (b"CXC1" + field(b"calyx-cni") + struct.pack(">I", 1) + field(b"CNI_ARGS"), "not a CNI_ variable"),
        (b"CXC1" + field(b"calyx-cni") + struct.pack(">I", 0) + struct.pack(">I", 10) + b"{}", "cut short in stdin"),
        (b"CXC1" + field(b"calyx-cni"), "cut short in the variable count"),
    ],
)
def test_bad_requests_are_named(data, message):
    with pytest.raises(WireError, match=message):
        read_request(reader(data))


def test_a_length_over_the_limit_is_refused_before_it_is_read():
    asked: list[int] = []
    data = b"CXC1" + field(b"calyx-cni") + struct.pack(">I", 0) + struct.pack(">I", 1 << 30)

    def read(n: int) -> bytes:
        asked.append(n)
        return data[sum(asked[:-1]) : sum(asked)]

    with pytest.raises(WireError, match="request too large: stdin needs 1073741824 bytes"):
        read_request(read, limit=4096)
    assert max(asked) < 4096
