"""Quotas per identity: refusals with a reason, Retry-After, and one quota across many edges."""

from __future__ import annotations

import asyncio
import time

import httpx
from aiokafka import AIOKafkaProducer

from api.usage_ledger import admission_headers
from tests.aggregates.lifecycle_factory import request_events
from tests.api.conftest import EdgeFactory, metric_value
from tests.fixtures.credentials import auth_for_tests, caller_headers
from tests.fixtures.waiting import eventually
from tokenwire.auth_settings import Quota

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, user: str, body: dict | None = None, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{url}/v1/chat", json=body or BODY, headers={**caller_headers(user), **headers}
        )


def refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["details"]["reason"]


async def test_requests_per_minute_hold_per_identity_not_per_body_string(
    make_edge: EdgeFactory,
) -> None:
    auth = auth_for_tests(tiers={"default": Quota(requests_per_minute=2)})
    async with make_edge(auth=auth) as edge:
        statuses = [(await post(edge.url, "u-busy")).status_code for _ in range(2)]
        # Changing the body's user_id no longer buys a fresh quota: it is refused outright.
        spoofed = await post(edge.url, "u-busy", {**BODY, "user_id": "u-fresh"})
        limited = await post(edge.url, "u-busy")
        other = await post(edge.url, "u-calm")
        counted = metric_value(
            edge, "tokenwire_edge_quota_refusals_total", {"reason": "requests_per_minute"}
        )
    assert statuses == [202, 202]
    assert spoofed.status_code == 403
    assert refusal(limited) == (429, "requests_per_minute")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert other.status_code == 202 and counted == 1


async def test_models_and_max_tokens_are_limited_by_the_tier(make_edge: EdgeFactory) -> None:
    tiers = {"default": Quota(allowed_models=("gpt-4o-mini",), max_tokens=256)}
    async with make_edge(auth=auth_for_tests(tiers=tiers)) as edge:
        wrong_model = await post(edge.url, "u-m", {**BODY, "model": "gpt-4o"})
        too_long = await post(edge.url, "u-m", {**BODY, "max_tokens": 257})
        fine = await post(edge.url, "u-m", {**BODY, "max_tokens": 256})
    assert refusal(wrong_model) == (403, "model_not_allowed")
    assert refusal(too_long) == (403, "max_tokens_over_quota")
    assert fine.status_code == 202


async def test_concurrent_generations_are_limited(make_edge: EdgeFactory) -> None:
    tiers = {"default": Quota(concurrent_generations=2)}
    async with make_edge(auth=auth_for_tests(tiers=tiers)) as edge:
        # Nobody answers on this edge's topics: both generations stay in flight.
        first = [(await post(edge.url, "u-c")).status_code for _ in range(2)]
        third = await post(edge.url, "u-c")
    assert first == [202, 202]
    assert refusal(third) == (429, "concurrent_generations")
    assert third.headers["Retry-After"] == "1"


async def test_new_sessions_are_limited_but_an_existing_session_goes_on(
    make_edge: EdgeFactory,
) -> None:
    tiers = {"default": Quota(new_sessions_per_minute=2, concurrent_generations=100)}
    async with make_edge(auth=auth_for_tests(tiers=tiers)) as edge:
        opened = [(await post(edge.url, "u-s")).json() for _ in range(2)]
        third = await post(edge.url, "u-s")
        follow_up = await post(
            edge.url, "u-s", {**BODY, "session_id": opened[0]["session_id"]},
            **{"X-Stream-Token": opened[0]["write_token"]},
        )
    assert refusal(third) == (429, "new_sessions_per_minute")
    assert follow_up.status_code == 202


async def test_n_edges_do_not_mean_n_times_the_quota(
    make_edge: EdgeFactory,
) -> None:
    auth = auth_for_tests(tiers={"default": Quota(requests_per_minute=3)})
    async with make_edge(auth=auth) as one:
        shared = {
            "requests_topic": one.settings.requests_topic,
            "events_topic": one.settings.events_topic,
            "alerts_topic": one.settings.alerts_topic,
        }
        async with make_edge(auth=auth, **shared) as two:
            assert (await post(one.url, "u-spread")).status_code == 202
            assert (await post(one.url, "u-spread")).status_code == 202
            # Edge two reads edge one's admissions back from chat.requests.
            await eventually(
                lambda: two.runtime.ledger.usage("u-spread").requests_last_minute == 2
            )
            assert (await post(two.url, "u-spread")).status_code == 202
            await eventually(
                lambda: one.runtime.ledger.usage("u-spread").requests_last_minute == 3
            )
            refused = [await post(one.url, "u-spread"), await post(two.url, "u-spread")]
    assert [refusal(r) for r in refused] == [(429, "requests_per_minute")] * 2


async def test_tokens_per_minute_count_the_usage_workers_report(
    make_edge: EdgeFactory, kafka_producer: AIOKafkaProducer
) -> None:
    auth = auth_for_tests(tiers={"default": Quota(tokens_per_minute=1000)})
    async with make_edge(auth=auth) as edge:
        first = (await post(edge.url, "u-tokens")).json()
        # Play the worker: the request finished with 1,200 tokens of usage.
        completed = request_events("u-tokens", time.time(), request_id=first["request_id"],
                                   prompt_tokens=200, completion_tokens=1000)[-1]
        await kafka_producer.send_and_wait(
            edge.settings.events_topic, completed.model_dump_json().encode(), key=b"u-tokens"
        )
        await eventually(
            lambda: edge.runtime.ledger.usage("u-tokens").tokens_last_minute == 1200
        )
        over = await post(edge.url, "u-tokens")
        other = await post(edge.url, "u-other")
    assert refusal(over) == (429, "tokens_per_minute")
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert other.status_code == 202


async def test_a_restarted_edge_remembers_the_last_minute(make_edge: EdgeFactory) -> None:
    auth = auth_for_tests(tiers={"default": Quota(requests_per_minute=2)})
    async with make_edge(auth=auth) as before:
        assert [(await post(before.url, "u-r")).status_code for _ in range(2)] == [202, 202]
        topics = {
            "requests_topic": before.settings.requests_topic,
            "events_topic": before.settings.events_topic,
            "alerts_topic": before.settings.alerts_topic,
        }
    # A new edge reads the topics back before it answers: no free quota by restarting.
    async with make_edge(auth=auth, **topics) as after:
        again = await post(after.url, "u-r")
    assert refusal(again) == (429, "requests_per_minute")


async def test_parallel_requests_cannot_slip_past_a_quota(make_edge: EdgeFactory) -> None:
    """Found in review: the check ran before the publish and the count after it, so 50 requests
    in flight at once all passed a quota of 3."""
    tiers = {"default": Quota(requests_per_minute=3, concurrent_generations=100)}
    async with make_edge(auth=auth_for_tests(tiers=tiers)) as edge:
        responses = await asyncio.gather(*(post(edge.url, "u-parallel") for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 3 + [429] * 17


async def test_an_answer_read_before_its_admission_leaves_no_phantom_generation(
    make_edge: EdgeFactory, kafka_producer: AIOKafkaProducer
) -> None:
    """Found in review: a terminal event read first (catch-up, lag) was dropped, and the late
    admission then counted as a generation in flight for minutes."""
    async with make_edge() as edge:
        settings = edge.settings
        completed = request_events("u-late", time.time(), request_id="r-late",
                                   prompt_tokens=5, completion_tokens=7)[-1]
        await kafka_producer.send_and_wait(
            settings.events_topic, completed.model_dump_json().encode(), key=b"u-late"
        )
        await eventually(lambda: edge.runtime.ledger.usage("u-late").tokens_last_minute == 12)
        await kafka_producer.send_and_wait(
            settings.requests_topic, b"{}", key=b"s-late",
            headers=admission_headers("u-late", "r-late", "s-late", new_session=True),
        )
        await eventually(lambda: edge.runtime.ledger.usage("u-late").requests_last_minute == 1)
        assert edge.runtime.ledger.usage("u-late").in_flight == 0
