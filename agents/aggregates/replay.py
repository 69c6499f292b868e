"""Rebuild the aggregates of ``[since, until)`` from ``chat.events`` into a bucket.

The same ``Aggregator`` as the live agent folds the same records in the same per-partition order
over a dict, so a closed window comes out exactly as the live pipeline wrote it (event-time
windows, the same watermark and lateness, the same dedup marks). Only windows that lie wholly
inside ``[since, until)`` are written; their points overwrite what is in the bucket.

Risk baselines and the in-flight set depend on what came before ``since``: by default the
replay reads every partition from its beginning (exact); ``warmup_s`` starts that many seconds
before ``since`` instead (faster, and the baselines converge rather than match).

The replay reads with its own consumer, assigned to the partitions by hand: it joins no
consumer group and commits nothing, so the live worker's offsets never move. ``group_id`` names
the replay in the broker's client list and must differ from the live worker's id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import TopicPartition
from pydantic import ValidationError

from agents.aggregates.agent import new_sink
from agents.aggregates.aggregation import Aggregator
from agents.aggregates.points import PointRow
from agents.aggregates.windows import window_label
from agents.metrics import WorkerMetrics
from schemas.lifecycle import parse_lifecycle_event
from tokenwire.aggregates_settings import AggregatesSettings
from tokenwire.kafka_clients import new_consumer, stop_consumer
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY = 50_000


async def replay_aggregates(
    settings: Settings,
    since: float,
    until: float,
    bucket: str | None,
    *,
    group_id: str,
    warmup_s: float | None = None,
    agg: AggregatesSettings | None = None,
) -> int:
    """Replay ``settings.events_topic`` into ``bucket`` (default: the live one); points written."""
    if group_id == settings.worker_id:
        raise ValueError("a replay must not use the live worker's group id")
    if until <= since:
        raise ValueError(f"until ({until}) must be after since ({since})")
    agg = agg or settings.aggregates
    aggregator = Aggregator(agg, default_model=settings.default_model)
    sizes = {window_label(size): size for size in agg.windows_s}
    state: dict[str, Any] = {}
    rows: dict[tuple[Any, ...], PointRow] = {}

    def keep(found: list[PointRow]) -> None:
        for row in found:
            size = sizes[row.tag("window")]
            if row.time_s >= since and row.time_s + size <= until:
                rows[row.key] = row

    consumer = new_consumer(settings.kafka_connection, client_id=group_id)
    await consumer.start()
    try:
        tps = await _partitions(consumer, settings.events_topic)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await _seek_start(consumer, tps, ends, None if warmup_s is None else since - warmup_s)
        read = 0
        started = time.monotonic()
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    read += 1
                    try:
                        event = parse_lifecycle_event(record.value)
                    except ValidationError:
                        log.warning(
                            "invalid lifecycle event skipped topic=%s partition=%s offset=%s",
                            tp.topic, tp.partition, record.offset,
                        )  # fmt: skip
                        continue
                    keep(aggregator.apply(event, tp.partition, record.offset, state).rows)
                    if read % PROGRESS_EVERY == 0:
                        log.info("replay progress records=%s", read)
        keep(aggregator.close_through(until, state))
    finally:
        await stop_consumer(consumer)

    sink = new_sink(settings, agg, WorkerMetrics(), bucket=bucket)
    everything = list(rows.values())
    chunk = max(1, min(agg.influx_buffer_max, agg.influx_batch_size * 10))
    landed = True
    await sink.start()
    try:
        for first in range(0, len(everything), chunk):
            sink.write(everything[first : first + chunk])
            landed = landed and await sink.flush(agg.influx_close_timeout_s)
    finally:
        await sink.stop()
    if not landed or sink.dropped:
        raise RuntimeError(f"replay could not write every point: dropped={sink.dropped}")
    log.info(
        "replay done records=%s points=%s bucket=%s seconds=%.1f",
        read, sink.written, sink.bucket, time.monotonic() - started,
    )  # fmt: skip
    return sink.written


async def _partitions(consumer: Any, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ValueError(f"topic {topic} does not exist or has no partitions")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def _seek_start(
    consumer: Any, tps: list[TopicPartition], ends: dict[TopicPartition, int], start: float | None
) -> None:
    if start is None:
        await consumer.seek_to_beginning(*tps)
        return
    found = await consumer.offsets_for_times(dict.fromkeys(tps, int(start * 1000)))
    for tp in tps:
        hit = found.get(tp)
        consumer.seek(tp, hit.offset if hit is not None else ends[tp])
