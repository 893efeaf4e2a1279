"""EtcdKV.pages against a stand-in for etcd's Range that refuses responses over a size."""

from types import SimpleNamespace

import pytest

from policy.datastore.etcd import EtcdKV, EtcdSettings, ResponseTooLarge

KEYS = [f"/p/k{i:02}".encode() for i in range(50)]


class Range:
    """Keys in [key, range_end) up to limit; more than `most` is refused as gRPC would."""

    def __init__(self, most: int):
        self.most, self.requests = most, []

    def __call__(self, method: str, request):
        self.requests.append((request.key, request.limit, request.revision))
        found = [k for k in KEYS if request.key <= k < request.range_end]
        page = found[: request.limit]
        if len(page) > self.most:
            raise ResponseTooLarge("RESOURCE_EXHAUSTED: Received message larger than max")
        kvs = [SimpleNamespace(key=k, value=b"v", mod_revision=3, create_revision=2) for k in page]
        return SimpleNamespace(header=SimpleNamespace(revision=7), kvs=kvs, more=len(found) > len(page))


def listed(most: int, page_size: int) -> tuple[list[list[str]], Range]:
    kv = EtcdKV(EtcdSettings())
    kv._call = Range(most)  # type: ignore[method-assign]
    return [[item.key for item in page] for page, revision in kv.pages("/p/", page_size)], kv._call


def test_a_page_too_large_is_asked_for_smaller_and_the_size_grows_back():
    pages, calls = listed(most=8, page_size=100)
    assert [key for page in pages for key in page] == [k.decode() for k in KEYS]  # each once, in order
    assert max(len(page) for page in pages) <= 8
    limits = [limit for _, limit, _ in calls.requests]
    assert limits[:5] == [100, 25, 6, 12, 3]  # a quarter after a refusal, double after a page
    assert {revision for _, _, revision in calls.requests[1:]} <= {0, 7}  # one snapshot once known
    assert calls.requests[-1][2] == 7


def test_a_key_alone_over_the_limit_is_an_error_naming_it_not_a_loop():
    with pytest.raises(ResponseTooLarge, match="the first key from /p/ alone is over the receive limit"):
        listed(most=0, page_size=100)


def test_pages_that_fit_are_full_pages():
    pages, calls = listed(most=100, page_size=20)
    assert [len(page) for page in pages] == [20, 20, 10] and len(calls.requests) == 3
