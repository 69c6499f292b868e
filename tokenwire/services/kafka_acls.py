"""The ACLs of the secured local cluster, one table per principal, and how they are created.

Least privilege from what each process really does (read from its code):

- ``edge``: produces requests (idempotent); creates a session's topic on POST (CREATE only: it
  can never *write* one, so a compromised edge cannot inject tokens into a session); follows
  session topics and alerts with manual assignment (no group); reads requests and events back
  for per-user usage (``api/usage_ledger.py``); writes cancels to ``chat.control``.
- ``worker``: its Faust group (``worker_id``) reads requests and events; writes events, alerts,
  the DLQ and session topics; reads a session topic and ``chat.control`` (no group) back on
  redelivery and follows its partitions of ``chat.control``; creates/deletes session
  topics (janitor); creates the core topics at start and its own changelogs (``<worker_id>-``).
- ``auditor``: reads and describes every tokenwire topic (``tokenwire replay`` assigns partitions
  by hand and commits nothing): no write, no create, no group.
- ``producer``: writes ``chat.requests`` only.

ACLs go in as one CreateAcls request through a bare aiokafka client authenticated as the super
user; creating an ACL that exists is a no-op, so provisioning may run again.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from tokenwire.errors import ServiceError
from tokenwire.settings import Settings

CLUSTER_NAME = "kafka-cluster"
ANY_HOST = "*"


class ResourceType(enum.IntEnum):  # Kafka's org.apache.kafka.common.resource.ResourceType
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(enum.IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):  # org.apache.kafka.common.acl.AclOperation
    ANY = 1
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    DESCRIBE = 8
    IDEMPOTENT_WRITE = 12


ALLOW = 3
ANY_PERMISSION = 1


@dataclass(frozen=True)
class Acl:
    principal: str  # e.g. "edge" (the SCRAM user name)
    resource: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    def row(self) -> tuple[int, str, int, str, str, int, int]:
        return (
            self.resource, self.name, self.pattern, f"User:{self.principal}",
            ANY_HOST, self.operation, ALLOW,
        )  # fmt: skip


def _grants(
    principal: str,
    resource: ResourceType,
    names: list[str],
    pattern: PatternType,
    *operations: Operation,
) -> list[Acl]:
    return [Acl(principal, resource, n, pattern, op) for n in names for op in operations]


def acl_table(settings: Settings) -> list[Acl]:
    """Every ACL of the local secured cluster, for the topic names ``settings`` uses."""
    T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
    LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
    R, W, CR, DEL, D = (
        Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DELETE, Operation.DESCRIBE
    )  # fmt: skip
    s = settings
    session = [s.session_topic_prefix]
    # The shared layout's topics (tokenwire/session_log.py), granted in either layout: a cluster
    # can switch layouts without new ACLs.
    shared = [s.sessions_topic, s.sessions_index_topic]
    core = [
        s.requests_topic, s.events_topic, s.alerts_topic, s.dead_letter_topic, s.control_topic
    ]
    idempotent = Operation.IDEMPOTENT_WRITE
    return [
        # edge
        *_grants("edge", T, [s.requests_topic], LIT, W, R, D),
        *_grants("edge", T, [s.events_topic, s.alerts_topic], LIT, R, D),
        *_grants("edge", T, [s.control_topic], LIT, W, D),
        *_grants("edge", T, session, PRE, CR, R, D),
        *_grants("edge", T, shared, LIT, R, D),
        *_grants("edge", C, [CLUSTER_NAME], LIT, idempotent),
        # worker
        *_grants("worker", T, [s.requests_topic], LIT, R, D, CR),
        *_grants("worker", T, [s.events_topic], LIT, R, W, D, CR),
        *_grants("worker", T, [s.alerts_topic, s.dead_letter_topic], LIT, W, D, CR),
        # cancels: assigned by hand, read (no group); created with the core topics
        *_grants("worker", T, [s.control_topic], LIT, R, D, CR),
        *_grants("worker", T, session, PRE, CR, W, R, D, DEL),
        *_grants("worker", T, shared, LIT, CR, W, R, D),
        *_grants("worker", T, [f"{s.worker_id}-"], PRE, CR, R, W, D),
        *_grants("worker", G, [s.worker_id], LIT, R, D),
        *_grants("worker", C, [CLUSTER_NAME], LIT, idempotent),
        # auditor
        *_grants("auditor", T, core, LIT, R, D),
        *_grants("auditor", T, session, PRE, R, D),
        *_grants("auditor", T, shared, LIT, R, D),
        # producer
        *_grants("producer", T, [s.requests_topic], LIT, W, D),
        *_grants("producer", C, [CLUSTER_NAME], LIT, idempotent),
    ]


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """All creations in one request (aiokafka's own ``CreateAclsRequest`` carries one)."""

    API_KEY = 30

    def __init__(self, acls: list[Acl]) -> None:
        self._rows = [acl.row() for acl in acls]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._rows)


async def create_acls(client: AIOKafkaClient, acls: list[Acl]) -> None:
    """Create ``acls`` (the client must be the super user's, bootstrapped)."""
    node = client.get_random_node()
    if node is None:
        raise ServiceError("no Kafka broker known to create ACLs on")
    response = await client.send(node, _CreateAcls(acls))
    failed = [
        (acl, code, message)
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code != 0
    ]
    if failed:
        acl, code, message = failed[0]
        raise ServiceError(f"creating {len(failed)} ACLs failed, first {acl}: {code} {message}")


async def count_acls(client: AIOKafkaClient, node_id: int) -> int:
    """How many ACLs ``node_id``'s authorizer holds (each broker applies them from metadata)."""
    # None: match any name, principal and host (nullable strings in the protocol).
    anything: str = None  # type: ignore[assignment]
    request = DescribeAclsRequest(
        ResourceType.ANY, anything, PatternType.ANY, anything, anything, Operation.ANY,
        ANY_PERMISSION,
    )  # fmt: skip
    response = await client.send(node_id, request)
    if response.error_code != 0:
        raise ServiceError(f"DescribeAcls failed: {response.error_code} {response.error_message}")
    return sum(len(resource[-1]) for resource in response.resources)


async def wait_applied(
    client: AIOKafkaClient, node_ids: list[int], expected: int, timeout_s: float
) -> None:
    """Until every broker's authorizer holds at least ``expected`` ACLs."""
    async with asyncio.timeout(timeout_s):
        for node_id in node_ids:
            while True:
                if await count_acls(client, node_id) >= expected:
                    break
                await asyncio.sleep(0.1)
