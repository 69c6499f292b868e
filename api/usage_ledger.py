"""What each identity is using right now, as every edge sees it: read back from the topics.

Quotas must hold when a caller spreads requests over several edges and workers, so no edge keeps
its own count alone. Each edge follows, with one group-less consumer:

- ``chat.requests``: every admission by *any* edge carries headers (``tw-user``, ``tw-request``,
  ``tw-session``, ``tw-new-session``), read without decoding the body: requests per minute, new
  sessions per minute, live sessions, and the start of a generation;
- ``chat.events``: ``completed`` (``usage.total_tokens``: tokens per minute, once per request
  id, as a record may be sent twice) and ``completed`` / ``failed`` (a generation is over:
  concurrency).

An edge also counts its own admissions the moment it publishes them, so a burst at one edge is
counted exactly; admissions at *other* edges count as soon as their records are read back
(milliseconds on a healthy cluster). Records without the headers (direct Kafka producers, who
are trusted through Kafka ACLs instead) are not counted.

Memory is bounded: entries older than their window are dropped, and at most
``auth.ledger_max_identities`` identities are tracked (the least recently active are forgotten).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from api.finished_requests import FinishedRequests
from tokenwire.errors import TopicError
from tokenwire.kafka_clients import new_follower, stop_consumer
from tokenwire.settings import Settings
from tokenwire.topic_metadata import TopicMetadata

log = logging.getLogger(__name__)

MINUTE_S = 60.0
HEADER_USER = "tw-user"
HEADER_REQUEST = "tw-request"
HEADER_SESSION = "tw-session"
HEADER_NEW_SESSION = "tw-new-session"
# getmany() answers as soon as records are there: this only bounds an idle wait.
POLL_MS = 2_000
CATCH_UP_DEADLINE_S = 10.0
ERROR_BACKOFF_S = 1.0
MISSING_TOPICS_RETRY_S = 5.0
METADATA_TIMEOUT_S = 5.0
TERMINAL_EVENT_TYPES = frozenset({"completed", "failed"})
MAX_FINISHED_REMEMBERED = 10_000


def admission_headers(
    user_id: str, request_id: str, session_id: str, *, new_session: bool
) -> list[tuple[str, bytes]]:
    """The headers the ingress puts on a request record, for every edge's ledger."""
    return [
        (HEADER_USER, user_id.encode()),
        (HEADER_REQUEST, request_id.encode()),
        (HEADER_SESSION, session_id.encode()),
        (HEADER_NEW_SESSION, b"1" if new_session else b"0"),
    ]


@dataclass(frozen=True)
class Usage:
    requests_last_minute: int
    tokens_last_minute: int
    in_flight: int
    new_sessions_last_minute: int
    live_sessions: int
    # Seconds until the oldest request / token entry of the last minute drops out.
    requests_free_in_s: float
    tokens_free_in_s: float


@dataclass(frozen=True)
class Admission:
    """What ``note_admitted`` counted, so that ``withdraw`` can take exactly that back."""

    user: str
    request_id: str
    session_id: str
    at: float
    counted_new_session: bool
    counted_session: bool


@dataclass
class _UserUsage:
    requests: OrderedDict[str, float] = field(default_factory=OrderedDict)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    in_flight: OrderedDict[str, float] = field(default_factory=OrderedDict)
    new_sessions: deque[float] = field(default_factory=deque)
    sessions: OrderedDict[str, float] = field(default_factory=OrderedDict)
    # Requests whose terminal event was read, so a late-read admission is not "in flight".
    finished: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def prune(self, now: float, live_window_s: float, in_flight_ttl_s: float) -> None:
        _drop_older(self.requests, now - MINUTE_S)
        _drop_older(self.in_flight, now - in_flight_ttl_s)
        _drop_older(self.sessions, now - live_window_s)
        _drop_older(self.finished, now - in_flight_ttl_s)
        while self.tokens and self.tokens[0][0] < now - MINUTE_S:
            self.tokens.popleft()
        while self.new_sessions and self.new_sessions[0] < now - MINUTE_S:
            self.new_sessions.popleft()


def _drop_older(entries: OrderedDict[str, float], cutoff: float) -> None:
    # Entries are kept in first-seen order, so the old ones are at the front.
    while entries and next(iter(entries.values())) < cutoff:
        entries.popitem(last=False)


class UsageLedger:
    def __init__(
        self, settings: Settings, *, client_id: str, finished: FinishedRequests | None = None
    ) -> None:
        self._settings = settings
        # Told of every terminal record read, for the cancel endpoint's 409 (api/cancel.py).
        self._finished = finished
        self._client_id = client_id
        self._live_window_s = settings.auth.live_session_window_s
        # A request with no terminal event after every attempt could have run stops counting.
        self._in_flight_ttl_s = settings.request_timeout_s * settings.retry_max_attempts + 60.0
        self._max_identities = settings.auth.ledger_max_identities
        self._horizon_s = max(self._live_window_s, MINUTE_S)
        self._users: OrderedDict[str, _UserUsage] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._metadata = TopicMetadata(settings.kafka_connection, client_id=f"{client_id}-metadata")
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Assign and read back the horizon before the edge answers, within a deadline; a
        ledger that cannot (topics missing, broker slow) keeps trying in its task."""
        consumer = new_follower(self._settings.kafka_connection, client_id=self._client_id)
        await self._metadata.start()
        await consumer.start()
        self._consumer = consumer
        try:
            async with asyncio.timeout(CATCH_UP_DEADLINE_S):
                await self._assign_from_horizon(consumer)
                await self._catch_up()
        except (TimeoutError, KafkaError, TopicError) as exc:
            log.warning("usage ledger starts partial error=%r; quotas count from now", exc)
        self._task = asyncio.create_task(self._run(), name="tokenwire-usage-ledger")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None
        await self._metadata.close()

    async def _assign_from_horizon(self, consumer: AIOKafkaConsumer) -> None:
        s = self._settings
        core = [s.requests_topic, s.events_topic]
        # Asked first: offsets for a missing topic make aiokafka retry (and log) until timeout.
        missing = set(core) - await self._metadata.existing(core, timeout_s=METADATA_TIMEOUT_S)
        if missing:
            raise TopicError(f"topics not created yet: {sorted(missing)}")
        # Both core topics are created with ``requests_partitions`` (tokenwire/topics.py); asking
        # the cluster instead would mean a metadata request for every topic it holds.
        partitions = [
            TopicPartition(topic, partition)
            for topic in (s.requests_topic, s.events_topic)
            for partition in range(s.requests_partitions)
        ]
        since_ms = int((time.time() - self._horizon_s) * 1000)
        # Positions first, then assign and seek at once: an assignment without a position would
        # read the topics from their very beginning.
        offsets = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            found = offsets.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])

    async def _catch_up(self) -> None:
        """Read what is already there, so an edge restart forgets no usage."""
        assert self._consumer is not None
        consumer = self._consumer
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
            await self._poll()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                if not self._consumer.assignment():
                    await self._assign_from_horizon(self._consumer)
                await self._poll()
            except asyncio.CancelledError:
                raise
            except TopicError as exc:
                log.warning("usage ledger waiting error=%s", exc)
                await asyncio.sleep(MISSING_TOPICS_RETRY_S)
            except Exception as exc:  # quotas go on from what is known; never kill the edge
                log.warning("usage ledger poll failed error=%r", exc)
                await asyncio.sleep(ERROR_BACKOFF_S)

    async def _poll(self) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=5_000)
        requests_topic = self._settings.requests_topic
        for tp, records in batch.items():
            for record in records:
                if tp.topic == requests_topic:
                    self._apply_admission(record)
                else:
                    self._apply_lifecycle(record)

    # --- input --------------------------------------------------------------------------
    def note_admitted(
        self, user_id: str, request_id: str, session_id: str, *, new_session: bool,
        at: float | None = None,
    ) -> Admission:
        """Count an admission now; the same record read back later is not counted again."""
        when = time.time() if at is None else at
        known = self._users.get(user_id)
        had_session = known is not None and session_id in known.sessions
        counted_new = self._admit(user_id, request_id, session_id, new_session, when)
        return Admission(user_id, request_id, session_id, when, counted_new, not had_session)

    def withdraw(self, admission: Admission) -> None:
        """Uncount an admission whose request was never published."""
        usage = self._users.get(admission.user)
        if usage is None:
            return
        usage.requests.pop(admission.request_id, None)
        usage.in_flight.pop(admission.request_id, None)
        if admission.counted_new_session:
            with contextlib.suppress(ValueError):
                usage.new_sessions.remove(admission.at)
        if admission.counted_session:
            usage.sessions.pop(admission.session_id, None)

    def _apply_admission(self, record: ConsumerRecord) -> None:
        headers = {key: value for key, value in (record.headers or ())}
        try:
            user = headers[HEADER_USER].decode()
            request_id = headers[HEADER_REQUEST].decode()
            session_id = headers[HEADER_SESSION].decode()
        except (KeyError, UnicodeDecodeError):
            return  # not admitted by an edge
        new_session = headers.get(HEADER_NEW_SESSION) == b"1"
        self._admit(user, request_id, session_id, new_session, record.timestamp / 1000)

    def _admit(
        self, user: str, request_id: str, session_id: str, new_session: bool, at: float
    ) -> bool:
        """Count one admission (once per request id); True if it counted a new session."""
        if at < time.time() - self._horizon_s:
            return False
        usage = self._user(user)
        if request_id in usage.requests or request_id in usage.in_flight:
            return False
        usage.requests[request_id] = at
        # A terminal event read before its admission (catch-up, lag) already ended it.
        if request_id not in usage.finished:
            usage.in_flight[request_id] = at
        counted_new = new_session and session_id not in usage.sessions
        if counted_new:
            usage.new_sessions.append(at)
        usage.sessions[session_id] = at
        usage.sessions.move_to_end(session_id)
        return counted_new

    def _apply_lifecycle(self, record: ConsumerRecord) -> None:
        try:
            event = json.loads(record.value)
            kind, user, request_id = event["type"], event["user_id"], event["request_id"]
        except (TypeError, ValueError, KeyError):
            return
        if kind not in TERMINAL_EVENT_TYPES or not isinstance(user, str):
            return
        if self._finished is not None:
            self._finished.note(event)
        at = record.timestamp / 1000
        if at < time.time() - self._horizon_s:
            return
        usage = self._user(user)
        usage.in_flight.pop(request_id, None)
        # A worker may send a request's record again after a crash: its tokens count once.
        again = request_id in usage.finished
        usage.finished[request_id] = at
        if len(usage.finished) > MAX_FINISHED_REMEMBERED:
            usage.finished.popitem(last=False)
        if kind == "completed" and not again:
            tokens = (event.get("usage") or {}).get("total_tokens")
            if isinstance(tokens, int) and tokens > 0:
                usage.tokens.append((record.timestamp / 1000, tokens))

    def _user(self, user: str) -> _UserUsage:
        usage = self._users.get(user)
        if usage is None:
            usage = self._users[user] = _UserUsage()
            if len(self._users) > self._max_identities:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        return usage

    # --- output -------------------------------------------------------------------------
    def usage(self, user: str, *, now: float | None = None) -> Usage:
        at = time.time() if now is None else now
        usage = self._users.get(user)
        if usage is None:
            return Usage(0, 0, 0, 0, 0, 0.0, 0.0)
        usage.prune(at, self._live_window_s, self._in_flight_ttl_s)
        oldest_request = next(iter(usage.requests.values()), at)
        oldest_tokens = usage.tokens[0][0] if usage.tokens else at
        return Usage(
            requests_last_minute=len(usage.requests),
            tokens_last_minute=sum(tokens for _, tokens in usage.tokens),
            in_flight=len(usage.in_flight),
            new_sessions_last_minute=len(usage.new_sessions),
            live_sessions=len(usage.sessions),
            requests_free_in_s=max(0.0, oldest_request + MINUTE_S - at),
            tokens_free_in_s=max(0.0, oldest_tokens + MINUTE_S - at),
        )

    def knows_request(self, user: str, request_id: str) -> bool:
        """Whether ``user``'s ``request_id`` was admitted (by any edge) and is in flight or less
        than a minute old: it exists even before its session has an event."""
        usage = self._users.get(user)
        return usage is not None and (request_id in usage.in_flight or request_id in usage.requests)

    def tracked_identities(self) -> int:
        return len(self._users)
