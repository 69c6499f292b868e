"""Version-2 output in the audit replay: ``transcript`` shows tool calls, refusals and
cancellations; ``verify`` checks a ``completed`` record's ``message`` against the stream."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from schemas.lifecycle import FinalMessage
from schemas.messages import ChatMessage, ToolCall
from schemas.session_events import CANCELLED
from tests.fixtures.kafka_reading import wait_for_record
from tests.fixtures.pipeline import WorkerProcess
from tests.replay.conftest import Replay, both_layouts, chat
from tests.replay.scripted_log import ScriptedLog, Stream, delete_topic
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_refusal, expected_tool_calls

PARIS = '{"city": "Paris"}'
OSLO = '{"city": "Oslo"}'
REFUSAL = "I can't help with that."


def call(call_id: str, arguments: str, name: str = "get_weather") -> ToolCall:
    return ToolCall.model_validate(
        {"id": call_id, "function": {"name": name, "arguments": arguments}}
    )


def wire(call_id: str, arguments: str, name: str = "get_weather") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass(frozen=True)
class ToolLog:
    settings: Settings
    session_id: str


async def write_tool_log(
    log: ScriptedLog, session_id: str, *, recorded_calls: list[ToolCall] | None = None,
    recorded_refusal: str | None = REFUSAL, reported_calls: list[ToolCall] | None = None,
) -> ToolLog:
    """A tool-calling conversation, a refusal, a stopped answer and a retried tool call.

    ``recorded_*`` replace what the ``completed`` records say (to tamper with them),
    ``reported_calls`` what ``done`` of r-tool says.
    """
    await log.create(session_id)
    question = "Weather in Paris and Oslo?"
    parallel = [call("call_a", PARIS), call("call_b", OSLO)]

    tool_chat = await log.request(session_id, "r-tool", question)
    tool = Stream("r-tool", session_id)
    await log.events(
        tool.start(),
        tool.tool_call(0, '{"city": ', id="call_a", name="get_weather"),
        tool.tool_call(1, OSLO, id="call_b", name="get_weather"),
        tool.tool_call(0, '"Paris"}'),
        tool.done(finish_reason="tool_calls",
                  tool_calls=parallel if reported_calls is None else reported_calls),
    )
    await log.answered(tool, tool_chat, "", finish_reason="tool_calls", message=FinalMessage(
        tool_calls=parallel if recorded_calls is None else recorded_calls))

    history = [
        ChatMessage(role="user", content=question),
        ChatMessage(role="assistant", tool_calls=parallel),
        ChatMessage(role="tool", tool_call_id="call_a", content="18 C"),
        ChatMessage(role="tool", tool_call_id="call_b", content="9 C"),
    ]
    after_chat = await log.request(session_id, "r-after", "So?", history=history[1:])
    after = Stream("r-after", session_id)
    await log.events(after.start(), after.token("Paris 18 C, Oslo 9 C"), after.done())
    await log.answered(after, after_chat, "Paris 18 C, Oslo 9 C",
                       message=FinalMessage(content="Paris 18 C, Oslo 9 C"))

    refuse_chat = await log.request(session_id, "r-refuse", "Help me with something bad")
    refuse = Stream("r-refuse", session_id)
    await log.events(refuse.start(), refuse.refusal("I can't help "), refuse.refusal("with that."),
                     refuse.done())
    await log.answered(refuse, refuse_chat, "", message=FinalMessage(refusal=recorded_refusal))

    stop_chat = await log.request(session_id, "r-stop", "Tell me a long story")
    stop = Stream("r-stop", session_id)
    await log.events(stop.start(), stop.token("Once upon"), stop.done(finish_reason=CANCELLED))
    await log.answered(stop, stop_chat, "Once upon", finish_reason=CANCELLED,
                       message=FinalMessage(content="Once upon"))

    retool_chat = await log.request(session_id, "r-retool", "Weather in Rome?")
    retool = Stream("r-retool", session_id)
    rome = call("call_y", '{"city": "Rome"}')
    await log.events(
        retool.start(),
        retool.tool_call(0, '{"ci', id="call_x", name="get_weather"),
        retool.retry(),
        retool.tool_call(0, '{"city": "Rome"}', id="call_y", name="get_weather"),
        retool.done(finish_reason="tool_calls", tool_calls=[rome]),
    )
    await log.answered(retool, retool_chat, "", retries=1, finish_reason="tool_calls",
                       message=FinalMessage(tool_calls=[rome]))
    return ToolLog(log.settings, session_id)


# --- transcript -------------------------------------------------------------------------------


@both_layouts
async def test_a_transcript_lists_tool_calls_refusals_and_marks_a_cancelled_answer(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_tool_log(scripted, "s-tools")

    result = await replay(log.settings, "transcript", "--session", "s-tools", "--format", "jsonl")

    assert result.code == 0, result.out
    x = {e["request_id"]: e for e in result.jsonl() if e["kind"] == "exchange"}
    assert x["r-tool"]["tool_calls"] == [wire("call_a", PARIS), wire("call_b", OSLO)]
    assert (x["r-tool"]["finish_reason"], x["r-tool"]["answer"]) == ("tool_calls", "")
    assert x["r-after"]["messages"][0] == {
        "role": "assistant", "tool_calls": [wire("call_a", PARIS), wire("call_b", OSLO)]}
    assert x["r-after"]["messages"][1] == {"role": "tool", "tool_call_id": "call_a",
                                           "content": "18 C"}
    assert (x["r-refuse"]["refusal"], x["r-refuse"]["answer"]) == (REFUSAL, "")
    assert (x["r-stop"]["status"], x["r-stop"]["cancelled"], x["r-stop"]["answer"]) == (
        "done", True, "Once upon")
    assert x["r-tool"]["cancelled"] is False
    retool = x["r-retool"]
    assert retool["tool_calls"] == [wire("call_y", '{"city": "Rome"}')], "the cut call dropped"
    assert retool["attempts"][0]["tool_calls"] == [wire("call_x", '{"ci')]


async def test_the_text_format_shows_tool_calls_their_results_refusals_and_the_stop(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_tool_log(scripted, "s-tools-text")

    out = (await replay(log.settings, "transcript", "--session", "s-tools-text")).out

    assert (
        "  assistant [done, tool_calls]: (no text)\n"
        f"  assistant tool call get_weather · id call_a: {PARIS}\n"
        f"  assistant tool call get_weather · id call_b: {OSLO}\n"
    ) in out
    assert (
        f"  assistant tool call get_weather · id call_b: {OSLO}\n"
        "  tool (for call_a): 18 C\n  tool (for call_b): 9 C\n  user: So?\n"
    ) in out, "the next request's history shows the calls and their results"
    assert f"  assistant [done, stop]: (no text)\n  assistant refusal: {REFUSAL}\n" in out
    assert "  assistant [CANCELLED, partial]: Once upon\n  cancelled: stopped through the " in out
    assert '  attempt 1 · start · DISCARDED tool call get_weather · id call_x: {"ci' in out


async def test_when_the_session_topic_is_gone_tool_calls_come_from_the_completed_message(
    scripted: ScriptedLog, replay: Replay, admin: AIOKafkaAdminClient
) -> None:
    log = await write_tool_log(scripted, "s-tools-gone")
    await delete_topic(admin, log.settings, log.settings.session_topic("s-tools-gone"))

    result = await replay(log.settings, "transcript", "--session", "s-tools-gone",
                          "--format", "jsonl")

    x = {e["request_id"]: e for e in result.jsonl() if e["kind"] == "exchange"}
    assert {e["source"] for e in x.values()} == {"lifecycle"}
    assert x["r-tool"]["tool_calls"] == [wire("call_a", PARIS), wire("call_b", OSLO)]
    assert x["r-refuse"]["refusal"] == REFUSAL
    assert x["r-stop"]["cancelled"] is True


# --- verify -----------------------------------------------------------------------------------


@both_layouts
async def test_a_sound_log_with_tool_calls_refusals_and_a_stop_verifies(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_tool_log(scripted, "s-tools-ok")

    result = await replay(log.settings, "verify", "--session", "s-tools-ok")

    assert result.code == 0, result.out


async def test_verify_reports_a_completed_message_whose_tool_call_differs_from_the_stream(
    scripted: ScriptedLog, replay: Replay
) -> None:
    wrong = [call("call_a", '{"city": "Pisa"}'), call("call_b", OSLO)]
    log = await write_tool_log(scripted, "s-tools-bad", recorded_calls=wrong)

    result = await replay(log.settings, "verify", "--session", "s-tools-bad")

    assert result.code == 1, result.out
    assert "FAILED: 1 problem(s)" in result.out
    assert "[lifecycle] session s-tools-bad request r-tool: message.tool_calls at " in result.out
    assert ("differ from the streamed ones: call 0 (get_weather, id call_a) arguments differ "
            "at character 11 (16 vs 17 characters)") in result.out


async def test_verify_reports_a_missing_tool_call_and_a_lost_refusal(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_tool_log(scripted, "s-tools-lost", recorded_calls=[call("call_a", PARIS)],
                               recorded_refusal=None)

    result = await replay(log.settings, "verify", "--session", "s-tools-lost", "--format", "jsonl")

    assert result.code == 1
    found = {(f["check"], f["request_id"]): f["message"]
             for f in result.jsonl()[1:] if f["kind"] == "finding"}
    assert "hold 1 call(s) but the session's tool_call events assemble 2" in (
        found[("lifecycle", "r-tool")])
    assert found[("lifecycle", "r-refuse")].startswith("message.refusal at ")
    assert "is absent but the streamed refusal is 23 characters" in (
        found[("lifecycle", "r-refuse")])


async def test_verify_reports_done_tool_calls_that_differ_from_the_fragments(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_tool_log(scripted, "s-tools-done",
                               reported_calls=[call("call_a", PARIS), call("call_c", OSLO)])

    result = await replay(log.settings, "verify", "--session", "s-tools-done")

    assert result.code == 1
    assert ("[tool_calls] session s-tools-done request r-tool: the tool calls of done (attempt 1, "
            "seq 4)") in result.out
    assert "call 1 (get_weather, id call_c) vs call 1 (get_weather, id call_b)" in result.out


# --- through the real pipeline ---------------------------------------------------------------


async def test_real_tool_calls_and_refusals_show_in_the_transcript_and_verify(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings, replay: Replay
) -> None:
    nonce = uuid.uuid4().hex
    tool_text = (f'[[sim: tool=get_weather args={{"city":"Paris"}} '
                 f'tool=get_time args={{"zone":"CET"}}]] {nonce}')
    tooled = await chat(edge_url, tool_text)
    refused = await chat(edge_url, f"[[sim: refusal=1]] {nonce}", tooled)
    await wait_for_record(pipeline_settings.kafka_bootstrap, pipeline_settings.events_topic,
                          lambda e: e.get("request_id") == refused.request_id
                          and e.get("type") == "completed")

    shown = await replay(pipeline_settings, "transcript", "--session", tooled.session_id,
                         "--format", "jsonl")
    verified = await replay(pipeline_settings, "verify", "--session", tooled.session_id)

    x = {e["request_id"]: e for e in shown.jsonl() if e["kind"] == "exchange"}
    for c in (tooled, refused):
        client = fold(e.data for e in c.received)[c.request_id]
        assert x[c.request_id]["tool_calls"] == [t.model_dump() for t in client.tool_calls]
        assert x[c.request_id]["refusal"] == client.refusal
    asked = [{"role": "user", "content": tool_text}]
    assert x[tooled.request_id]["tool_calls"] == expected_tool_calls(asked)
    assert len(x[tooled.request_id]["tool_calls"]) == 2
    assert x[refused.request_id]["refusal"] == expected_refusal(
        [{"role": "user", "content": f"[[sim: refusal=1]] {nonce}"}])
    assert verified.code == 0, verified.out
