"""Deleting a partition's idle entries from the aggregates state, in event time.

Closed windows are deleted as they close; what outlives them is per user: the baselines
(``b|<partition>|<size>|<user>``) and the in-flight sets (``o|<partition>|<user>``). Without a
sweep they would only grow with every user ever seen. Once per ``state_sweep_interval_s`` of a
partition's event time, the first event past the interval deletes that partition's

- baselines whose last closed window ended ``baseline_idle_ttl_s`` or more before the watermark;
- in-flight sets whose every request was accepted ``active_stale_s`` or more before it (an
  accepted request that never finished, a user who never came back).

The deletes go to the table's changelog like every other write, so compaction drops the keys,
and a replay, which folds the same events in the same order, sweeps at the same points.
The sweep reads every key of the table once per interval: the same order of cost as closing a
window (``Aggregator._close_window``), which runs far more often.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from agents.aggregates.keys import baseline_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expiry:
    baseline_idle_ttl_s: float
    stale_s: float
    interval_s: float

    def due(self, clock: dict[str, Any]) -> bool:
        """Whether the watermark entered an interval not swept yet; marks it swept."""
        period = int(clock["wm"] // self.interval_s)
        if clock.get("swept", -1) >= period:
            return False
        clock["swept"] = period
        return True

    def baseline_idle(self, key: str, value: dict[str, Any], watermark: float) -> bool:
        last_start = value.get("last_start")
        if last_start is None:
            return True
        return last_start + baseline_size(key) + self.baseline_idle_ttl_s <= watermark

    def requests_stale(self, value: dict[str, list[Any]], watermark: float) -> bool:
        return all(at <= watermark - self.stale_s for _, at in value.values())

    def sweep(self, partition: int, watermark: float, state: MutableMapping[str, Any]) -> int:
        """Delete the partition's idle baselines and stale in-flight sets; how many."""
        baselines, in_flight = f"b|{partition}|", f"o|{partition}|"
        expired = [
            key
            for key in list(state.keys())
            if (key.startswith(baselines) and self.baseline_idle(key, state[key], watermark))
            or (key.startswith(in_flight) and self.requests_stale(state[key], watermark))
        ]
        for key in expired:
            del state[key]
        if expired:
            log.info(
                "aggregates state swept partition=%s watermark=%.3f deleted=%s",
                partition, watermark, len(expired),
            )  # fmt: skip
        return len(expired)
