"""Replay never moves the live worker group's committed offsets: every command reads with a
consumer that has no group id. Runs the real console script against the running pipeline."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from tests.fixtures.pipeline import WorkerProcess, settings_env
from tests.replay.conftest import chat
from tokenwire.kafka_clients import new_consumer
from tokenwire.settings import Settings

COMMIT_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0


async def fully_committed(
    admin: AIOKafkaAdminClient, settings: Settings
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The worker group's offsets, once they reach the end of every non-empty request partition
    (the worker commits acked records on an interval, so wait for it to catch up)."""
    [described] = await admin.describe_topics([settings.requests_topic])
    tps = [TopicPartition(settings.requests_topic, p["partition"]) for p in described["partitions"]]
    consumer = new_consumer(settings.kafka_connection, client_id="replay-tests-ends")
    await consumer.start()
    try:
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end}
    finally:
        await consumer.stop()
    assert ends, "the requests topic has records"
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while True:
        committed = await admin.list_consumer_group_offsets(settings.worker_id)
        if all(tp in committed and committed[tp].offset == end for tp, end in ends.items()):
            return committed
        assert time.monotonic() < deadline, f"worker never committed {ends}: {committed}"
        await asyncio.sleep(0.1)


async def tokenwire_cli(settings: Settings, *argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tokenwire.cli", *argv, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_no_replay_command_moves_the_live_worker_groups_committed_offsets(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings,
    admin: AIOKafkaAdminClient,
) -> None:
    answered = await chat(edge_url, f"[[sim: cut_after=3 tokens=8]] offsets {uuid.uuid4().hex}")
    session, since = answered.session_id, str(time.time() - 600)
    before = await fully_committed(admin, pipeline_settings)
    commands = [
        ["replay", "transcript", "--session", session, "--since", since, "--format", "jsonl"],
        ["replay", "verify", "--session", session, "--since", since],
        ["replay", "aggregates", "--since", since, "--until", str(time.time()), "--bucket", "1m"],
    ]

    outputs = []
    for argv in commands:
        code, output = await tokenwire_cli(pipeline_settings, *argv)
        after = await admin.list_consumer_group_offsets(pipeline_settings.worker_id)
        outputs.append(output)

        # aggregates belongs to another module (exit 2 while it is not installed): only its
        # effect on the worker group is specified here.
        assert code == 0 or argv[1] == "aggregates", output
        assert after == before, f"{' '.join(argv)} moved the worker group's offsets"
    assert answered.request_id in outputs[0], "the replay did read the live log"
