"""``python -m tokenwire.bench.protocols``: what each protocol adapter costs per token (issue #15).

The same answers are read through the three ways a client can follow one, against one real
pipeline (simulator, worker, edge as child processes, ``tokenwire.bench.scale.ScaleStack``):

- ``native``: ``POST /v1/chat`` then the session's SSE (``until=done``), tokenwire's own events;
- ``ui``: ``POST /v1/ui/chat``, the AI SDK UI message stream (``text-delta`` chunks);
- ``openai``: ``POST /v1/chat/completions`` with ``stream: true`` (``chat.completion.chunk``s).

Each round runs ``--streams`` answers of ``--tokens`` tokens, ``--concurrency`` at a time, once per
protocol, in a rotating order; ``--repeat`` rounds. Per protocol and round: the edge's CPU per
1,000 answer tokens (its process's CPU over the phase; the client runs in this process, apart),
the worker's (which should not depend on the protocol), and the client-seen time from the POST to
the answer's last token. Every answer is compared with the simulator's expected text: a run with
a wrong answer exits 1. The adapter's overhead is its edge CPU per token against ``native`` in
the same round: a ratio, since machines here differ several-fold in absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.auth.development import mint_dev_jwt
from tokenwire.bench.scale import ScaleConfig, ScaleStack
from tokenwire.bench.stats import distribution
from tokenwire.settings import get_settings
from tokenwire.simulator import expected_text

log = logging.getLogger(__name__)

PROTOCOLS = ("native", "ui", "openai")
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Job:
    base_url: str
    tokens: int
    tps: float
    tag: str
    model: str

    def prompt(self, label: str) -> str:
        return f"protocols {self.tag} {label} [[sim: tokens={self.tokens} tps={self.tps:g}]]"

    def headers(self, prompt: str) -> dict[str, str]:
        """A caller of its own per answer: per-user caps and the risk loop (a burst of one
        caller's requests pauses it) are not what is measured here."""
        user = f"{self.tag}-{abs(hash(prompt)):x}"
        return {"authorization": f"Bearer {mint_dev_jwt(user, ttl_s=3600)}"}


@dataclass
class Answer:
    text: str = ""
    seconds: float = 0.0


Reader = Callable[[httpx.AsyncClient, Job, str], Awaitable[Answer]]



async def _sse_data(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each SSE event of ``response``."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()


async def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()  # the error body, for the report
    response.raise_for_status()


async def read_native(client: httpx.AsyncClient, job: Job, prompt: str) -> Answer:
    started = time.perf_counter()
    posted = await client.post(f"{job.base_url}/v1/chat", headers=job.headers(prompt),
                               json={"messages": [{"role": "user", "content": prompt}]})
    posted.raise_for_status()
    accepted = posted.json()
    params = {"token": accepted["stream_token"], "until": "done",
              "request_id": accepted["request_id"]}
    answer = Answer()
    async with client.stream("GET", f"{job.base_url}{accepted['events_url']}",
                             params=params) as response:
        await _check(response)
        async for event, data in _sse_data(response):
            if event == "token":
                answer.text += json.loads(data)["text"]
            elif event == "retry":
                answer.text = ""
    answer.seconds = time.perf_counter() - started
    return answer


async def read_ui(client: httpx.AsyncClient, job: Job, prompt: str) -> Answer:
    started = time.perf_counter()
    body = {
        "id": uuid.uuid4().hex, "trigger": "submit-message", "messageId": None,
        "messages": [{"id": uuid.uuid4().hex, "role": "user",
                      "parts": [{"type": "text", "text": prompt}]}],
    }
    answer = Answer()
    async with client.stream("POST", f"{job.base_url}/v1/ui/chat", headers=job.headers(prompt),
                             json=body) as response:
        await _check(response)
        async for _, data in _sse_data(response):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk["type"] == "text-delta":
                answer.text += chunk["delta"]
            elif chunk["type"] == "error":
                raise RuntimeError(f"ui stream error: {chunk}")
    answer.seconds = time.perf_counter() - started
    return answer


async def read_openai(client: httpx.AsyncClient, job: Job, prompt: str) -> Answer:
    started = time.perf_counter()
    body = {"model": job.model, "stream": True,
            "messages": [{"role": "user", "content": prompt}]}
    answer = Answer()
    async with client.stream("POST", f"{job.base_url}/v1/chat/completions",
                             headers=job.headers(prompt), json=body) as response:
        await _check(response)
        async for _, data in _sse_data(response):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"openai stream error: {chunk}")
            for choice in chunk.get("choices", []):
                answer.text += choice.get("delta", {}).get("content") or ""
    answer.seconds = time.perf_counter() - started
    return answer


READERS: dict[str, Reader] = {"native": read_native, "ui": read_ui, "openai": read_openai}


@dataclass
class Phase:
    protocol: str
    round: int
    answers: int = 0
    wrong: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    tokens: int = 0

    def summary(self) -> dict[str, Any]:
        per_k = {name: round(1000 * cpu / self.tokens, 4) if self.tokens else None
                 for name, cpu in self.cpu_s.items()}
        return {
            "protocol": self.protocol, "round": self.round, "answers": self.answers,
            "wrong": len(self.wrong), "wrong_examples": self.wrong[:3],
            "cpu_s_per_1k_tokens": per_k,
            "answer_ms": distribution([s * 1000 for s in self.seconds]),
        }


async def run_phase(stack: ScaleStack, job: Job, protocol: str, round_: int, streams: int,
                    concurrency: int) -> Phase:
    phase = Phase(protocol, round_)
    reader = READERS[protocol]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=2 * concurrency, max_keepalive_connections=concurrency)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        prompt = job.prompt(f"{protocol}-{round_}-{index}")
        expected = expected_text([{"role": "user", "content": prompt}])
        async with gate:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    answer = await reader(client, job, prompt)
            except httpx.HTTPStatusError as exc:
                phase.wrong.append(f"HTTP {exc.response.status_code}: {exc.response.text}"[:200])
                return
            except (httpx.HTTPError, RuntimeError, TimeoutError, KeyError) as exc:
                phase.wrong.append(f"{type(exc).__name__}: {exc}"[:200])
                return
        phase.answers += 1
        phase.seconds.append(answer.seconds)
        if answer.text != expected:
            phase.wrong.append(f"{index}: got {len(answer.text)} chars, want {len(expected)}")

    before = stack.cpu()
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(one(client, i) for i in range(streams)))
    after = stack.cpu()
    phase.cpu_s = {name: after[name] - before.get(name, 0.0)
                   for name in ("edge", "worker") if name in after}
    phase.tokens = phase.answers * job.tokens
    return phase


def overhead(phases: list[Phase]) -> dict[str, Any]:
    """Per adapter: its edge CPU per token over native's in the same round, as a range."""
    by_round: dict[int, dict[str, Phase]] = {}
    for phase in phases:
        by_round.setdefault(phase.round, {})[phase.protocol] = phase
    ratios: dict[str, list[float]] = {}
    for round_phases in by_round.values():
        native = round_phases.get("native")
        if native is None or not native.tokens or not native.cpu_s.get("edge"):
            continue
        native_per = native.cpu_s["edge"] / native.tokens
        for protocol, phase in round_phases.items():
            if protocol != "native" and phase.tokens:
                ratios.setdefault(protocol, []).append(phase.cpu_s["edge"] / phase.tokens
                                                       / native_per)
    return {protocol: {"edge_cpu_vs_native": [round(min(r), 2), round(max(r), 2)],
                       "rounds": len(r)} for protocol, r in ratios.items()}


async def run(args: argparse.Namespace) -> int:
    base = get_settings()
    tag = f"proto-{uuid.uuid4().hex[:8]}"
    config = ScaleConfig(layout=args.layout, sessions=args.streams, concurrency=args.concurrency,
                         tokens=args.tokens, tps=args.tps, out=args.out)
    run_dir = args.out / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.trace:  # the children (edge, worker) trace into one OTLP JSON file of the run
        os.environ["OTEL_TRACES_EXPORTER"] = "otlp_json_file"
        os.environ["OTEL_EXPORTER_OTLP_JSON_FILE"] = str(run_dir / "traces.jsonl")
    stack = ScaleStack(base, config, run_dir, tag)
    phases: list[Phase] = []
    try:
        await stack.start()
        s = stack.settings
        job = Job(f"http://127.0.0.1:{s.edge_port}", args.tokens, args.tps, tag, s.default_model)
        await run_phase(stack, job, "native", 0, 3, 3)  # warm-up: topics, connections, JIT-less
        for round_ in range(1, args.repeat + 1):
            order = args.protocols[round_ % len(args.protocols):] + args.protocols[
                : round_ % len(args.protocols)]
            for protocol in order:
                phase = await run_phase(stack, job, protocol, round_, args.streams,
                                        args.concurrency)
                log.info("phase %s", json.dumps(phase.summary()))
                phases.append(phase)
    finally:
        stack.stop_all()
        await stack.delete_topics()
    result = {
        "tag": tag, "layout": args.layout, "streams": args.streams, "tokens": args.tokens,
        "concurrency": args.concurrency, "tps": args.tps, "trace": args.trace,
        "phases": [p.summary() for p in phases], "overhead": overhead(phases),
    }
    path = args.out / f"protocols-{tag}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=2))
    for p in phases:
        print(json.dumps(p.summary()))
    print(f"report: {path}")
    return 1 if any(p.wrong for p in phases) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenwire.bench.protocols",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="topic", choices=["topic", "shared"])
    parser.add_argument("--streams", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--tps", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--protocols", type=lambda v: v.split(","), default=list(PROTOCOLS))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--trace", action="store_true",
                        help="edge and worker trace (OTLP JSON file in the run's directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
