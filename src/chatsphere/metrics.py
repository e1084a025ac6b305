"""Prometheus metrics read from the node's counters at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Sample = tuple[str, str, str, Callable[[], float]]  # (kind, name, help, read)


class NodeCollector(Collector):
    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples

    def collect(self) -> Iterator[Metric]:
        for kind, name, help_text, read in self._samples:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=read())
