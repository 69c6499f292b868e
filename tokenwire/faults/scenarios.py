"""The faults, and one run of each: chats streaming, the fault, the checks.

- ``leader-kill``: SIGKILL of the broker leading most of the chats' session topics, mid-stream;
  it is started again once every chat has had a request answered after the kill.
- ``rolling-restart``: each broker in turn stopped (SIGTERM) and started again, the next one
  only when every replica is back in sync, as an operator upgrading a cluster does.
- ``worker-edge-broker``: SIGKILL of a worker, an edge and the session leader broker at the same
  moment; the worker and the edge are restarted at once (as a supervisor does), the broker later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from api.auth.development import mint_dev_jwt
from tokenwire.faults.chats import ChatOutcome, ChatPlan, ChatRecord, run_chat
from tokenwire.faults.observe import Gaps, GroupWatch, gaps_across
from tokenwire.faults.stack import EDGES, WORKERS, FaultStack
from tokenwire.kafka_clients import new_admin
from tokenwire.replay.verify import VerifyReport, verify_log
from tokenwire.services import kafka
from tokenwire.session_log import place_of
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

STREAMING_TIMEOUT_S = 120.0
RECOVERY_TIMEOUT_S = 180.0
IN_SYNC_TIMEOUT_S = 120.0
POLL_S = 0.2


@dataclass
class Context:
    """What a fault acts on, and the moments the report needs."""

    stack: FaultStack
    cluster: Settings
    outcome: ChatOutcome
    fault_at: float = 0.0
    notes: list[str] = field(default_factory=list)


Fault = Callable[[Context], Awaitable[None]]


async def leader_kill(ctx: Context) -> None:
    leader = await session_leader(ctx)
    ctx.notes.append(f"killed broker {leader} (leader of most session topics)")
    ctx.fault_at = time.time()
    await asyncio.to_thread(kafka.kill_node, ctx.cluster, leader)
    await answered_since(ctx, ctx.fault_at)
    await asyncio.to_thread(kafka.start_node, ctx.cluster, leader)
    await all_in_sync(ctx)


async def rolling_restart(ctx: Context) -> None:
    ctx.fault_at = time.time()
    for node in kafka.node_ids(ctx.cluster):
        began = time.time()
        await asyncio.to_thread(kafka.stop_node, ctx.cluster, node)
        await asyncio.to_thread(kafka.start_node, ctx.cluster, node)
        await all_in_sync(ctx)
        ctx.notes.append(f"broker {node} restarted and in sync after {time.time() - began:.1f}s")
    await answered_since(ctx, time.time())


async def worker_edge_broker(ctx: Context) -> None:
    leader = await session_leader(ctx)
    worker, edge = WORKERS[0], EDGES[0]
    ctx.notes.append(f"killed {worker}, {edge} and broker {leader} at once")
    ctx.fault_at = time.time()
    ctx.stack.kill(worker)
    ctx.stack.kill(edge)
    await asyncio.to_thread(kafka.kill_node, ctx.cluster, leader)
    await ctx.stack.restart(worker)
    await ctx.stack.restart(edge)
    await answered_since(ctx, ctx.fault_at)
    await asyncio.to_thread(kafka.start_node, ctx.cluster, leader)
    await all_in_sync(ctx)


SCENARIOS: dict[str, Fault] = {
    "leader-kill": leader_kill,
    "rolling-restart": rolling_restart,
    "worker-edge-broker": worker_edge_broker,
}


async def session_leader(ctx: Context) -> int:
    """The broker leading the most session partitions of the chats now streaming (either
    session layout: tokenwire/session_log.py)."""
    places = {place_of(ctx.stack.settings, s) for s in ctx.outcome.session_ids}
    admin = new_admin(ctx.stack.settings.kafka_connection, client_id=f"{ctx.stack.tag}-leaders")
    await admin.start()
    try:
        described = await admin.describe_topics(sorted({p.topic for p in places}))
    finally:
        await admin.close()
    wanted = {(p.topic, p.partition) for p in places}
    leaders = Counter(
        p["leader"] for t in described for p in t["partitions"]
        if (t["topic"], p["partition"]) in wanted and p["leader"] is not None
    )
    return leaders.most_common(1)[0][0]


async def answered_since(ctx: Context, since: float) -> None:
    """Until every chat has had a request posted after ``since`` answered (or failed)."""
    chats = len(ctx.outcome.session_ids)
    answered: set[int] = set()
    try:
        async with asyncio.timeout(RECOVERY_TIMEOUT_S):
            while len(answered) < chats:
                await asyncio.sleep(POLL_S)
                answered = {
                    r.chat
                    for r in ctx.outcome.records
                    if r.posted_at > since and r.finished.is_set()
                }
    except TimeoutError:  # reported: those chats' requests are not exact
        ctx.notes.append(
            f"only {len(answered)} of {chats} chats had an answer within {RECOVERY_TIMEOUT_S:.0f}s"
        )


async def all_in_sync(ctx: Context) -> None:
    """Until no partition of the cluster has a replica out of sync."""
    admin = new_admin(ctx.stack.settings.kafka_connection, client_id=f"{ctx.stack.tag}-isr")
    await admin.start()
    try:
        async with asyncio.timeout(IN_SYNC_TIMEOUT_S):
            while True:
                try:
                    described = await admin.describe_topics()
                except Exception:  # a broker still coming up
                    described = []
                partitions = [p for t in described for p in t["partitions"]]
                if partitions and all(len(p["isr"]) == len(p["replicas"]) for p in partitions):
                    return
                await asyncio.sleep(POLL_S * 2)
    finally:
        await admin.close()


@dataclass
class ScenarioResult:
    name: str
    chats: int
    requests: int
    exact: int
    not_exact: list[str]
    retried: int
    id_violations: int
    reconnects: int
    client_errors: list[str]
    verify_ok: bool
    verify_findings: list[str]
    gaps: Gaps
    group_stable_s: float | None
    fault_s: float
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.not_exact and not self.id_violations and self.verify_ok


async def run_scenario(
    name: str, cluster: Settings, run_dir: Path, *, chats: int, plan: ChatPlan
) -> ScenarioResult:
    await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
    stack = FaultStack(cluster, run_dir)
    outcome = ChatOutcome()
    keep_going = asyncio.Event()
    keep_going.set()
    ctx = Context(stack, cluster, outcome)
    watch = GroupWatch(stack.settings, members=len(WORKERS))
    tasks: list[asyncio.Task[None]] = []
    try:
        await stack.start()
        watch.start()
        for chat in range(chats):
            user = f"fault-user-{chat}"
            credential = mint_dev_jwt(user, ttl_s=3600)
            tasks.append(asyncio.create_task(
                run_chat(chat, stack.edges, credential, user, plan, keep_going, outcome)
            ))  # fmt: skip
        await _all_streaming(outcome, chats)
        began = time.time()
        await SCENARIOS[name](ctx)
        fault_s = time.time() - began
    finally:
        keep_going.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await watch.stop()
        stack.stop_all()
    report = await verify_log(stack.settings, sessions=set(outcome.session_ids))
    result = _result(name, ctx, watch, report, fault_s, chats)
    if result.ok:
        await stack.delete_topics()
    else:  # kept for a look: `tokenwire replay` with the run's topic names
        result.notes.append(f"topics kept for inspection: {stack.tag}.*")
    return result


async def _all_streaming(outcome: ChatOutcome, chats: int) -> None:
    """Until every chat has a request whose tokens are arriving: the fault hits mid-stream."""
    async with asyncio.timeout(STREAMING_TIMEOUT_S):
        while True:
            streaming = sum(1 for r in outcome.records if r.token_times and not r.terminal)
            if len(outcome.session_ids) >= chats and streaming >= chats // 2:
                return
            await asyncio.sleep(POLL_S / 2)


def _result(
    name: str, ctx: Context, watch: GroupWatch, report: VerifyReport, fault_s: float, chats: int
) -> ScenarioResult:
    records = ctx.outcome.records
    not_exact = [_describe(r) for r in records if not r.exact]
    findings = [f"{f.check}: {f.message}" for f in report.errors]
    return ScenarioResult(
        name=name,
        chats=chats,
        requests=len(records),
        exact=sum(1 for r in records if r.exact),
        not_exact=not_exact[:20],
        retried=sum(1 for r in records if r.retries),
        id_violations=ctx.outcome.id_violations,
        reconnects=ctx.outcome.reconnects,
        client_errors=ctx.outcome.errors[:20],
        verify_ok=report.ok,
        verify_findings=findings[:20],
        gaps=gaps_across(records, ctx.fault_at, ctx.fault_at + fault_s),
        group_stable_s=watch.stable_again_s(ctx.fault_at),
        fault_s=round(fault_s, 1),
        notes=ctx.notes,
    )


def _describe(record: ChatRecord) -> str:
    check = record.check()
    return (
        f"{record.request_id}: terminal={record.terminal} error={record.error} "
        f"lost={check.lost} duplicated={check.duplicated} reordered={check.reordered} "
        f"mismatched={check.mismatched}"
    )
