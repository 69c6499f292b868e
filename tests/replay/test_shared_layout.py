"""The audit replay in the shared session layout (tokenwire/session_log.py): sessions interleaved
in one partition of the shared topic, keyed by session id, read back exactly per session.

Events are written as the worker writes them (``ScriptedLog.events``: to ``place_of`` the
session, keyed by its id). ``requests_partitions`` is 2, so a scan reads two partitions, one of
them holding two sessions whose records alternate.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from schemas.session_events import SessionEvent
from tests.fixtures.pipeline import settings_env
from tests.replay.conftest import Replay
from tests.replay.scripted_log import ScriptedLog, Stream
from tests.replay.test_offsets_untouched import tokenwire_cli
from tokenwire.replay.log_reader import LogReader
from tokenwire.replay.progress import Progress
from tokenwire.replay.verify import verify_log
from tokenwire.session_log import partition_of, place_of
from tokenwire.settings import Settings

PARTITIONS = 2


@pytest.fixture
def layout() -> str:
    return "shared"


def sessions_in(partition: int, count: int, tag: str) -> list[str]:
    """``count`` session ids whose records go to ``partition`` of the shared topic."""
    candidates = (f"s-{tag}-{i}" for i in itertools.count())
    return list(
        itertools.islice((s for s in candidates if partition_of(s, PARTITIONS) == partition),
                         count)
    )  # fmt: skip


async def interleave(log: ScriptedLog, *streams: list[SessionEvent]) -> None:
    """Each stream's events in order, the streams taking turns: offsets of a session are sparse."""
    for turn in itertools.zip_longest(*streams):
        await log.events(*(event for event in turn if event is not None))


async def two_sessions_in_one_partition(log: ScriptedLog, *, gap_in_a: bool = False
                                        ) -> tuple[str, str, str]:
    """Sessions a and b share partition 0 (a: an answer and a retried one; b: an answer and an
    error), c is alone in partition 1. ``gap_in_a``: a token of a's first answer is never
    written."""
    await log.create()
    [a, b], [c] = sessions_in(0, 2, "ab"), sessions_in(1, 1, "c")
    a1, a2 = Stream("r-a1", a), Stream("r-a2", a)
    b1, b2 = Stream("r-b1", b), Stream("r-b2", b)
    c1 = Stream("r-c1", c)
    chats = {s.request_id: await log.request(s.session_id, s.request_id, f"ask {s.request_id}")
             for s in (a1, b1, c1, a2, b2)}  # fmt: skip
    first_of_a = [a1.start(), a1.token("Al"), a1.token("pha"), a1.token(" one"), a1.done()]
    if gap_in_a:
        del first_of_a[2]  # seq 2 built, never written
    await interleave(
        log,
        first_of_a,
        [b1.start(), b1.token("Bra"), b1.token("vo"), b1.done()],
        [c1.start(), c1.token("Charlie"), c1.done()],
    )
    await interleave(
        log,
        [a2.start(), a2.token("Part"), a2.retry(), a2.token("Alpha"), a2.token(" two"),
         a2.done()],
        [b2.start(), b2.error()],
    )  # fmt: skip
    answers = {"r-a1": "Al one" if gap_in_a else "Alpha one", "r-b1": "Bravo",
               "r-c1": "Charlie", "r-a2": "Alpha two"}  # fmt: skip
    for stream in (a1, b1, c1, a2):
        retries = 1 if stream is a2 else 0
        await log.answered(stream, chats[stream.request_id], answers[stream.request_id],
                           retries=retries)  # fmt: skip
    await log.failed(b2, chats["r-b2"])
    return a, b, c


async def exchanges(replay: Replay, settings: Settings, session: str) -> dict[str, Any]:
    shown = await replay(settings, "transcript", "--session", session, "--format", "jsonl")
    assert shown.code == 0, shown.out
    return {x["request_id"]: x for x in shown.jsonl() if x["kind"] == "exchange"}


async def test_interleaved_sessions_each_have_their_exact_transcript_and_verify(
    scripted: ScriptedLog, replay: Replay
) -> None:
    a, b, c = await two_sessions_in_one_partition(scripted)
    settings = scripted.settings

    of_a, of_b, of_c = [await exchanges(replay, settings, s) for s in (a, b, c)]
    verified = await replay(settings, "verify")

    assert place_of(settings, a) == place_of(settings, b) != place_of(settings, c)
    assert list(of_a) == ["r-a1", "r-a2"] and list(of_b) == ["r-b1", "r-b2"]
    assert list(of_c) == ["r-c1"]
    assert [(x["answer"], x["discarded"], x["source"]) for x in of_a.values()] == [
        ("Alpha one", [], "session_topic"), ("Alpha two", ["Part"], "session_topic")]
    assert (of_b["r-b1"]["answer"], of_b["r-b2"]["status"]) == ("Bravo", "error")
    assert of_b["r-b2"]["error"]["code"] == "http_400"
    assert of_c["r-c1"]["answer"] == "Charlie"
    assert verified.code == 0, verified.out
    assert (f"checked: 5 accepted request(s), 0 rejected record(s), 3 session(s) with 20 "
            f"event(s) (keyed by session in {settings.sessions_topic})") in verified.out


async def test_a_gap_in_one_interleaved_session_fails_it_and_only_it(
    scripted: ScriptedLog, replay: Replay
) -> None:
    a, b, _ = await two_sessions_in_one_partition(scripted, gap_in_a=True)
    settings = scripted.settings

    everyone = await replay(settings, "verify", "--format", "jsonl")
    only_a = await replay(settings, "verify", "--session", a)
    only_b = await replay(settings, "verify", "--session", b)

    assert everyone.code == 1
    summary, *rest = everyone.jsonl()
    assert summary["errors"] == 1, everyone.out
    [gap] = [f for f in rest if f["kind"] == "finding" and f["severity"] == "error"]
    assert (gap["check"], gap["session_id"], gap["request_id"]) == ("seq", a, "r-a1")
    assert "missing seq 2" in gap["message"]
    assert only_a.code == 1 and f"[seq] session {a} request r-a1:" in only_a.out
    assert only_b.code == 0, only_b.out


async def test_verify_reads_the_shared_topic_once_however_many_sessions_it_holds(
    scripted: ScriptedLog,
) -> None:
    await two_sessions_in_one_partition(scripted)
    settings = scripted.settings
    topics = [settings.requests_topic, settings.events_topic, settings.sessions_topic,
              settings.dead_letter_topic]  # fmt: skip
    async with LogReader(settings.kafka_connection) as reader:
        on_the_log = {t: sum(s.size for s in await reader.spans(t)) for t in topics}
    progress = Progress(enabled=False)

    report = await verify_log(settings, progress=progress)

    assert report.ok and report.sessions == 3, [str(f) for f in report.errors]
    assert on_the_log[settings.sessions_topic] == 20
    assert progress.total == progress.done == sum(on_the_log.values()), on_the_log


async def test_records_no_reader_of_their_session_finds_are_reported_as_misplaced(
    scripted: ScriptedLog, replay: Replay
) -> None:
    a, b, _ = await two_sessions_in_one_partition(scripted)
    settings = scripted.settings
    def extra(seq: int, text: str) -> SessionEvent:
        return Stream("r-a1", a, seq=seq).token(text)

    unkeyed = await scripted.event_as(None, extra(10, "lost"), partition=0)
    astray = await scripted.event_as(a, extra(11, "astray"), partition=1)
    borrowed = await scripted.event_as(b, extra(12, "borrowed"))  # a's event in b's stream

    result = await replay(settings, "verify", "--format", "jsonl")
    of_a = await exchanges(replay, settings, a)

    assert result.code == 1
    found = sorted((f["check"], f["session_id"], f["message"])
                   for f in result.jsonl()[1:] if f["kind"] == "finding")  # fmt: skip
    topic = settings.sessions_topic
    assert found == [
        ("misplaced", a, f"1 record(s) of session {a} keyed '{a}' outside its partition 0 in "
         f"{topic}, first at {topic}[1]@{astray.offset}: no reader of the session sees them"),
        ("misplaced", a, f"1 record(s) of session {a} without a key in {topic}, first at "
         f"{topic}[0]@{unkeyed.offset}: no reader of the session sees them"),
        ("wrong_session", b, f"1 event(s) of session(s) ['{a}'] on {topic}[0] (key {b}), "
         f"first token (attempt 1, seq 12) at {topic}[0]@{borrowed.offset}"),
    ]  # fmt: skip
    assert of_a["r-a1"]["answer"] == "Alpha one", "what a's readers see: its key, its partition"


async def test_retention_cutting_into_one_session_falls_back_for_it_alone(
    scripted: ScriptedLog, replay: Replay, admin: AIOKafkaAdminClient
) -> None:
    await scripted.create()
    [a, b] = sessions_in(0, 2, "aged")
    a1, a2, b1 = Stream("r-a1", a), Stream("r-a2", a), Stream("r-b1", b)
    chats = {s.request_id: await scripted.request(s.session_id, s.request_id, "hi")
             for s in (a1, b1, a2)}  # fmt: skip
    await scripted.events(a1.start(), a1.token("gone"))  # offsets 0 and 1
    b_start = await scripted.event_as(b, b1.start())  # offset 2: the new log start
    await scripted.events(a1.token(" kept"), b1.token("whole"), a1.done(), b1.done())
    await scripted.events(a2.start(), a2.token("later"), a2.done())
    for stream, answer in ((a1, "gone kept"), (b1, "whole"), (a2, "later")):
        await scripted.answered(stream, chats[stream.request_id], answer)
    place = place_of(scripted.settings, a)
    await admin.delete_records({place: RecordsToDelete(before_offset=b_start.offset)},
                               timeout_ms=10_000)  # fmt: skip

    verified = await replay(scripted.settings, "verify")
    of_a = await exchanges(replay, scripted.settings, a)
    of_b = await exchanges(replay, scripted.settings, b)

    assert verified.code == 0, verified.out
    assert (f"note: [fallback] session {a}: {place.topic}[0] (key {a}) is truncated by "
            "retention: 1 request(s) checked against") in verified.out
    assert "fallback] session " + b not in verified.out, "b's first request kept its start"
    assert {r: x["source"] for r, x in of_a.items()} == {
        "r-a1": "lifecycle", "r-a2": "session_topic"}
    assert [(x["source"], x["answer"]) for x in of_b.values()] == [("session_topic", "whole")]


async def test_the_console_script_reads_the_shared_layout_from_the_environment(
    scripted: ScriptedLog,
) -> None:
    a, _, _ = await two_sessions_in_one_partition(scripted)
    env = settings_env(scripted.settings)
    assert env["TOKENWIRE_SESSION_LAYOUT"] == "shared"

    code, output = await tokenwire_cli(scripted.settings, "replay", "verify")
    shown_code, shown = await tokenwire_cli(scripted.settings, "replay", "transcript",
                                            "--session", a)  # fmt: skip

    assert code == 0, output
    topic = scripted.settings.sessions_topic
    assert f"3 session(s) with 20 event(s) (keyed by session in {topic})" in output
    assert shown_code == 0 and "assistant [done, stop]: Alpha two" in shown, shown
