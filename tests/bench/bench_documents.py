"""Document loading benchmark: `policyctl validate` of a 5 MB file of ~7,600 Calico policies.

Times `load_documents` (Calyx's libyaml loader with YAML 1.2 scalars and duplicate-key checks,
then validation of every resource) and the Calyx loader alone, against plain
`yaml.load_all(text, Loader=yaml.CSafeLoader)` of the same text measured in the same run.
Goal: the whole file in a few seconds (issue 9 measured 29 s with the pure-Python parser).

    python -m tests.bench.bench_documents [--policies 7600] [--runs 3]"""

import argparse
import os
import statistics
import sys
import time

import yaml

from policy.model.documents import load_documents
from policy.model.yaml_codec import load_all

POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-{i}
  namespace: team-{team}
  labels:
    app: service-{i}
    owner: team-{team}
    generated: true
spec:
  order: {order}
  selector: app == 'service-{i}' && tier in {{'api', 'worker'}}
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
      namespaceSelector: team == 'team-{team}'
    destination:
      ports: [80, 443, 8000:8099]
  - action: Allow
    protocol: UDP
    source:
      nets: [10.{a}.{b}.0/24]
    destination:
      ports: [53]
  egress:
  - action: Allow
    protocol: TCP
    destination:
      selector: app == 'db-{team}'
      ports: [5432]
"""


def policies(count: int) -> str:
    return "---\n".join(
        POLICY.format(i=i, team=i % 40, order=100 + i % 900, a=i >> 8 & 255, b=i & 255) for i in range(count)
    )


def median_time(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", type=int, default=7600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    text = policies(args.policies)
    data = text.encode()
    load_before = os.getloadavg()
    baseline = median_time(args.runs, lambda: sum(1 for _ in yaml.load_all(text, Loader=yaml.CSafeLoader)))
    parse = median_time(args.runs, lambda: sum(1 for _ in load_all(text)))
    resources: list = []
    full = median_time(args.runs, lambda: resources.__setitem__(slice(None), load_documents(data, "bench.yaml")))
    load_after = os.getloadavg()
    assert len(resources) == args.policies, len(resources)
    print(f"document loading: {len(resources)} documents, {len(data) / 1e6:.1f} MB, median of {args.runs} runs")
    print(f"  load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"  load average (1, 5, 15 min) after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"  baseline, yaml.load_all with CSafeLoader:   {baseline:6.2f} s")
    print(f"  Calyx loader alone (YAML 1.2, duplicates):  {parse:6.2f} s  ({parse / baseline:.2f}x)")
    print(f"  load_documents (loader + validation):       {full:6.2f} s  ({full / baseline:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
