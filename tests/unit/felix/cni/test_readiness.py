"""Waiting for felix: until programmedRevision reaches the endpoint's write, bounded in time."""

import pytest

from felix.cni.protocol import NOT_AVAILABLE, TRY_AGAIN_LATER, CniError
from felix.cni.readiness import felix_status, wait_programmed


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_returns_once_the_revision_is_programmed():
    clock, answers = Clock(), iter([{"programmedRevision": 5}, {"programmedRevision": 9}, {"programmedRevision": 10}])
    waited = wait_programmed("http://f", 10, 1.0, fetch=lambda url: next(answers), clock=clock, sleep=clock.sleep)
    assert 0 < waited < 0.05


def test_times_out_with_the_last_state_and_a_hint():
    clock = Clock()
    with pytest.raises(CniError) as caught:
        wait_programmed(
            "http://f",
            10,
            2.0,
            fetch=lambda url: {"programmedRevision": 3, "inSync": True},
            clock=clock,
            sleep=clock.sleep,
        )
    assert caught.value.code == TRY_AGAIN_LATER and clock.now == pytest.approx(2.0)
    assert "within 2s: programmed revision 3, in sync True" in caught.value.msg
    assert "is calyx-node (felix) running on this node" in caught.value.details


def test_felix_that_does_not_answer_or_is_not_felix():
    def refused(url):
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(CniError) as caught:
        felix_status("http://127.0.0.1:9099", refused)
    assert caught.value.code == NOT_AVAILABLE and "felix does not answer at http://127.0.0.1:9099" in caught.value.msg
    with pytest.raises(CniError) as caught:
        felix_status("http://127.0.0.1:9099", lambda url: {"status": "ok"})
    assert "is not felix's status" in caught.value.msg


def test_polls_back_off_to_at_most_ten_milliseconds():
    """A programmed revision is seen within 10 ms of felix reporting it, however long felix takes."""
    clock, sleeps = Clock(), []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.sleep(seconds)

    def fetch(url):
        return {"programmedRevision": 10 if clock.now >= 0.2 else 9}

    waited = wait_programmed("http://f", 10, 1.0, fetch=fetch, clock=clock, sleep=sleep)
    assert sleeps[:4] == [0.002, 0.004, 0.008, 0.01] and max(sleeps) == 0.01
    assert 0.2 <= waited < 0.21
