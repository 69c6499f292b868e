"""``tokenwire replay transcript`` rebuilds what the model sent, exactly as clients saw it."""

from __future__ import annotations

import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient

from tests.fixtures.pipeline import WorkerProcess
from tests.replay.conftest import Replay, both_layouts, chat
from tests.replay.scripted_log import ScriptedLog, Stream, delete_topic, write_standard_log
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text


@both_layouts
async def test_a_transcript_has_prompts_final_answers_usage_errors_and_dead_letters(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-audit")

    result = await replay(log.settings, "transcript", "--session", "s-audit", "--format", "jsonl")

    assert result.code == 0
    lines = result.jsonl()
    exchanges = {x["request_id"]: x for x in lines if x["kind"] == "exchange"}
    assert list(exchanges) == ["r-ok", "r-retry", "r-fail"], "in the order they were accepted"
    ok, retried, failed = exchanges["r-ok"], exchanges["r-retry"], exchanges["r-fail"]
    assert ok["messages"] == [{"role": "user", "content": "Hello"}]
    assert (ok["status"], ok["answer"], ok["discarded"]) == ("done", "Hi there", [])
    assert ok["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                           "estimated": False}
    assert ok["timings"]["ttft_s"] == 0.1 and ok["source"] == "session_topic"
    assert retried["answer"] == "Full answer", "the discarded attempt is not merged"
    assert retried["discarded"] == ["Partial"] and retried["retries"] == 1
    assert [(a["attempt"], a["opened_by"], a["text"], a["ended_by"]) for a in retried["attempts"]
            ] == [(1, "start", "Partial", None), (2, "retry", "Full answer", "done")]
    assert failed["status"] == "error" and failed["answer"] == ""
    assert failed["error"] == {"code": "http_400", "message": "bad request", "retryable": False}
    assert failed["timings"]["duration_s"] >= 0 and failed["timings"]["ttft_s"] is None
    [letter] = [x for x in lines if x["kind"] == "dead_letter"]
    assert letter["reason"] == "not_json" and letter["source_offset"] == log.bad_record.offset


@both_layouts
async def test_the_text_format_shows_a_discarded_attempt_apart_from_the_answer(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-text")

    result = await replay(log.settings, "transcript", "--session", "s-text", "--request", "r-retry")

    assert result.code == 0
    text = result.out
    assert "  user: Tell me more\n  assistant [done, stop]: Full answer\n" in text
    assert "attempt 1 · start · DISCARDED: Partial" in text
    assert "attempt 2 · retry (stream_cut) · final, ended by done" in text
    assert "r-ok" not in text and "dead letters" not in text, "--request shows one request"


@both_layouts
async def test_a_time_range_selects_requests_by_record_time(
    scripted: ScriptedLog, replay: Replay
) -> None:
    now = time.time()
    await scripted.create("s-days")
    for request_id, at in (("r-yesterday", now - 86400), ("r-today", now - 60)):
        chat_request = await scripted.request("s-days", request_id, request_id, at=at)
        stream = Stream(request_id, "s-days", at=at)
        await scripted.events(stream.start(), stream.token(request_id), stream.done(), at=at + 1)
        await scripted.answered(stream, chat_request, request_id, at=at + 1)
    settings = scripted.settings

    today = await replay(settings, "transcript", "--session", "s-days", "--format", "jsonl",
                         "--since", str(now - 3600))
    yesterday = await replay(settings, "transcript", "--session", "s-days", "--format", "jsonl",
                             "--since", _iso(now - 2 * 86400), "--until", _iso(now - 3600))
    none = await replay(settings, "transcript", "--session", "s-days", "--since", str(now + 60))

    assert [x["answer"] for x in today.jsonl()] == ["r-today"]
    assert [x["answer"] for x in yesterday.jsonl()] == ["r-yesterday"]
    assert none.code == 1 and none.out == ""


async def test_when_the_session_topic_is_gone_answers_come_from_the_lifecycle_topic(
    scripted: ScriptedLog, replay: Replay, admin: AIOKafkaAdminClient
) -> None:
    log = await write_standard_log(scripted, "s-gone")
    await delete_topic(admin, log.settings, log.settings.session_topic("s-gone"))

    result = await replay(log.settings, "transcript", "--session", "s-gone", "--format", "jsonl")
    text = await replay(log.settings, "transcript", "--session", "s-gone")

    exchanges = {x["request_id"]: x for x in result.jsonl() if x["kind"] == "exchange"}
    assert {x["source"] for x in exchanges.values()} == {"lifecycle"}
    assert exchanges["r-ok"]["answer"] == "Hi there"
    assert exchanges["r-retry"]["answer"] == "Full answer" and exchanges["r-retry"]["retries"] == 1
    assert exchanges["r-fail"]["status"] == "error"
    assert "no longer exists" in text.out
    assert "discarded partial attempts are not recorded" in text.out


def _iso(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


# --- through the real pipeline ---------------------------------------------------------------


async def test_a_transcript_of_real_chats_shows_exactly_what_the_clients_received(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings, replay: Replay
) -> None:
    nonce = uuid.uuid4().hex
    first = await chat(edge_url, f"Hello there {nonce}")
    retried = await chat(edge_url, f"[[sim: cut_after=12 tokens=30]] go on {nonce}", first)
    failed = await chat(edge_url, f"[[sim: fail=400]] no {nonce}", first)
    chats = [first, retried, failed]

    result = await replay(pipeline_settings, "transcript", "--session", first.session_id,
                          "--format", "jsonl")

    assert result.code == 0
    exchanges = {x["request_id"]: x for x in result.jsonl() if x["kind"] == "exchange"}
    assert list(exchanges) == [c.request_id for c in chats]
    for c in chats:
        client = fold(e.data for e in c.received)[c.request_id]
        shown = exchanges[c.request_id]
        assert (shown["status"], shown["answer"], shown["discarded"], shown["retries"]) == (
            client.status, client.text, client.discarded, client.retries)
    assert exchanges[first.request_id]["answer"] == expected_text(
        [{"role": "user", "content": f"Hello there {nonce}"}])
    # 12 tokens outgrow the coalescer's 32 characters: partial text was sent, then discarded.
    assert exchanges[retried.request_id]["discarded"], "the cut attempt is shown as discarded"
    assert exchanges[failed.request_id]["error"]["code"] == "http_400"
