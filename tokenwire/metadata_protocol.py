"""Metadata v10 and v12: the first versions whose answer carries each topic's id.

aiokafka 0.14 speaks Metadata up to v5, which names topics only. A topic's id (a UUID the
controller assigns at creation, Kafka ≥ 2.8) tells a topic apart from an earlier one deleted
under the same name, which is what a session topic's SSE ids need. Both versions are flexible
(compact strings and arrays, tagged fields); aiokafka picks the highest one the broker speaks.
v11 only dropped ``include_cluster_authorized_operations``; v12 made a topic's name nullable.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import TypeAlias

from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

API_KEY = 3
NO_TOPIC_ID = uuid.UUID(int=0)  # what a broker says for a topic created before ids existed


class Uuid(AbstractType[uuid.UUID]):
    """Kafka's UUID: 16 bytes, most significant first."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return uuid.UUID(bytes=raw)


def _response_schema(*, cluster_operations: bool) -> Schema:
    partition = CompactArray(
        ("error_code", Int16),
        ("partition_index", Int32),
        ("leader_id", Int32),
        ("leader_epoch", Int32),
        ("replica_nodes", CompactArray(Int32)),
        ("isr_nodes", CompactArray(Int32)),
        ("offline_replicas", CompactArray(Int32)),
        ("tags", TaggedFields),
    )
    fields: list[tuple[str, object]] = [
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(
            ("node_id", Int32),
            ("host", CompactString("utf-8")),
            ("port", Int32),
            ("rack", CompactString("utf-8")),
            ("tags", TaggedFields),
        )),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16),
            ("name", CompactString("utf-8")),
            ("topic_id", Uuid),
            ("is_internal", Boolean),
            ("partitions", partition),
            ("topic_authorized_operations", Int32),
            ("tags", TaggedFields),
        )),
    ]
    if cluster_operations:
        fields.append(("cluster_authorized_operations", Int32))
    fields.append(("tags", TaggedFields))
    return Schema(*fields)  # type: ignore[arg-type]


class MetadataResponse_v10(Response):
    API_KEY = API_KEY
    API_VERSION = 10
    SCHEMA = _response_schema(cluster_operations=True)


class MetadataResponse_v12(Response):
    API_KEY = API_KEY
    API_VERSION = 12
    SCHEMA = _response_schema(cluster_operations=False)


_REQUESTED_TOPIC = CompactArray(
    ("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
)


class MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = API_KEY
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", _REQUESTED_TOPIC),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = API_KEY
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        ("topics", _REQUESTED_TOPIC),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


MetadataWithIdsStruct: TypeAlias = MetadataRequest_v10 | MetadataRequest_v12


class MetadataWithIdsRequest(Request[MetadataWithIdsStruct]):
    """Metadata for the named topics (never all: an empty list asks for none), with their ids.

    Never creates a topic: a request about a deleted session topic must not bring it back.
    """

    API_KEY = API_KEY

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def build(self, request_struct_class: type[MetadataWithIdsStruct]) -> MetadataWithIdsStruct:
        topics = [(NO_TOPIC_ID, name, {}) for name in self._names]
        if request_struct_class is MetadataRequest_v10:
            return MetadataRequest_v10(topics, False, False, False, {})
        return MetadataRequest_v12(topics, False, False, {})
