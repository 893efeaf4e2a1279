"""The benchmarks' wait for a quiet machine: bounded, and not fooled by a lagging load average."""

import time

from tests.lab import interfaces


def test_an_idle_machine_with_a_high_average_is_quiet(monkeypatch):
    """After a busy benchmark the 1-minute average stays high for minutes; idle cores end the wait."""
    monkeypatch.setattr(interfaces, "load_average", lambda: 30.0)
    monkeypatch.setattr(interfaces, "busy_cores", lambda: 0.1)
    started = time.monotonic()
    assert interfaces.wait_for_quiet(timeout=60) == 30.0
    assert time.monotonic() - started < 5


def test_a_busy_machine_is_waited_for_until_the_bound(monkeypatch):
    samples = []
    monkeypatch.setattr(interfaces, "load_average", lambda: 3.0)
    monkeypatch.setattr(interfaces, "busy_cores", lambda: samples.append(1) or time.sleep(0.05) or 1.9)
    started = time.monotonic()
    assert interfaces.wait_for_quiet(timeout=0.5) == 3.0
    assert 0.5 <= time.monotonic() - started < 5
    assert len(samples) > 1


def test_busy_cores_is_within_the_machine():
    assert 0 <= interfaces.busy_cores(0.2) <= (interfaces.os.cpu_count() or 1) + 0.01
