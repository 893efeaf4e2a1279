"""The wire format between the host's tiny `calyx-cni`/`calyx-ipam` client
(felix/cni/client/calyx-cni.c) and the CNI server (felix/cni/server.py): one request and one
answer per connection, every length a 4-byte big-endian unsigned integer.

    request: "CXC1" | len program | program | count | count x (len "NAME=VALUE" | bytes) | len stdin | stdin
    answer:  "CXC1" | exit code | len stdout | stdout

Binary rather than JSON so the C side needs no JSON encoder; every length is checked against a
limit before anything is read, so a bad or hostile client costs a bounded amount of memory."""

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAGIC = b"CXC1"
PROGRAMS = ("calyx-cni", "calyx-ipam")
MAX_REQUEST = 1 << 20  # a conflist with its prevResult is a few KiB; 1 MiB is generous
MAX_ENV = 256
_U32 = struct.Struct(">I")


class WireError(ValueError):
    """The bytes are not a request: named by what was wrong, for the log and the client."""


@dataclass(frozen=True)
class WireRequest:
    program: str
    environ: dict[str, str]
    stdin: bytes


Read = Callable[[int], bytes]  # exactly n bytes, or fewer at end of stream


class _Reader:
    def __init__(self, read: Read, limit: int):
        self.read, self.left = read, limit

    def exact(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise WireError(f"request too large: {what} needs {n} bytes, {self.left} left of {MAX_REQUEST}")
        self.left -= n
        data = self.read(n)
        if len(data) != n:
            raise WireError(f"request cut short in {what}: {len(data)} of {n} bytes")
        return data

    def number(self, what: str) -> int:
        return _U32.unpack(self.exact(4, what))[0]

    def field(self, what: str) -> bytes:
        return self.exact(self.number(f"the length of {what}"), what)


def read_request(read: Read, limit: int = MAX_REQUEST) -> WireRequest:
    reader = _Reader(read, limit)
    if reader.exact(4, "the magic") != MAGIC:
        raise WireError("not a calyx-cni request (bad magic): is the client the same version as the server?")
    program = reader.field("the program name").decode(errors="replace")
    if program not in PROGRAMS:
        raise WireError(f"program {program!r} is not one of {', '.join(PROGRAMS)}")
    count = reader.number("the variable count")
    if count > MAX_ENV:
        raise WireError(f"too many environment variables: {count} (at most {MAX_ENV})")
    environ = {}
    for i in range(count):
        name, sep, value = reader.field(f"variable {i}").decode(errors="replace").partition("=")
        if not sep or not name.startswith("CNI_"):
            raise WireError(f"variable {i} ({name!r}) is not a CNI_ variable")
        environ[name] = value
    return WireRequest(program, environ, reader.field("stdin"))


def encode_request(program: str, environ: Mapping[str, str], stdin: bytes) -> bytes:
    """What the C client sends (used by tests and Python callers of the server)."""
    pairs = [f"{k}={v}".encode() for k, v in environ.items() if k.startswith("CNI_")]
    parts = [MAGIC, _U32.pack(len(program)), program.encode(), _U32.pack(len(pairs))]
    for pair in pairs:
        parts += [_U32.pack(len(pair)), pair]
    return b"".join([*parts, _U32.pack(len(stdin)), stdin])


def encode_answer(code: int, stdout: bytes) -> bytes:
    return MAGIC + _U32.pack(code) + _U32.pack(len(stdout)) + stdout


def read_answer(read: Read) -> tuple[int, bytes]:
    reader = _Reader(read, MAX_REQUEST + 12)
    if reader.exact(4, "the magic") != MAGIC:
        raise WireError("not a calyx-cni answer (bad magic)")
    code = reader.number("the exit code")
    return code, reader.field("stdout")
