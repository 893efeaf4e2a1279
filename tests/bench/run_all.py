"""`make bench`: every benchmark in turn, each in its own process and bounded, then the wall time
of each and of the whole run (issue 15: the whole of `make bench` within 20 minutes).

A benchmark that fails or overruns its bound does not stop the others; the run then exits 1.
An overrun one gets SIGINT (KeyboardInterrupt: each benchmark's `finally` tears its namespaces
and daemons down), then after a grace SIGKILL.

    python -m tests.bench.run_all [--only NAME ...] [--timeout SECONDS]"""

import argparse
import os
import signal
import subprocess
import sys
import time

from tests.lab.interfaces import load_average

# In order; the 20-node cluster last: its 40 daemons leave the load average high for minutes,
# and the per-packet figures of the policy benchmark measured after it were off by 50%.
BENCHMARKS = (
    "bench_routes",
    "bench_cluster_agent",
    "bench_policy",
    "bench_counters",
    "bench_bgp",
    "bench_documents",
    "bench_explain",
    "bench_kube",
    "bench_cni",
    "bench_cluster_converge",
)
# Each burst of the 20-node benchmark takes 2 minutes on 2 cores (40 daemons share them): 3 of
# them keep the whole run within 20 minutes; run it alone for the 5 bursts of issue 15.
ARGUMENTS = {"bench_cluster_converge": ("--bursts", "3")}


def run(cmd: list[str], timeout: float, grace: float = 60) -> str:
    """Run one benchmark; returns "ok", "failed (exit N)" or "timed out"."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:  # timed out, or this runner stopped: the benchmark cleans up after itself, bounded
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the benchmark and its commands
                proc.wait()
    if code is None:
        return "timed out"
    return "ok" if code == 0 else f"failed (exit {code})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="these benchmarks only, in this order")
    parser.add_argument("--timeout", type=float, default=900, help="bound of each benchmark, seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        print(f"\n=== {name} (load average {load_average():.2f})", flush=True)
        begun = time.monotonic()
        outcome = run([sys.executable, "-m", f"tests.bench.{name}", *ARGUMENTS.get(name, ())], args.timeout)
        seconds = time.monotonic() - begun
        results.append((name, seconds, outcome))
        print(f"=== {name}: {seconds:.0f} s, {outcome} (load average {load_average():.2f})", flush=True)
    total = time.monotonic() - started
    print("\nwall time per benchmark:")
    for name, seconds, outcome in results:
        print(f"{name}: {seconds:.0f} s{'' if outcome == 'ok' else f'  {outcome.upper()}'}")
    print(f"total: {total:.0f} s ({total / 60:.1f} min)")
    failed = [name for name, _, outcome in results if outcome != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
