"""The fold of lifecycle events into event-time windows: pure, so it runs without a broker.

``Aggregator.apply`` takes one event with its partition and offset and a mutable mapping of
state (the Faust table in the worker, a dict in tests and replays) and returns what to emit.
Keys of the state (a user lives on one partition of ``chat.events``, keyed by user_id):

    w|<partition>|<size>|<start>|<user>   UserWindow: one user's window (windows.py)
    b|<partition>|<size>|<user>           Baseline: the user's moving averages (risk.py)
    o|<partition>|<user>                  requests accepted, not finished: {request_id: [model, at]}
    c|<partition>                         {"wm": watermark, "offset": last offset applied,
                                           "open": [[size, start], ...] windows still open,
                                           "users": {"<size>|<start>": users with a
                                                     series of their own (series.py)},
                                           "swept": last sweep interval (expiry.py)}

A window closes when the partition's watermark (the largest event time seen on it) passes its
end plus ``grace_s``: its final points are emitted, the users' baselines move, its keys are
deleted. Idle baselines and stale in-flight sets are deleted by a periodic sweep in event time
(``expiry``), so the state is bounded by the users active within ``baseline_idle_ttl_s``. An
event for a window already closed is late: counted in ``late_events`` of the user's
current window (and a metric), never applied. Every value is written back as a new object
(``state[key] = ...``) so a Faust table sends it to its changelog, and ``c|<partition>`` is
written last: a record at or below that offset (redelivered after a restart) is skipped, and a
record duplicated upstream counts once per window through ``UserWindow.seen``: the chat worker
sends a ``completed``/``failed`` record again, with the same ``at``, when it cannot know whether
a crash cut it off (schemas/lifecycle.py), so the copy meets its mark in the same windows and is
dropped there. ``seen`` lives and dies with its window, so the marks are bounded by the open
windows. A copy that arrives after its window closed is late (counted as late, not applied).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from agents.aggregates.content_flags import scan_answer, scan_prompt
from agents.aggregates.expiry import Expiry
from agents.aggregates.keys import (
    baseline_key,
    clock_key,
    legacy_baseline_key,
    legacy_open_key,
    open_key,
    partition_of_window_key,
    window_key,
    window_prefix,
)
from agents.aggregates.points import PointRow, alert_row, rate_rows, risk_row
from agents.aggregates.risk import Baseline, RiskConfig, RiskInputs, RiskScore, score
from agents.aggregates.series import SeriesLimits, other_rows
from agents.aggregates.windows import UserWindow, window_label, window_start
from schemas.alerts import RiskAlert
from schemas.lifecycle import Accepted, Completed, Failed, FirstToken, LifecycleEvent
from tokenwire.aggregates_settings import AggregatesSettings

log = logging.getLogger(__name__)

State = MutableMapping[str, Any]

# In-flight requests kept per user: beyond this the oldest is forgotten (it stops being active).
MAX_OPEN_PER_USER = 1000


@dataclass
class Output:
    rows: list[PointRow] = field(default_factory=list)
    alerts: list[RiskAlert] = field(default_factory=list)
    # Window labels this event was late for (one entry per window size).
    late: list[str] = field(default_factory=list)
    closed: int = 0
    skipped: bool = False


class Aggregator:
    def __init__(self, settings: AggregatesSettings, default_model: str | None = None) -> None:
        self.sizes = list(settings.windows_s)
        self.grace_s = settings.grace_s
        self.stale_s = settings.active_stale_s
        self.ttft_exact_max = settings.ttft_exact_max
        self.alert_ttl_s = settings.alert_ttl_s
        self.scan_max_chars = settings.scan_max_chars
        self.risk = RiskConfig.from_settings(settings)
        self.series = SeriesLimits.from_settings(settings, default_model)
        self.expiry = Expiry(
            baseline_idle_ttl_s=settings.baseline_idle_ttl_s,
            stale_s=settings.active_stale_s,
            interval_s=settings.state_sweep_interval_s,
        )
        # Window keys changed since the last current_rows(); None: all of them (a fresh start).
        self._dirty: set[str] | None = None

    # --- the fold ----------------------------------------------------------------------------
    def apply(self, event: LifecycleEvent, partition: int, offset: int, state: State) -> Output:
        out = Output()
        found = state.get(clock_key(partition)) or {"wm": None, "offset": -1, "open": []}
        clock = {**found, "open": [list(w) for w in found["open"]]}
        clock["users"] = dict(found.get("users", {}))
        if offset <= clock["offset"]:
            out.skipped = True
            return out
        clock["wm"] = event.at if clock["wm"] is None else max(clock["wm"], event.at)
        self._close_due(partition, clock, state, out)
        if self.expiry.due(clock):
            self.expiry.sweep(partition, clock["wm"], state)
        active = self._track_active(event, partition, state)
        for size in self.sizes:
            start = window_start(event.at, size)
            if start + size + self.grace_s <= clock["wm"]:
                self._count_late(event, size, partition, clock, state, out)
                continue
            self._apply_to_window(event, size, start, active, partition, clock, state, out)
        clock["offset"] = offset
        state[clock_key(partition)] = clock
        return out

    def _apply_to_window(
        self,
        event: LifecycleEvent,
        size: int,
        start: int,
        active: int,
        partition: int,
        clock: dict[str, Any],
        state: State,
        out: Output,
    ) -> None:
        key = window_key(partition, size, start, event.user_id)
        window = self._load_or_open(key, event.user_id, size, start, clock, state)
        mark = f"{event.type}:{event.request_id}"
        if mark in window.seen:
            return
        window.seen.add(mark)
        self._fold(window, event, active)
        risk = self._score(window, partition, state)
        window.max_score = max(window.max_score, risk.score)
        if risk.score >= self.risk.threshold and not window.alerted:
            window.alerted = True
            alert = self._alert(window, risk, event.at)
            out.alerts.append(alert)
            out.rows.append(alert_row(alert))
        self._put(key, window, state)

    def _put(self, key: str, window: UserWindow, state: State) -> None:
        state[key] = window.to_json()
        if self._dirty is not None:
            self._dirty.add(key)

    def _fold(self, window: UserWindow, event: LifecycleEvent, active: int) -> None:
        figures = window.figures(self.series.model_tag(event.model))
        figures.active = active
        if isinstance(event, Accepted):
            figures.requests += 1
            flags = scan_prompt(event.prompt_text, self.scan_max_chars)
            window.injection += flags.injection
            window.scan_truncated += int(flags.truncated)
            self._add_pii(window, flags.pii)
        elif isinstance(event, FirstToken):
            figures.observe_ttft(event.ttft_s, self.ttft_exact_max)
        elif isinstance(event, Completed):
            figures.completed += 1
            figures.cancellations += int(event.cancelled)
            figures.retries += event.retries
            figures.tokens_in += event.usage.prompt_tokens
            figures.tokens_out += event.usage.completion_tokens
            first = event.timings.first_token_at
            if first is not None and event.timings.finished_at > first:
                figures.gen_tokens += event.usage.completion_tokens
                figures.gen_seconds += event.timings.finished_at - first
            flags = scan_answer(event.answer, event.finish_reason, self.scan_max_chars)
            # Version 2: a refusal the model streamed as such (``delta.refusal``) has no text.
            refused = event.message is not None and event.message.refusal is not None
            figures.refusals += int(flags.refusal or refused)
            window.scan_truncated += int(flags.truncated)
            self._add_pii(window, flags.pii)
        elif isinstance(event, Failed):
            figures.failed += 1
            figures.retries += event.retries

    @staticmethod
    def _add_pii(window: UserWindow, found: dict[str, int]) -> None:
        for kind, count in found.items():
            window.pii[kind] = window.pii.get(kind, 0) + count

    def _track_active(self, event: LifecycleEvent, partition: int, state: State) -> int:
        """In-flight requests of the event's user and model, after this event."""
        key = open_key(partition, event.user_id)
        before: dict[str, list[Any]] = state.get(key) or {}
        legacy = legacy_open_key(event.user_id)
        migrated = not before and legacy in state
        if migrated:
            before = state[legacy]
            del state[legacy]
        open_requests = {
            rid: entry for rid, entry in before.items() if entry[1] >= event.at - self.stale_s
        }
        model = self.series.model_tag(event.model)
        if isinstance(event, Accepted):
            open_requests[event.request_id] = [model, event.at]
            if len(open_requests) > MAX_OPEN_PER_USER:
                del open_requests[next(iter(open_requests))]  # the oldest accepted
        elif isinstance(event, Completed | Failed):
            open_requests.pop(event.request_id, None)
        if migrated or open_requests != before:
            if open_requests:
                state[key] = open_requests
            elif key in state:
                del state[key]
        return sum(1 for tag, _ in open_requests.values() if tag == model)

    def _count_late(
        self,
        event: LifecycleEvent,
        size: int,
        partition: int,
        clock: dict[str, Any],
        state: State,
        out: Output,
    ) -> None:
        watermark = clock["wm"]
        label = window_label(size)
        out.late.append(label)
        log.info(
            "late event not applied window=%s event_type=%s request_id=%s user_id=%s at=%.3f "
            "watermark=%.3f partition=%s",
            label, event.type, event.request_id, event.user_id, event.at, watermark, partition,
        )  # fmt: skip
        start = window_start(watermark, size)
        key = window_key(partition, size, start, event.user_id)
        window = self._load_or_open(key, event.user_id, size, start, clock, state)
        window.figures(self.series.model_tag(event.model)).late_events += 1
        self._put(key, window, state)

    def _load_or_open(
        self, key: str, user_id: str, size: int, start: int, clock: dict[str, Any], state: State
    ) -> UserWindow:
        found = state.get(key)
        if found is not None:
            return UserWindow.from_json(found)
        if [size, start] not in clock["open"]:
            clock["open"].append([size, start])
        tagged = self.series.admit(clock, size, start, user_id)
        return UserWindow(user_id=user_id, size_s=size, start=start, tagged=tagged)

    # --- closing -------------------------------------------------------------------------------
    def _close_due(self, partition: int, clock: dict[str, Any], state: State, out: Output) -> None:
        due = [w for w in clock["open"] if w[1] + w[0] + self.grace_s <= clock["wm"]]
        for size, start in sorted(due):
            out.rows.extend(self._close_window(partition, size, start, clock, state))
            clock["open"].remove([size, start])
            self.series.forget(clock, size, start)
            out.closed += 1

    def _close_window(
        self, partition: int, size: int, start: int, clock: dict[str, Any], state: State
    ) -> list[PointRow]:
        """Final points of every user's window ``(size, start)`` on the partition.

        The scan over the keys runs once per window and partition (every ``size`` seconds),
        not per event; the partition in the key keeps it to the partition's own users.
        """
        prefix = window_prefix(partition, size, start)
        rows: list[PointRow] = []
        folded: list[tuple[UserWindow, RiskScore]] = []
        for key in sorted(k for k in list(state.keys()) if k.startswith(prefix)):
            window = UserWindow.from_json(state[key])
            baseline = self._baseline(partition, size, window.user_id, state)
            risk = score(self._inputs(window), baseline, self.risk)
            if window.tagged:
                rows += [
                    *rate_rows(window, final=True),
                    risk_row(window, risk, baseline, final=True),
                ]
            else:
                folded.append((window, risk))
            moved = baseline.after_window(
                start,
                size,
                window.total("requests"),
                window.total("tokens_in") + window.total("tokens_out"),
                self.risk.baseline_alpha,
            )
            state[baseline_key(partition, size, window.user_id)] = moved.to_json()
            legacy = legacy_baseline_key(size, window.user_id)
            if legacy in state:
                del state[legacy]
            del state[key]
            if self._dirty is not None:
                self._dirty.discard(key)
                # The user's later windows of this size are scored against the new baseline.
                self._dirty.update(
                    window_key(partition, size, later, window.user_id)
                    for s, later in clock["open"]
                    if s == size and later > start
                )
        if folded:
            rows += other_rows(folded, self.ttft_exact_max, final=True)
        return rows

    def close_through(self, until: float, state: State) -> list[PointRow]:
        """Close every open window that ends at or before ``until`` (a replay's last word)."""
        rows: list[PointRow] = []
        for key in sorted(k for k in list(state.keys()) if k.startswith("c|")):
            partition = int(key[2:])
            found = state[key]
            clock = {**found, "open": [list(w) for w in found["open"]]}
            for size, start in sorted(clock["open"]):
                if start + size <= until:
                    rows.extend(self._close_window(partition, size, start, clock, state))
                    clock["open"].remove([size, start])
                    self.series.forget(clock, size, start)
            state[key] = clock
        return rows

    # --- risk and the current windows --------------------------------------------------------
    @staticmethod
    def _inputs(window: UserWindow) -> RiskInputs:
        completed, failed = window.total("completed"), window.total("failed")
        return RiskInputs(
            window_s=window.size_s,
            requests=window.total("requests"),
            tokens=window.total("tokens_in") + window.total("tokens_out"),
            finished=completed + failed,
            failed=failed,
            refusals=window.total("refusals"),
            pii_hits=sum(window.pii.values()),
            injection_hits=window.injection,
        )

    @staticmethod
    def _baseline(partition: int, size: int, user_id: str, state: State) -> Baseline:
        found = state.get(baseline_key(partition, size, user_id))
        if found is None:
            found = state.get(legacy_baseline_key(size, user_id))
        return Baseline.from_json(found)

    def _score(self, window: UserWindow, partition: int, state: State) -> RiskScore:
        baseline = self._baseline(partition, window.size_s, window.user_id, state)
        return score(self._inputs(window), baseline, self.risk)

    def _alert(self, window: UserWindow, risk: RiskScore, at: float) -> RiskAlert:
        reason = (
            f"risk {risk.score:.2f} >= {self.risk.threshold:.2f} in the {window.label} window "
            f"from {window.start} ({risk.reason})"
        )
        return RiskAlert(
            alert_id=f"{window.user_id}:{window.label}:{window.start}",
            user_id=window.user_id,
            score=risk.score,
            threshold=self.risk.threshold,
            signals=list(risk.fired),
            window=window.label,
            window_start=window.start,
            window_end=window.end,
            at=at,
            expires_at=at + self.alert_ttl_s,
            reason=reason,
        )

    def mark_all_dirty(self) -> None:
        """The next ``current_rows`` writes every open window (after a restart or rebalance)."""
        self._dirty = None

    def current_rows(self, state: State) -> list[PointRow]:
        """Provisional points of the open windows changed since the last call (live dashboards)."""
        if self._dirty is None:
            keys = [k for k in list(state.keys()) if k.startswith("w|")]
        else:
            keys = sorted(self._dirty)
        self._dirty = set()
        rows: list[PointRow] = []
        with_folded: set[str] = set()
        for key in keys:
            data = state.get(key)
            if data is None:
                continue
            window = UserWindow.from_json(data)
            if not window.tagged:
                with_folded.add(key[: key.rindex("|") + 1])  # its window's prefix
                continue
            partition = partition_of_window_key(key)
            baseline = self._baseline(partition, window.size_s, window.user_id, state)
            risk = score(self._inputs(window), baseline, self.risk)
            rows.extend(rate_rows(window, final=False))
            rows.append(risk_row(window, risk, baseline, final=False))
        for prefix in sorted(with_folded):
            rows.extend(self._current_other_rows(prefix, state))
        return rows

    def _current_other_rows(self, prefix: str, state: State) -> list[PointRow]:
        """The provisional (other users) points of one open window: all its folded users."""
        partition = partition_of_window_key(prefix)
        folded = []
        for key in sorted(k for k in list(state.keys()) if k.startswith(prefix)):
            window = UserWindow.from_json(state[key])
            if not window.tagged:
                folded.append((window, self._score(window, partition, state)))
        return other_rows(folded, self.ttft_exact_max, final=False) if folded else []
