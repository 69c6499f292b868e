"""Dead letters on ``chat.requests.dlq``: the original bytes as value, the reason in headers.

Keeping the original bytes untouched lets an operator fix and re-publish the record as it was.
"""

from __future__ import annotations

REASON_HEADER = "tw-dlq-reason"
ERROR_HEADER = "tw-dlq-error"
SOURCE_TOPIC_HEADER = "tw-dlq-source-topic"
SOURCE_PARTITION_HEADER = "tw-dlq-source-partition"
SOURCE_OFFSET_HEADER = "tw-dlq-source-offset"

REASON_NOT_JSON = "not_json"
REASON_SCHEMA = "schema_invalid"
# Decoding raised something unforeseen (a bug, not the record's fault): kept for a fix and replay.
REASON_DECODE_FAILED = "decode_failed"
