"""A daemon's Prometheus metric, read as Prometheus reads it (prometheus_client's parser)."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def metric(url: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with these labels at `url` (a /metrics page); 0 when absent."""
    with urllib.request.urlopen(url, timeout=2) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
