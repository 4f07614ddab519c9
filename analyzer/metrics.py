"""CloudWatch metrics, aggregated per batch and sent with as few PutMetricData calls as possible.

Counts with the same name and dimensions are summed into one datum and score samples become one
StatisticSet, so a batch of hundreds of faces costs one call. Metrics are best-effort: a failed put
is logged and never fails the batch (the observations, which are the data, are already written).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

log = logging.getLogger("stagepulse.analysis")

MAX_DATA_PER_CALL = 1000  # PutMetricData accepts up to 1000 metrics per request


def _dims(dimensions: dict) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in dimensions.items()))


class MetricBatch:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.counts: dict[tuple, float] = {}
        self.stats: dict[tuple, dict] = {}
        self.calls = 0

    def add(self, name: str, value: float, dimensions: dict) -> None:
        key = (name, _dims(dimensions))
        self.counts[key] = self.counts.get(key, 0) + value

    def sample(self, name: str, value: float, dimensions: dict) -> None:
        key = (name, _dims(dimensions))
        stat = self.stats.get(key)
        if stat is None:
            self.stats[key] = {"SampleCount": 1, "Sum": value, "Minimum": value, "Maximum": value}
        else:
            stat["SampleCount"] += 1
            stat["Sum"] += value
            stat["Minimum"] = min(stat["Minimum"], value)
            stat["Maximum"] = max(stat["Maximum"], value)

    def rejected(self, reason: str) -> None:
        """Permanent: the crop or message is dropped (and the crop deleted)."""
        self.add("CropsRejected", 1, {"Reason": reason})

    def error(self, reason: str) -> None:
        """Transient: the message comes back; quota exhaustion is counted here too."""
        self.add("AnalyzerErrors", 1, {"Reason": reason})

    def data(self) -> list[dict]:
        now = datetime.now(UTC)
        out = []
        for (name, dims), value in sorted(self.counts.items()):
            out.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    "Timestamp": now,
                    "Value": float(value),
                    "Unit": "Count",
                }
            )
        for (name, dims), stat in sorted(self.stats.items()):
            out.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    "Timestamp": now,
                    "StatisticValues": {k: float(v) for k, v in stat.items()},
                    "Unit": "None",
                }
            )
        return out

    def flush(self, cloudwatch) -> int:
        """Send everything; returns the number of data points sent."""
        data = self.data()
        sent = 0
        for start in range(0, len(data), MAX_DATA_PER_CALL):
            chunk = data[start : start + MAX_DATA_PER_CALL]
            try:
                cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=chunk)
                self.calls += 1
                sent += len(chunk)
            except Exception as exc:
                log.error("could not put %d metrics to CloudWatch: %r", len(chunk), exc)
        self.counts.clear()
        self.stats.clear()
        return sent
