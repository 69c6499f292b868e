"""A ``completed``/``failed`` record written twice counts once (schemas/lifecycle.py).

A worker that finds a re-delivered request finished sends its record again, since a crash may
have cut it off: identical copies are a note in ``verify``, one exchange in a transcript; copies
that disagree, or both a ``completed`` and a ``failed``, are still errors.
"""

from __future__ import annotations

from schemas.requests import ChatMessage, ChatRequest
from tests.replay.conftest import Replay, both_layouts
from tests.replay.scripted_log import MODEL, ScriptedLog, StandardLog, write_standard_log


@both_layouts
async def test_a_completed_record_written_twice_verifies_and_is_reported_once(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-twice")
    # The worker's re-sends: the same records again, at new offsets.
    await scripted.answered(log.ok, request_of(log, "r-ok"), "Hi there")
    await scripted.failed(log.failed, request_of(log, "r-fail"))

    verified = await replay(log.settings, "verify", "--session", "s-twice")
    shown = await replay(log.settings, "transcript", "--session", "s-twice", "--format", "jsonl")

    assert verified.code == 0, verified.out
    assert "note: [lifecycle_copies] 2 completed/failed record(s) were written again" in (
        verified.out)
    exchanges = [x for x in shown.jsonl() if x["kind"] == "exchange"]
    assert sorted(x["request_id"] for x in exchanges) == ["r-fail", "r-ok", "r-retry"]


async def test_copies_that_disagree_or_a_completed_beside_a_failed_are_errors(
    scripted: ScriptedLog, replay: Replay
) -> None:
    log = await write_standard_log(scripted, "s-clash")
    await scripted.answered(log.ok, request_of(log, "r-ok"), "Hi THERE")
    await scripted.answered(log.failed, request_of(log, "r-fail"), "")

    result = await replay(log.settings, "verify", "--session", "s-clash", "--format", "jsonl")

    assert result.code == 1
    found = {(f["check"], f["request_id"]): f["message"]
             for f in result.jsonl()[1:] if f["kind"] == "finding"}
    assert found[("lifecycle", "r-ok")].startswith("2 differing copies of the completed record")
    assert found[("lifecycle", "r-fail")].startswith("2 outcome records: failed at ")


def request_of(log: StandardLog, request_id: str) -> ChatRequest:
    """The ids of a request of the standard log, for its lifecycle records."""
    return ChatRequest(request_id=request_id, session_id=log.session_id, user_id="u-audit",
                       messages=[ChatMessage(role="user", content="-")], model=MODEL)
