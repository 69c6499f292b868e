"""Types shared by every contract."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# Additive versioning: a new optional field or event type bumps the version (2: the OpenAI chat
# surface, tool calls, cancel); old records still decode. A change in meaning would be a new model.
SCHEMA_VERSION = 2

# A session id names a Kafka topic (chat.session.<id>): '.' and '_' collide in Kafka's metric
# names, so only letters, digits and '-' pass.
SESSION_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
# No control characters: a user id is written into logs, metrics and InfluxDB tags.
USER_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def now() -> float:
    """Event timestamps are epoch seconds as floats: sub-millisecond latency maths stays simple."""
    return time.time()


class Contract(BaseModel):
    """Base of every event: readers ignore fields they do not know (forward compatibility)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
