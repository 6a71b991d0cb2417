"""Read a Prometheus text exposition into samples that tests can sum by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples = [
            Sample(sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def names(self) -> set[str]:
        return {sample.name for sample in self.samples}

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample of `name` whose labels include `labels` (0 when there is none yet)."""
        return sum(sample.value for sample in self.matching(name, **labels))

    def bucket_bounds(self, histogram: str) -> list[str]:
        return sorted({s.labels["le"] for s in self.matching(f"{histogram}_bucket")}, key=float)
