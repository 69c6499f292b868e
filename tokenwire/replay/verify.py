"""``replay verify``: read a scope of the log without a consumer group, check it, report.

The checks themselves (and what each one means) are in ``tokenwire.replay.checks``. The scope is
the requests accepted on the requests topic for the given sessions and/or time range; their
sessions' events, lifecycle records and dead letters are read from the start of the range to
now, because they follow the request that caused them. Sessions' events are read in the layout of
the settings (``session_logs``): each session's topic in turn, or each partition of the shared
topic once.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from tokenwire.replay.audit_log import (
    DeadLetter,
    LoggedOutcome,
    LoggedRequest,
    find_request_ids,
    read_dead_letters,
    read_outcomes,
    read_requests,
)
from tokenwire.replay.checks import (
    Finding,
    Strays,
    check_dead_letters,
    check_duplicates,
    check_lifecycle_copies,
    check_misplaced,
    check_placement,
    check_session,
    check_strays,
)
from tokenwire.replay.log_reader import WHOLE_LOG, LogReader, TimeRange
from tokenwire.replay.progress import Progress
from tokenwire.replay.session_logs import session_logs
from tokenwire.settings import Settings

LISTED_DEAD_LETTERS = 20


@dataclass
class VerifyReport:
    scope: str
    sessions_in: str = ""  # where sessions' events are (the layout)
    accepted: int = 0
    rejected: int = 0
    sessions: int = 0
    events: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


async def verify_log(
    settings: Settings,
    *,
    window: TimeRange = WHOLE_LOG,
    sessions: set[str] | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Read and check one session at a time: memory holds one session's events (topic layout) or
    one partition's of the range (shared layout)."""
    report = VerifyReport(_scope(sessions, window))
    async with LogReader(settings.kafka_connection, progress=progress) as reader:
        logs = session_logs(reader, settings)
        report.sessions_in = logs.description
        requests = await read_requests(reader, settings.requests_topic, window, sessions)
        outcomes_of: dict[str, list[LoggedOutcome]] = defaultdict(list)
        for outcome in await read_outcomes(reader, settings.events_topic, window.onward, sessions):
            outcomes_of[outcome.event.request_id].append(outcome)
        report.findings += check_duplicates(requests.accepted)
        of_session: dict[str, dict[str, LoggedRequest]] = defaultdict(dict)
        for request in requests.accepted:
            of_session[request.request.session_id].setdefault(request.request_id, request)
        session_of = {r.request_id: r.request.session_id for r in requests.accepted}
        strays: dict[str, Strays] = {}
        async with contextlib.aclosing(logs.scan(window, sessions, set(of_session))) as scan:
            async for log in scan:
                report.sessions += 1
                report.events += len(log.events)
                mine = list(of_session[log.session_id].values())
                report.findings += check_session(settings, log, mine, outcomes_of)
                placement, found = check_placement(log, session_of)
                report.findings += placement
                strays |= found
        report.findings += check_misplaced(settings, logs.misplaced)
        outside: set[str] = set()
        if strays and window.bounded:
            outside = await find_request_ids(reader, settings.requests_topic, set(strays), window)
        letters = await read_dead_letters(reader, settings.dead_letter_topic, window.onward)
    report.findings += check_strays(settings, strays, outside)
    report.findings += check_lifecycle_copies(outcomes_of, set(session_of))
    report.accepted, report.rejected = len(requests.accepted), len(requests.rejected)
    report.dead_letters, dead_letter_findings = check_dead_letters(
        settings, requests, letters, sessions
    )
    report.findings += dead_letter_findings
    return report


def _scope(sessions: set[str] | None, window: TimeRange) -> str:
    who = f"session(s) {', '.join(sorted(sessions))}" if sessions else "all sessions"
    return f"{who} · {window.describe()}"


# --- rendering --------------------------------------------------------------------------------


def render_text(report: VerifyReport) -> str:
    r = report
    lines = [
        f"verify · {r.scope}",
        f"checked: {r.accepted} accepted request(s), {r.rejected} rejected record(s), "
        f"{r.sessions} session(s) with {r.events} event(s) ({r.sessions_in})",
    ]
    reasons = Counter(d.reason for d in r.dead_letters)
    summary = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
    lines.append(f"dead letters: {len(r.dead_letters)}" + (f" ({summary})" if summary else ""))
    for d in r.dead_letters[:LISTED_DEAD_LETTERS]:
        lines.append(f"  {d.source} · key {d.key} · {d.reason}: {d.error[:200]}")
    if len(r.dead_letters) > LISTED_DEAD_LETTERS:
        lines.append(f"  ... and {len(r.dead_letters) - LISTED_DEAD_LETTERS} more")
    notes = [f for f in r.findings if f.severity == "note"]
    lines += [f"note: {n}" for n in notes]
    if r.ok:
        lines.append(
            "OK: every accepted request has exactly one terminal event and a gap-free final "
            "attempt; no events for unknown requests; every rejected record is dead-lettered"
        )
    else:
        lines.append(f"FAILED: {len(r.errors)} problem(s)")
        lines += [f"  {e}" for e in r.errors]
    return "\n".join(lines) + "\n"


def render_jsonl(report: VerifyReport) -> Iterator[str]:
    """``kind``: one ``summary``, then ``finding`` and ``dead_letter`` lines."""
    summary = {
        "kind": "summary",
        "ok": report.ok,
        "scope": report.scope,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "sessions": report.sessions,
        "events": report.events,
        "errors": len(report.errors),
        "dead_letters": len(report.dead_letters),
    }
    yield json.dumps(summary, ensure_ascii=False)
    for finding in report.findings:
        yield json.dumps({"kind": "finding", **asdict(finding)}, ensure_ascii=False)
    for d in report.dead_letters:
        yield json.dumps(
            {"kind": "dead_letter", **asdict(d), "where": str(d.where)}, ensure_ascii=False
        )
