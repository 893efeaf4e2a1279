"""The `make bench` runner: each benchmark's outcome, and a bound that stops an overrun one."""

import sys
import time

from tests.bench.run_all import run


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_benchmark_that_exits_0_is_ok():
    assert run(python("pass"), timeout=30) == "ok"


def test_a_failing_benchmark_reports_its_exit_code():
    assert run(python("raise SystemExit(3)"), timeout=30) == "failed (exit 3)"


def test_an_overrun_benchmark_is_interrupted_and_its_cleanup_runs(tmp_path):
    """SIGINT first: the benchmark's `finally` (its teardown) runs before the runner goes on."""
    marker = tmp_path / "cleaned"
    code = f"import time\ntry:\n    time.sleep(60)\nfinally:\n    open({str(marker)!r}, 'w').close()"
    started = time.monotonic()
    assert run(python(code), timeout=1, grace=20) == "timed out"
    assert marker.exists()
    assert time.monotonic() - started < 15


def test_one_that_ignores_the_interrupt_is_killed_after_the_grace():
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    started = time.monotonic()
    assert run(python(code), timeout=1, grace=1) == "timed out"
    assert time.monotonic() - started < 15
