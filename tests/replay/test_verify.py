"""``tokenwire replay verify``: one terminal per accepted request, gap-free seq, nothing unknown,
dead letters accounted for; any problem fails the run with a readable report."""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tests.fixtures.kafka_reading import wait_for_record
from tests.fixtures.pipeline import WorkerProcess
from tests.replay.conftest import Replay, both_layouts, chat
from tests.replay.scripted_log import (
    ScriptedLog,
    Stream,
    copy_session,
    delete_topic,
    write_standard_log,
)
from tokenwire.session_log import place_of
from tokenwire.settings import Settings


@both_layouts
async def test_a_sound_log_verifies_and_its_dead_letters_are_summarised(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-sound")

    result = await replay(log.settings, "verify")

    assert result.code == 0, result.out
    assert "checked: 3 accepted request(s), 1 rejected record(s), 1 session(s)" in result.out
    assert "dead letters: 1 (not_json: 1)" in result.out
    bad = log.bad_record
    assert f"requests[{bad.partition}]@{bad.offset} · key s-sound · not_json" in result.out
    assert "OK: every accepted request has exactly one terminal event" in result.out


@both_layouts
async def test_a_duplicate_terminal_event_fails_with_both_events_named(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-dup")
    await scripted.events(log.ok.done())  # a second done, next seq: only the count is wrong

    result = await replay(log.settings, "verify", "--session", "s-dup")

    assert result.code == 1
    assert "FAILED: 1 problem(s)" in result.out
    assert "[terminal] session s-dup request r-ok: 2 terminal events: done (attempt 1, seq 3)" in (
        result.out)


@both_layouts
async def test_gaps_missing_terminals_stray_events_and_lost_dead_letters_are_each_reported(
    scripted: ScriptedLog, replay: Replay
) -> None:
    await scripted.create("s-bad")
    gap, open_ended = Stream("r-gap", "s-bad"), Stream("r-open", "s-bad")
    gap_chat = await scripted.request("s-bad", "r-gap", "hi")
    await scripted.request("s-bad", "r-open", "hi")
    start, first = gap.start(), gap.token("a")
    gap.token("b")  # seq 2: built, never written
    await scripted.events(start, first, gap.token("c"), gap.done())
    await scripted.answered(gap, gap_chat, "ac")
    await scripted.events(open_ended.start(), open_ended.token("x"))  # never finished
    stray = Stream("r-nobody-asked", "s-bad")
    await scripted.events(stray.start(), stray.token("boo"), stray.done())
    await scripted.raw_request(b'{"session_id": "s-bad"}', "s-bad")  # rejected, never DLQ'd

    result = await replay(scripted.settings, "verify", "--format", "jsonl")

    assert result.code == 1
    summary, *rest = result.jsonl()
    assert summary["ok"] is False and summary["errors"] == 4
    found = {(f["check"], f["request_id"]): f["message"] for f in rest if f["kind"] == "finding"}
    assert "missing seq 2" in found[("seq", "r-gap")]
    assert found[("terminal", "r-open")].startswith("no terminal event (2 event(s), the last is "
                                                    "token (attempt 1, seq 1)")
    assert "3 event(s) for a request not on" in found[("unknown_request", "r-nobody-asked")]
    assert "is rejected (schema_invalid" in found[("dead_letter", None)]


async def test_a_gone_session_topic_is_checked_against_the_lifecycle_topic_and_said_so(
    scripted: ScriptedLog, replay: Replay, admin: AIOKafkaAdminClient
) -> None:
    log = await write_standard_log(scripted, "s-janitored")
    await delete_topic(admin, log.settings, log.settings.session_topic("s-janitored"))

    result = await replay(log.settings, "verify", "--session", "s-janitored")

    assert result.code == 0, result.out
    assert "is gone: 3 request(s) checked against" in result.out
    assert "no seq or attempt checks" in result.out


@both_layouts
async def test_requests_whose_events_retention_deleted_fall_back_to_the_lifecycle_topic(
    scripted: ScriptedLog, replay: Replay, admin: AIOKafkaAdminClient
) -> None:
    log = await write_standard_log(scripted, "s-aged")
    # r-ok is at offsets 0-3, r-retry at 4-10: its start and first token are deleted too.
    place = place_of(log.settings, "s-aged")  # the session is alone in its partition
    await admin.delete_records({place: RecordsToDelete(before_offset=6)}, timeout_ms=10_000)

    verified = await replay(log.settings, "verify", "--session", "s-aged")
    shown = await replay(log.settings, "transcript", "--session", "s-aged", "--format", "jsonl")

    assert verified.code == 0, verified.out
    assert "is truncated by retention: 2 request(s) checked against" in verified.out
    sources = {x["request_id"]: x["source"] for x in shown.jsonl() if x["kind"] == "exchange"}
    assert sources == {"r-ok": "lifecycle", "r-retry": "lifecycle", "r-fail": "session_topic"}


@both_layouts
async def test_a_time_range_checks_only_requests_accepted_in_it(
    scripted: ScriptedLog, replay: Replay
) -> None:
    now = time.time()
    await scripted.create("s-range")
    # Accepted before --since but answered inside the range: known, not "unknown", not checked.
    early = Stream("r-early", "s-range", at=now - 900)
    await scripted.request("s-range", "r-early", "early", at=now - 900)
    await scripted.events(early.start(), early.token("slow"), at=now - 800)
    # An unfinished request long before the range: out of scope, so it does not fail the run.
    old = Stream("r-old", "s-range", at=now - 7200)
    await scripted.request("s-range", "r-old", "old", at=now - 7200)
    await scripted.events(old.start(), at=now - 7200)
    inside = Stream("r-inside", "s-range", at=now - 300)
    inside_chat = await scripted.request("s-range", "r-inside", "inside", at=now - 300)
    await scripted.events(inside.start(), inside.token("ok"), inside.done(), at=now - 299)
    await scripted.answered(inside, inside_chat, "ok", at=now - 299)
    await scripted.events(early.token(" done"), early.done(), at=now - 200)
    since, until = str(now - 600), str(now - 100)

    in_range = await replay(scripted.settings, "verify", "--since", since, "--until", until)
    await scripted.events(Stream("r-ghost", "s-range").start(), at=now - 150)
    with_ghost = await replay(scripted.settings, "verify", "--since", since, "--until", until)

    assert in_range.code == 0, in_range.out
    assert "checked: 1 accepted request(s)" in in_range.out
    assert "2 event(s) of 1 request(s) accepted outside the time range were not checked" in (
        in_range.out)
    assert with_ghost.code == 1
    assert "[unknown_request] session s-range request r-ghost: 1 event(s)" in with_ghost.out


# --- through the real pipeline ---------------------------------------------------------------


async def test_the_log_of_real_chats_verifies_and_a_tampered_copy_does_not(
    worker: WorkerProcess,
    edge_url: str,
    pipeline_settings: Settings,
    replay: Replay,
    producer: AIOKafkaProducer,
    admin: AIOKafkaAdminClient,
    scripted: ScriptedLog,
) -> None:
    nonce = uuid.uuid4().hex
    first = await chat(edge_url, f"verify me {nonce}")
    await chat(edge_url, f"[[sim: cut_after=4 tokens=16]] again {nonce}", first)
    last = await chat(edge_url, f"[[sim: fail=400]] fail {nonce}", first)
    session = first.session_id
    # Clients see the error event a moment before the worker's `failed` lifecycle record.
    await wait_for_record(pipeline_settings.kafka_bootstrap, pipeline_settings.events_topic,
                          lambda e: e.get("request_id") == last.request_id
                          and e.get("type") == "failed")

    live = await replay(pipeline_settings, "verify", "--session", session)

    assert live.code == 0, live.out
    assert "checked: 3 accepted request(s)" in live.out
    copy = scripted.settings.model_copy(
        update={"requests_partitions": pipeline_settings.requests_partitions,
                "session_layout": pipeline_settings.session_layout})
    await copy_session(pipeline_settings, copy, session, producer, admin)
    assert (await replay(copy, "verify", "--session", session)).code == 0, "a faithful copy"
    done = next(e for e in first.received if e.type == "done")
    tampered = ScriptedLog(copy, producer, admin)
    await tampered.events(Stream(first.request_id, session).done())  # stray: attempt 1, seq 0
    await tampered.events(Stream("r-injected", session).start())
    result = await replay(copy, "verify", "--session", session)

    assert result.code == 1
    assert f"[terminal] session {session} request {first.request_id}: 2 terminal events: " in (
        result.out)
    assert f"done (attempt 1, seq {done.data['seq']})" in result.out
    assert f"[unknown_request] session {session} request r-injected" in result.out
    # The live log is untouched by all this.
    assert (await replay(pipeline_settings, "verify", "--session", session)).code == 0
